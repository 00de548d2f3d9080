//! In headless Chromium (page): the wasm SIMD kernels against the scalar reference, and the
//! database API in memory.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use cairn_core::kernels::{self, scalar};
use cairn_core::rng::SplitMix64;
use cairn_wasm::{CairnDb, kernel_backend};
mod common;

use common::{js, run_job};
use serde_json::json;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn simd128_kernels_match_scalar() {
    assert_eq!(kernel_backend(), "wasm simd128");
    let mut r = SplitMix64::new(3);
    for len in (1..70).chain([383, 384, 385, 1000]) {
        let a: Vec<f32> = (0..len).map(|_| r.next_f32() - 0.5).collect();
        let b: Vec<f32> = (0..len).map(|_| r.next_f32() - 0.5).collect();
        let h: Vec<u16> = b
            .iter()
            .map(|&x| half::f16::from_f32(x).to_bits())
            .collect();
        let w: Vec<i16> = (0..len).map(|_| r.next_u64() as i16).collect();
        let x: Vec<i8> = (0..len).map(|_| (r.next_u64() as i8).max(-127)).collect();
        let y: Vec<i8> = (0..len).map(|_| (r.next_u64() as i8).max(-127)).collect();
        let tol = 1e-4 * len as f32;
        assert!((kernels::dot_f32(&a, &b) - scalar::dot_f32(&a, &b)).abs() < tol);
        assert!((kernels::l2sq_f32(&a, &b) - scalar::l2sq_f32(&a, &b)).abs() < tol);
        assert!((kernels::dot_f32_f16(&a, &h) - scalar::dot_f32_f16(&a, &h)).abs() < tol);
        assert!((kernels::dot_f32_i16(&a, &w) - scalar::dot_f32_i16(&a, &w)).abs() < tol * 32768.0);
        assert_eq!(kernels::dot_i8(&x, &y), scalar::dot_i8(&x, &y));
    }
}

