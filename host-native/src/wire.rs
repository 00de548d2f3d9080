//! Endee's wire formats: JSON and msgpack request bodies, msgpack responses.

use cairn_core::{SearchHit, UpsertItem, VectorRecord};
use rmpv::Value;
use serde_json::Value as Json;

fn num(v: &Value) -> Option<f32> {
    match v {
        Value::F32(x) => Some(*x),
        Value::F64(x) => Some(*x as f32),
        Value::Integer(i) => i.as_f64().map(|x| x as f32),
        _ => None,
    }
}

fn floats(v: &Value, what: &str) -> Result<Vec<f32>, String> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| num(x).ok_or_else(|| format!("{what} must be numbers")))
            .collect(),
        Value::Nil => Ok(vec![]),
        _ => Err(format!("{what} must be an array of numbers")),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => s.as_str().map(String::from),
        Value::Binary(b) => String::from_utf8(b.clone()).ok(),
        Value::Integer(i) => Some(i.to_string()),
        Value::Nil => Some(String::new()),
        _ => None,
    }
}

/// Decodes a msgpack insert body: an array of `[id, meta, filter, norm, vector, sparse_ids?, sparse_values?]`.
pub fn decode_msgpack_insert(body: &[u8]) -> Result<Vec<UpsertItem>, String> {
    let mut rd = body;
    let v = rmpv::decode::read_value(&mut rd).map_err(|e| format!("invalid msgpack: {e}"))?;
    let rows = match v {
        Value::Array(a) => a,
        _ => return Err("msgpack body must be an array of vector objects".into()),
    };
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let f = match row {
                Value::Array(f) if f.len() >= 5 => f,
                _ => {
                    return Err(format!(
                        "vector object {i} must be [id, meta, filter, norm, vector, ...]"
                    ));
                }
            };
            let id =
                text(&f[0]).ok_or_else(|| format!("vector object {i}: id must be a string"))?;
            let meta = match &f[1] {
                Value::Binary(b) => b.clone(),
                Value::String(s) => s.as_bytes().to_vec(),
                Value::Nil => vec![],
                _ => return Err(format!("vector {id:?}: meta must be bytes")),
            };
            let filter = text(&f[2])
                .ok_or_else(|| format!("vector {id:?}: filter must be a JSON string"))?;
            let norm = match &f[3] {
                Value::Nil => 1.0,
                x => num(x).ok_or_else(|| format!("vector {id:?}: norm must be a number"))?,
            };
            let vector = floats(&f[4], "vector")?;
            let sparse_indices = match f.get(5) {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_u64()
                            .and_then(|u| u32::try_from(u).ok())
                            .ok_or("sparse indices must be u32")
                    })
                    .collect::<Result<Vec<u32>, _>>()?,
                _ => vec![],
            };
            let sparse_values = f
                .get(6)
                .map(|x| floats(x, "sparse_values"))
                .transpose()?
                .unwrap_or_default();
            Ok(UpsertItem {
                id,
                vector,
                meta,
                filter,
                norm,
                sparse_indices,
                sparse_values,
            })
        })
        .collect()
}

/// Decodes a JSON insert body: one object or an array of objects.
pub fn decode_json_insert(body: &[u8]) -> Result<Vec<UpsertItem>, String> {
    let v: Json = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON: {e}"))?;
    let rows = match v {
        Json::Array(a) => a,
        o @ Json::Object(_) => vec![o],
        _ => return Err("body must be a vector object or an array of them".into()),
    };
    rows.into_iter()
        .map(|r| {
            let id = match r.get("id") {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Number(n)) => n.to_string(),
                _ => return Err("each vector needs an id (string or number)".to_string()),
            };
            let vector: Vec<f32> = match r.get("vector") {
                Some(Json::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_f64()
                            .map(|f| f as f32)
                            .ok_or_else(|| format!("vector {id:?}: values must be numbers"))
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(format!("vector {id:?}: missing 'vector' array")),
            };
            let meta = match r.get("meta") {
                Some(Json::String(s)) => s.as_bytes().to_vec(),
                Some(Json::Null) | None => vec![],
                Some(other) => other.to_string().into_bytes(),
            };
            let filter = match r.get("filter") {
                Some(Json::String(s)) => s.clone(),
                Some(o @ Json::Object(_)) => o.to_string(),
                Some(Json::Null) | None => "{}".into(),
                Some(_) => {
                    return Err(format!(
                        "vector {id:?}: filter must be an object or a JSON string"
                    ));
                }
            };
            let norm = match r.get("norm") {
                Some(n) => n
                    .as_f64()
                    .ok_or_else(|| format!("vector {id:?}: norm must be a number"))?
                    as f32,
                None => vector.iter().map(|x| x * x).sum::<f32>().sqrt(),
            };
            let sparse_indices = r
                .get("sparse_indices")
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            x.as_u64()
                                .and_then(|u| u32::try_from(u).ok())
                                .ok_or("sparse indices must be u32")
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default();
            let sparse_values = r
                .get("sparse_values")
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            x.as_f64()
                                .map(|f| f as f32)
                                .ok_or("sparse values must be numbers")
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default();
            Ok(UpsertItem {
                id,
                vector,
                meta,
                filter,
                norm,
                sparse_indices,
                sparse_values,
            })
        })
        .collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_insert_accepts_python_and_js_number_forms() {
        // JS encodes whole floats as integers and others as f64; Python sends f32.
        let row = Value::Array(vec![
            Value::from("a"),
            Value::Binary(vec![1, 2]),
            Value::from("{\"x\":1}"),
            Value::from(1),
            Value::Array(vec![Value::from(0), Value::F64(0.5), Value::F32(0.25)]),
        ]);
        let body = encode(&Value::Array(vec![row]));
        let items = decode_msgpack_insert(&body).unwrap();
        assert_eq!(items[0].vector, vec![0.0, 0.5, 0.25]);
        assert_eq!(items[0].norm, 1.0);
        assert!(decode_msgpack_insert(b"\xc1").is_err());
        assert!(decode_msgpack_insert(&encode(&Value::from(3))).is_err());
    }

    #[test]
    fn json_insert_single_and_batch() {
        let one =
            decode_json_insert(br#"{"id": 7, "vector": [1, 2], "filter": {"a": 1}, "meta": "m"}"#)
                .unwrap();
        assert_eq!(
            (one[0].id.as_str(), one[0].filter.as_str(), &one[0].meta[..]),
            ("7", "{\"a\":1}", &b"m"[..])
        );
        assert!((one[0].norm - 5f32.sqrt()).abs() < 1e-6);
        assert_eq!(
            decode_json_insert(br#"[{"id":"a","vector":[1]},{"id":"b","vector":[2]}]"#)
                .unwrap()
                .len(),
            2
        );
        assert!(decode_json_insert(br#"[{"vector":[1]}]"#).is_err());
        assert!(decode_json_insert(b"nope").is_err());
    }
}
