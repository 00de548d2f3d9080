//! Endee's msgpack responses (request bodies are decoded by `cairn_core::wire`, shared with
//! the browser host).

use cairn_core::{SearchHit, VectorRecord};
use rmpv::Value;

fn f32s(v: &[f32]) -> Value {
    Value::Array(v.iter().map(|x| Value::F32(*x)).collect())
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

/// Search results as Endee's msgpack `[similarity, id, meta, filter, norm, vector]` rows.
pub fn encode_hits(hits: &[SearchHit]) -> Vec<u8> {
    encode(&Value::Array(
        hits.iter()
            .map(|h| {
                Value::Array(vec![
                    Value::F32(h.similarity),
                    Value::from(h.id.as_str()),
                    Value::Binary(h.meta.clone()),
                    Value::from(h.filter.as_str()),
                    Value::F32(h.norm),
                    f32s(&h.vector),
                ])
            })
            .collect(),
    ))
}

/// A stored vector as Endee's msgpack `[id, meta, filter, norm, vector, (sparse_ids, sparse_values)]`.
pub fn encode_vector(r: &VectorRecord, hybrid: bool) -> Vec<u8> {
    let mut row = vec![
        Value::from(r.id.as_str()),
        Value::Binary(r.meta.clone()),
        Value::from(r.filter.as_str()),
        Value::F32(r.norm),
        f32s(&r.vector),
    ];
    if hybrid {
        row.push(Value::Array(
            r.sparse_indices.iter().map(|&x| Value::from(x)).collect(),
        ));
        row.push(f32s(&r.sparse_values));
    }
    encode(&Value::Array(row))
}