#[wasm_bindgen_test]
fn memory_database_flow() {
    let mut db = CairnDb::open_memory().unwrap();
    db.create_index(
        "a",
        js(json!({"dim": 4, "space_type": "l2", "precision": "float32"})),
    )
    .unwrap();
    let n = db.upsert("a", js(json!([{"id": "x", "vector": [1, 0, 0, 0], "filter": {"c": "y"}}, {"id": "z", "vector": [0, 0, 0, 1]}]))).unwrap();
    assert_eq!(n, 2);
    let hits: serde_json::Value = serde_wasm_bindgen::from_value(
        db.search("a", js(json!({"vector": [1, 0, 0, 0], "k": 1})))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(hits[0]["id"], "x");
    let e = db
        .search(
            "a",
            js(json!({"vector": [1, 0, 0, 0], "filter": [{"c": {"$gt": 1}}]})),
        )
        .unwrap_err();
    let status = js_sys::Reflect::get(&e, &"status".into()).unwrap().as_f64();
    assert_eq!(status, Some(400.0));
    let started = db.start_backup("a", "b").unwrap();
    let job = run_job(&mut db, started);
    assert_eq!(job["status"], "completed");
    let bytes = db.export_backup("b").unwrap();
    let mut other = CairnDb::open_memory().unwrap();
    other.import_backup("b", &bytes).unwrap();
    let started = other.start_restore("b", "copy").unwrap();
    assert_eq!(run_job(&mut other, started)["status"], "completed");
    let d: serde_json::Value =
        serde_wasm_bindgen::from_value(other.describe("copy").unwrap()).unwrap();
    assert_eq!(d["total_elements"], 2);
}

#[wasm_bindgen_test]
fn hybrid_search_in_the_browser_matches_the_server_shapes() {
    let mut db = CairnDb::open_memory().unwrap();
    db.create_index(
        "h",
        js(json!({"dim": 4, "precision": "float32", "sparse_model": "endee_bm25"})),
    )
    .unwrap();
    db.upsert(
        "h",
        js(json!([
            {"id": "a", "vector": [1, 0, 0, 0], "sparse_indices": [7, 9], "sparse_values": [1.5, 0.5]},
            {"id": "b", "vector": [0, 1, 0, 0], "sparse_indices": [9], "sparse_values": [2.0]},
        ])),
    )
    .unwrap();
    let hits: serde_json::Value = serde_wasm_bindgen::from_value(
        db.search(
            "h",
            js(json!({"sparse_indices": [7], "sparse_values": [1.0]})),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(hits.as_array().map(Vec::len), Some(1));
    assert_eq!(hits[0]["id"], "a");
    let got: serde_json::Value = serde_wasm_bindgen::from_value(db.get("h", "b").unwrap()).unwrap();
    assert_eq!(got["sparse_indices"], json!([9]));
    let d: serde_json::Value = serde_wasm_bindgen::from_value(db.describe("h").unwrap()).unwrap();
    assert_eq!(d["sparse_model"], "endee_bm25");
    // The server's create rules: an unknown model is refused with its message.
    let e = db
        .create_index("bad", js(json!({"dim": 4, "sparse_model": "splade"})))
        .unwrap_err();
    let msg = js_sys::Reflect::get(&e, &"message".into())
        .unwrap()
        .as_string()
        .unwrap();
    assert!(msg.contains("Invalid sparse_model"), "{msg}");
}

/// The typed fast path answers what the JSON path answers: one query (`searchVector`) and a
/// batch in one call (`searchMany`), with a filter, and a batch of the wrong length refused.
#[wasm_bindgen_test]
fn typed_searches_match_the_json_path() {
    let mut db = CairnDb::open_memory().unwrap();
    db.create_index("t", js(json!({"dim": 8, "precision": "float32"})))
        .unwrap();
    let mut r = SplitMix64::new(5);
    let vecs: Vec<Vec<f32>> = (0..300)
        .map(|_| (0..8).map(|_| r.gaussian()).collect())
        .collect();
    let items: Vec<serde_json::Value> = vecs
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i.to_string(), "vector": v, "filter": {"g": i % 3}}))
        .collect();
    db.upsert("t", js(json!(items))).unwrap();
    let field = |o: &wasm_bindgen::JsValue, k: &str| js_sys::Reflect::get(o, &k.into()).unwrap();
    let ids_of = |o: &wasm_bindgen::JsValue| -> Vec<String> {
        js_sys::Array::from(&field(o, "ids"))
            .iter()
            .map(|v| v.as_string().unwrap())
            .collect()
    };
    let filter = r#"[{"g":{"$eq":1}}]"#;
    let mut flat = Vec::new();
    let mut want = Vec::new();
    for q in vecs.iter().take(5) {
        let json_hits: serde_json::Value = serde_wasm_bindgen::from_value(
            db.search(
                "t",
                js(json!({"vector": q, "k": 7, "ef": 64, "filter": filter})),
            )
            .unwrap(),
        )
        .unwrap();
        let ids: Vec<String> = json_hits
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_string())
            .collect();
        let one = db.search_vector("t", q, 7, 64, filter).unwrap();
        assert_eq!(ids_of(&one), ids);
        let sims = js_sys::Float32Array::from(field(&one, "similarities")).to_vec();
        assert_eq!(sims.len(), 7);
        assert!(sims.windows(2).all(|w| w[0] >= w[1]), "best first");
        flat.extend_from_slice(q);
        want.extend(ids);
    }
    let many = db.search_many("t", &flat, 7, 64, filter).unwrap();
    assert_eq!(ids_of(&many), want);
    assert_eq!(
        js_sys::Uint32Array::from(field(&many, "counts")).to_vec(),
        vec![7; 5]
    );
    assert!(db.search_many("t", &flat[..13], 7, 64, "").is_err());
    assert!(db.search_vector("t", &[1.0; 8], 7, 64, "not json").is_err());
}
