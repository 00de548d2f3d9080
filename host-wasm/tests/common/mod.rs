//! Helpers both wasm test files use.
#![allow(clippy::unwrap_used, dead_code)] // tests unwrap: a failure is the assertion

use cairn_wasm::CairnDb;
use wasm_bindgen::JsValue;

/// A JSON value as the plain JS value a caller would pass (objects, not Maps).
pub fn js(v: serde_json::Value) -> JsValue {
    serde::Serialize::serialize(&v, &serde_wasm_bindgen::Serializer::json_compatible()).unwrap()
}

/// Runs background jobs to their end, as the Worker does between messages; returns the job.
pub fn run_job(db: &mut CairnDb, started: JsValue) -> serde_json::Value {
    let job: serde_json::Value = serde_wasm_bindgen::from_value(started).unwrap();
    loop {
        let s: serde_json::Value = serde_wasm_bindgen::from_value(db.step(64).unwrap()).unwrap();
        if s["running"] == 0 {
            break;
        }
    }
    serde_wasm_bindgen::from_value(db.job(job["job_id"].as_str().unwrap()).unwrap()).unwrap()
}
