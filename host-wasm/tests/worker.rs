//! In a dedicated Worker: the database on OPFS through synchronous access handles (the pool in
//! `web/src/opfs-storage.js`); data and archives survive closing and reopening.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use cairn_wasm::CairnDb;
mod common;

use common::{js, run_job};
use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen(module = "/js/opfs-storage.js")]
extern "C" {
    type OpfsStorage;
    #[wasm_bindgen(static_method_of = OpfsStorage, js_name = open)]
    fn open(name: &str) -> js_sys::Promise;
    #[wasm_bindgen(method)]
    fn close(this: &OpfsStorage);
}

async fn storage(name: &str) -> OpfsStorage {
    JsFuture::from(OpfsStorage::open(name))
        .await
        .unwrap()
        .unchecked_into()
}

#[wasm_bindgen_test]
async fn opfs_database_survives_reopen() {
    let name = format!("wbt-{}", js_sys::Date::now());
    let st = storage(&name).await;
    let mut db = CairnDb::open_with((*st).clone()).unwrap();
    db.create_index("docs", js(json!({"dim": 8, "precision": "int8"})))
        .unwrap();
    let items: Vec<serde_json::Value> = (0..300).map(|i| json!({"id": format!("v{i}"), "vector": (0..8).map(|d| ((i * 7 + d * 3) % 11) as f32 - 5.0).collect::<Vec<_>>(), "filter": {"n": i}})).collect();
    assert_eq!(db.upsert("docs", js(json!(items))).unwrap(), 300);
    db.checkpoint("docs").unwrap();
    db.delete("docs", js(json!(["v0", "v1"]))).unwrap();
    let started = db.start_backup("docs", "snap").unwrap();
    let job = run_job(&mut db, started);
    assert_eq!(job["status"], "completed");
    drop(db);
    st.close();
    // reopen: new handles, same files
    let st = storage(&name).await;
    let mut db = CairnDb::open_with((*st).clone()).unwrap();
    let d: serde_json::Value =
        serde_wasm_bindgen::from_value(db.describe("docs").unwrap()).unwrap();
    assert_eq!(d["total_elements"], 298);
    let b: Vec<String> = serde_wasm_bindgen::from_value(db.backups().unwrap()).unwrap();
    assert_eq!(b, vec!["snap".to_string()]);
    let started = db.start_restore("snap", "copy").unwrap();
    assert_eq!(run_job(&mut db, started)["status"], "completed");
    let d: serde_json::Value =
        serde_wasm_bindgen::from_value(db.describe("copy").unwrap()).unwrap();
    assert_eq!(d["total_elements"], 298);
    st.close();
}
