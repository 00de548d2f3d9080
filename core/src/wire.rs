//! Endee's request bodies, decoded straight into typed values.
//!
//! Every host decodes requests here, so the server and the browser can't disagree about a
//! shape. Bodies are never parsed into a `serde_json::Value` / `rmpv::Value` tree: vectors go
//! through serde visitors into `Vec<f32>` (4 bytes a value, against 30–40 for a tree node), and
//! the small free-form parts (meta, filters) are size-checked as raw text before they are
//! parsed. Peak memory per request is then a small multiple of the body.

use crate::filter::{Filter, FilterError};
use crate::index::{MAX_FILTER_BYTES, MAX_META_BYTES, SearchRequest};
use crate::params::{IndexParams, Precision, SpaceType};
use crate::record::UpsertItem;
use crate::sparse::SparseModel;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::fmt;

/// A request body that does not have the shape its route needs; the message says what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

pub(crate) fn werr(m: impl Into<String>) -> WireError {
    WireError(m.into())
}

impl From<FilterError> for WireError {
    fn from(e: FilterError) -> Self {
        WireError(e.to_string())
    }
}

/// An id as Endee's clients send it: a string, or a number (kept as its decimal text).
pub(crate) struct IdText(pub(crate) String);

impl<'de> Deserialize<'de> for IdText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IdText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or number id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdText, E> {
                Ok(IdText(v.into()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<IdText, E> {
                Ok(IdText(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<IdText, E> {
                String::from_utf8(v.to_vec())
                    .map(IdText)
                    .map_err(|_| E::custom("id bytes are not UTF-8"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdText, E> {
                Ok(IdText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdText, E> {
                Ok(IdText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IdText, E> {
                serde_json::Number::from_f64(v)
                    .map(|n| IdText(n.to_string()))
                    .ok_or_else(|| E::custom("id is not a finite number"))
            }
            // msgpack nil: an empty id, refused by the index with its own message.
            fn visit_unit<E: de::Error>(self) -> Result<IdText, E> {
                Ok(IdText(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Bytes or text (msgpack meta), nil as empty.
pub(crate) struct BytesLike(pub(crate) Vec<u8>);

impl<'de> Deserialize<'de> for BytesLike {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BytesLike;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes, a string or nil")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<BytesLike, E> {
                Ok(BytesLike(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<BytesLike, E> {
                Ok(BytesLike(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BytesLike, E> {
                Ok(BytesLike(v.as_bytes().to_vec()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<BytesLike, E> {
                Ok(BytesLike(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of `T` (numbers), nil as empty: msgpack clients send nil for "no sparse part".
/// Capacity comes from the declared length, capped: a declared length is not data.
pub(crate) struct ListOrNil<T>(pub(crate) Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ListOrNil<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = ListOrNil<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of numbers or nil")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<ListOrNil<T>, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(x) = a.next_element::<T>()? {
                    v.push(x);
                }
                Ok(ListOrNil(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ListOrNil<T>, E> {
                Ok(ListOrNil(Vec::new()))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Vector or sparse values as f32.
pub(crate) type Floats = ListOrNil<f32>;
/// Sparse term ids.
pub(crate) type U32s = ListOrNil<u32>;

/// A number, nil as "not given".
pub(crate) struct OptF32(pub(crate) Option<f32>);

impl<'de> Deserialize<'de> for OptF32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = OptF32;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or nil")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<OptF32, E> {
                Ok(OptF32(Some(v as f32)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<OptF32, E> {
                Ok(OptF32(Some(v as f32)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OptF32, E> {
                Ok(OptF32(Some(v as f32)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<OptF32, E> {
                Ok(OptF32(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// One msgpack row: `[id, meta, filter, norm, vector, sparse_ids?, sparse_values?, ...]`.
struct MsgRow(UpsertItem);

impl<'de> Deserialize<'de> for MsgRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MsgRow;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a vector object [id, meta, filter, norm, vector, ...]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<MsgRow, A::Error> {
                let short = || {
                    de::Error::custom("vector object must be [id, meta, filter, norm, vector, ...]")
                };
                let id = a.next_element::<IdText>()?.ok_or_else(short)?.0;
                let meta = a.next_element::<BytesLike>()?.ok_or_else(short)?.0;
                let filter = a.next_element::<IdText>()?.ok_or_else(short)?.0;
                let norm = a.next_element::<OptF32>()?.ok_or_else(short)?.0;
                let vector = a.next_element::<Floats>()?.ok_or_else(short)?.0;
                let sparse_indices = a.next_element::<U32s>()?.map(|x| x.0).unwrap_or_default();
                let sparse_values = a.next_element::<Floats>()?.map(|x| x.0).unwrap_or_default();
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MsgRow(UpsertItem {
                    id,
                    vector,
                    meta,
                    filter,
                    norm: norm.unwrap_or(1.0),
                    sparse_indices,
                    sparse_values,
                }))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Decodes a msgpack insert body: an array of `[id, meta, filter, norm, vector, sparse_ids?,
/// sparse_values?]` rows (the form Endee's Python and npm clients send).
pub fn decode_msgpack_insert(body: &[u8]) -> Result<Vec<UpsertItem>, WireError> {
    let rows: Vec<MsgRow> =
        rmp_serde::from_slice(body).map_err(|e| werr(format!("invalid msgpack body: {e}")))?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Free-form JSON kept as its text until its size is known (meta, filters).
pub(crate) fn small_json(raw: &RawValue, what: &str, max: usize) -> Result<Value, WireError> {
    if raw.get().len() > max {
        return Err(werr(format!(
            "{what} too large: {} bytes (max {max})",
            raw.get().len()
        )));
    }
    serde_json::from_str(raw.get()).map_err(|e| werr(format!("{what}: {e}")))
}

/// A JSON object's `meta` as stored: a string's text, other JSON as its text, none as empty.
pub(crate) fn json_meta(raw: Option<&RawValue>) -> Result<Vec<u8>, WireError> {
    Ok(match raw {
        None => vec![],
        Some(raw) => match small_json(raw, "meta", MAX_META_BYTES + 2)? {
            Value::Null => vec![],
            Value::String(s) => s.into_bytes(),
            other => other.to_string().into_bytes(),
        },
    })
}

/// A JSON object's `filter` as stored: an object or a JSON string, none as `{}`.
pub(crate) fn json_filter(id: &str, raw: Option<&RawValue>) -> Result<String, WireError> {
    Ok(match raw {
        None => "{}".into(),
        Some(raw) => match small_json(raw, "filter", MAX_FILTER_BYTES + 2)? {
            Value::Null => "{}".into(),
            Value::String(s) => s,
            o @ Value::Object(_) => o.to_string(),
            _ => {
                return Err(werr(format!(
                    "{id:?}: filter must be an object or a JSON string"
                )));
            }
        },
    })
}

#[derive(Deserialize)]
struct JsonItem<'a> {
    id: Option<IdText>,
    vector: Option<Floats>,
    #[serde(borrow)]
    meta: Option<&'a RawValue>,
    #[serde(borrow)]
    filter: Option<&'a RawValue>,
    norm: Option<OptF32>,
    sparse_indices: Option<U32s>,
    sparse_values: Option<Floats>,
}

impl JsonItem<'_> {
    fn into_item(self) -> Result<UpsertItem, WireError> {
        let id = self
            .id
            .ok_or_else(|| werr("each vector needs an id (string or number)"))?
            .0;
        let vector = self
            .vector
            .ok_or_else(|| werr(format!("vector {id:?}: missing 'vector' array")))?
            .0;
        let meta = json_meta(self.meta)?;
        let filter = json_filter(&id, self.filter)?;
        let norm = match self.norm.and_then(|n| n.0) {
            Some(n) => n,
            None => vector.iter().map(|x| x * x).sum::<f32>().sqrt(),
        };
        Ok(UpsertItem {
            id,
            vector,
            meta,
            filter,
            norm,
            sparse_indices: self.sparse_indices.map(|x| x.0).unwrap_or_default(),
            sparse_values: self.sparse_values.map(|x| x.0).unwrap_or_default(),
        })
    }
}

/// One JSON vector object or an array of them, decoded without a `Value` tree.
struct JsonItems<'a>(Vec<JsonItem<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for JsonItems<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = JsonItems<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a vector object or an array of them")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<JsonItems<'a>, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 12));
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(JsonItems(v))
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<JsonItems<'a>, M::Error> {
                let one = JsonItem::deserialize(de::value::MapAccessDeserializer::new(m))?;
                Ok(JsonItems(vec![one]))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Decodes a JSON insert body: one vector object or an array of them, `{id, vector, meta?,
/// filter?, norm?, sparse_indices?, sparse_values?}`. A missing norm is the vector's length.
pub fn decode_json_insert(body: &[u8]) -> Result<Vec<UpsertItem>, WireError> {
    let items: JsonItems =
        serde_json::from_slice(body).map_err(|e| werr(format!("Invalid JSON: {e}")))?;
    items.0.into_iter().map(JsonItem::into_item).collect()
}

/// A filter as requests carry it: an array of conditions, the same as JSON text, or nothing
/// (`null`, absent, an empty string). `Ok(None)` means "no filter".
pub fn filter_from_json(v: Option<&Value>) -> Result<Option<Filter>, FilterError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Filter::parse_str(s).map(Some),
        Some(other) => Filter::parse(other).map(Some),
    }
}

#[derive(Deserialize)]
struct FilterParams {
    prefilter_threshold: Option<u64>,
}

#[derive(Deserialize)]
struct SearchBody<'a> {
    k: Option<u64>,
    vector: Option<Floats>,
    ef: Option<u64>,
    include_vectors: Option<bool>,
    #[serde(borrow)]
    filter: Option<&'a RawValue>,
    filter_params: Option<FilterParams>,
    sparse_indices: Option<U32s>,
    sparse_values: Option<Floats>,
    dense_rrf_weight: Option<OptF32>,
    rrf_rank_constant: Option<OptF32>,
}

/// Decodes a search body `{k, vector?, sparse_indices?, sparse_values?, ef?, include_vectors?,
/// filter?, filter_params?, dense_rrf_weight?, rrf_rank_constant?}`: dense (`vector`), sparse
/// (`sparse_indices` + `sparse_values`) or both (fused by weighted reciprocal rank).
pub fn decode_search(body: &[u8]) -> Result<SearchRequest, WireError> {
    let b: SearchBody =
        serde_json::from_slice(body).map_err(|e| werr(format!("Invalid JSON: {e}")))?;
    let k = b.k.ok_or_else(|| werr("Missing required parameter 'k'"))?;
    let sparse_indices = b.sparse_indices.map(|x| x.0).unwrap_or_default();
    let sparse_values = b.sparse_values.map(|x| x.0).unwrap_or_default();
    let vector = match b.vector {
        Some(v) => v.0,
        None if !sparse_indices.is_empty() => Vec::new(),
        None => {
            return Err(werr(
                "Missing required parameter 'vector' (or 'sparse_indices')",
            ));
        }
    };
    if sparse_indices.len() != sparse_values.len() {
        return Err(werr(
            "sparse_indices and sparse_values must have the same length",
        ));
    }
    let w = b
        .dense_rrf_weight
        .and_then(|x| x.0)
        .unwrap_or(crate::index::DEFAULT_DENSE_RRF_WEIGHT);
    if !(0.0..=1.0).contains(&w) {
        return Err(werr(format!("dense_rrf_weight must be in [0, 1], got {w}")));
    }
    let c = b
        .rrf_rank_constant
        .and_then(|x| x.0)
        .unwrap_or(crate::index::DEFAULT_RRF_RANK_CONSTANT);
    if !(c > 0.0 && c.is_finite()) {
        return Err(werr(format!("rrf_rank_constant must be > 0, got {c}")));
    }
    let mut req = SearchRequest::new(vector, usize::try_from(k).unwrap_or(usize::MAX));
    req.ef = b.ef.map_or(0, |e| usize::try_from(e).unwrap_or(usize::MAX));
    req.include_vectors = b.include_vectors.unwrap_or(false);
    req.filter = match b.filter {
        None => None,
        Some(raw) => filter_from_json(Some(&small_json(raw, "filter", MAX_FILTER_BYTES)?))?,
    };
    req.prefilter_threshold = b.filter_params.and_then(|p| p.prefilter_threshold);
    req.sparse_indices = sparse_indices;
    req.sparse_values = sparse_values;
    req.dense_rrf_weight = w;
    req.rrf_rank_constant = c;
    Ok(req)
}

#[derive(Deserialize)]
struct DeleteByFilterBody<'a> {
    #[serde(borrow)]
    filter: Option<&'a RawValue>,
}

/// Decodes a delete-by-filter body `{filter}`. A missing, null or empty filter is refused
/// here, and an empty condition list by the index: a delete never matches "everything".
pub fn decode_delete_by_filter(body: &[u8]) -> Result<Filter, WireError> {
    let b: DeleteByFilterBody =
        serde_json::from_slice(body).map_err(|e| werr(format!("Invalid JSON body: {e}")))?;
    let raw = b
        .filter
        .ok_or_else(|| werr("Invalid request body - missing filter"))?;
    let f = filter_from_json(Some(&small_json(raw, "filter", MAX_FILTER_BYTES)?))?
        .ok_or_else(|| werr("filter must not be empty"))?;
    if f.is_empty() {
        return Err(werr(
            "filter must contain at least one condition: an empty filter would delete every vector",
        ));
    }
    Ok(f)
}

/// Decodes a filter-update body `{updates: [{id, filter}, ...]}`; a malformed entry is an
/// error naming its position (nothing is skipped silently).
pub fn decode_filter_updates(body: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        updates: Option<Vec<&'a RawValue>>,
    }
    #[derive(Deserialize)]
    struct Update<'a> {
        id: Option<IdText>,
        #[serde(borrow)]
        filter: Option<&'a RawValue>,
    }
    let msg = "Missing or invalid 'updates' field. Must be a list of {id, filter} objects.";
    let b: Body = serde_json::from_slice(body).map_err(|e| werr(format!("{msg} ({e})")))?;
    let ups = b.updates.ok_or_else(|| werr(msg))?;
    ups.into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let bad = |why: &str| werr(format!("updates[{i}]: {why}"));
            let u: Update = serde_json::from_str(raw.get()).map_err(|e| bad(&e.to_string()))?;
            let id = u.id.ok_or_else(|| bad("missing id"))?.0;
            let f = u.filter.ok_or_else(|| bad("missing filter"))?;
            let filter = match small_json(f, "filter", MAX_FILTER_BYTES + 2)? {
                o @ Value::Object(_) => o.to_string(),
                Value::String(s) => s,
                _ => return Err(bad("filter must be an object or a JSON string")),
            };
            Ok((id, filter))
        })
        .collect()
}

/// Decodes `{"id": ...}` (get a vector by id).
pub fn decode_id(body: &[u8]) -> Result<String, WireError> {
    #[derive(Deserialize)]
    struct Body {
        id: Option<IdText>,
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| werr(format!("Invalid JSON: {e}")))?;
    Ok(b.id
        .ok_or_else(|| werr("Missing required parameter 'id'"))?
        .0)
}

/// Decodes a create-index body `{index_name, dim, space_type, M?, ef_con?, precision?,
/// sparse_model?, sparse_dim?, checksum?}` into the name and checked parameters.
/// `sparse_model` (`None` | `default` | `endee_bm25`) is Endee's current way to ask for a
/// hybrid index; `sparse_dim` is the older one, which Endee's npm client 1.0.8 still sends, so
/// it is kept (dot-product scoring, term ids below it). Both at once is refused.
pub fn decode_create_index(body: &[u8]) -> Result<(String, IndexParams), WireError> {
    #[derive(Deserialize)]
    struct Body {
        index_name: Option<String>,
        dim: Option<u64>,
        space_type: Option<String>,
        #[serde(rename = "M")]
        m: Option<u64>,
        ef_con: Option<u64>,
        precision: Option<String>,
        sparse_model: Option<String>,
        sparse_dim: Option<u64>,
        checksum: Option<i64>,
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| werr(format!("Invalid JSON: {e}")))?;
    let name = b
        .index_name
        .ok_or_else(|| werr("Missing required parameters: index_name"))?;
    // A user's name: `.` only ever separates a database from its collections' names.
    crate::params::validate_index_name(&name).map_err(|e| werr(e.to_string()))?;
    let dim = b
        .dim
        .ok_or_else(|| werr("Missing required parameters: dim"))?;
    let space = b
        .space_type
        .ok_or_else(|| werr("Missing required parameters: space_type"))?;
    let mut p = IndexParams::new(
        usize::try_from(dim).unwrap_or(usize::MAX),
        SpaceType::parse(&space).map_err(|e| werr(e.to_string()))?,
    );
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    if let Some(m) = b.m {
        p.m = size(m);
    }
    if let Some(e) = b.ef_con {
        p.ef_construction = size(e);
    }
    if let Some(pr) = b.precision {
        p.precision = Precision::parse(&pr).map_err(|e| werr(e.to_string()))?;
    }
    if let Some(m) = b.sparse_model {
        p.sparse_model = SparseModel::parse(&m).ok_or_else(|| {
            werr(format!(
                "Invalid sparse_model: {m}. Must be one of 'None', 'default', 'endee_bm25'"
            ))
        })?;
    }
    p.sparse_dim = b.sparse_dim.unwrap_or(0);
    if p.sparse_dim > 0 && p.sparse_model != SparseModel::None {
        return Err(werr("give sparse_model or the legacy sparse_dim, not both"));
    }
    if let Some(c) = b.checksum {
        p.checksum = c;
    }
    p.validate().map_err(|e| werr(e.to_string()))?;
    Ok((name, p))
}

/// A rebuild body `{"M": m, "ef_con": e}` (Endee's client sends both); each may be left out
/// to keep the index's current value. Bounds are the engine's to check.
pub fn decode_rebuild(body: &[u8]) -> Result<(Option<usize>, Option<usize>), WireError> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(rename = "M")]
        m: Option<u64>,
        ef_con: Option<u64>,
    }
    let b: Body = if body.iter().all(u8::is_ascii_whitespace) {
        Body {
            m: None,
            ef_con: None,
        }
    } else {
        serde_json::from_slice(body).map_err(|e| werr(format!("Invalid JSON: {e}")))?
    };
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Ok((b.m.map(size), b.ef_con.map(size)))
}

/// Stored meta bytes as JSON answers show them (the browser's API, the server's
/// `?format=json`): the JSON value they hold, else their text; `null` when empty.
pub fn meta_json(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// A stored filter (kept as JSON text) as a JSON value (`null` if it is not JSON).
pub fn filter_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Runs every body decoder over one input (the fuzz targets call it): none may panic.
#[doc(hidden)]
pub fn decode_all(body: &[u8]) {
    let _ = decode_create_index(body);
    let _ = decode_msgpack_insert(body);
    let _ = decode_json_insert(body);
    let _ = decode_search(body);
    let _ = decode_delete_by_filter(body);
    let _ = decode_filter_updates(body);
    let _ = decode_id(body);
    let _ = decode_rebuild(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp(v: &impl serde::Serialize) -> Vec<u8> {
        rmp_serde::to_vec(v).unwrap_or_default()
    }

    #[test]
    fn msgpack_insert_accepts_python_and_js_number_forms() {
        // JS encodes whole floats as integers and others as f64; Python sends f32 and bin meta.
        #[derive(serde::Serialize)]
        struct Row<'a>(
            &'a str,
            #[serde(with = "serde_bytes")] &'a [u8],
            &'a str,
            i32,
            (i32, f64, f32),
        );
        let body = mp(&vec![Row("a", &[1, 2], "{\"x\":1}", 1, (0, 0.5, 0.25))]);
        let items = decode_msgpack_insert(&body).unwrap_or_default();
        assert_eq!(items[0].vector, vec![0.0, 0.5, 0.25]);
        assert_eq!((items[0].norm, &items[0].meta[..]), (1.0, &[1u8, 2][..]));
        assert!(decode_msgpack_insert(b"\xc1").is_err());
        assert!(decode_msgpack_insert(&mp(&3)).is_err());
        assert!(decode_msgpack_insert(&mp(&vec![("a", "m")])).is_err());
    }

    #[test]
    fn json_insert_single_and_batch() {
        let one =
            decode_json_insert(br#"{"id": 7, "vector": [1, 2], "filter": {"a": 1}, "meta": "m"}"#)
                .unwrap_or_default();
        assert_eq!(
            (one[0].id.as_str(), one[0].filter.as_str(), &one[0].meta[..]),
            ("7", "{\"a\":1}", &b"m"[..])
        );
        assert!((one[0].norm - 5f32.sqrt()).abs() < 1e-6);
        let two = decode_json_insert(br#"[{"id":"a","vector":[1]},{"id":"b","vector":[2]}]"#);
        assert_eq!(two.map(|v| v.len()), Ok(2));
        assert!(decode_json_insert(br#"[{"vector":[1]}]"#).is_err());
        assert!(decode_json_insert(br#"[{"id":"a","vector":["x"]}]"#).is_err());
        assert!(decode_json_insert(br#"{"id":"a","vector":[1],"filter":[1]}"#).is_err());
        assert!(decode_json_insert(b"nope").is_err());
    }

    #[test]
    fn delete_by_filter_refuses_everything_that_would_match_all() {
        for body in [
            &br#"{"filter": []}"#[..],
            br#"{"filter": "[]"}"#,
            br#"{"filter": null}"#,
            br#"{"filter": ""}"#,
            br#"{}"#,
        ] {
            assert!(decode_delete_by_filter(body).is_err(), "{body:?}");
        }
        assert!(decode_delete_by_filter(br#"{"filter": [{"a": {"$eq": 1}}]}"#).is_ok());
    }

    #[test]
    fn filter_updates_name_the_bad_entry() {
        let e = decode_filter_updates(br#"{"updates": [{"id": "a", "filter": {}}, {"id": "b"}]}"#);
        assert!(matches!(e, Err(WireError(m)) if m.contains("updates[1]")));
        let ok = decode_filter_updates(br#"{"updates": [{"id": 3, "filter": {"x": 1}}]}"#);
        assert_eq!(ok, Ok(vec![("3".into(), "{\"x\":1}".into())]));
    }

    #[test]
    fn search_body() {
        let r = decode_search(
            br#"{"k": 3, "vector": [1, 2.5], "ef": 64, "filter": "[{\"a\":{\"$eq\":1}}]"}"#,
        );
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.k, r.ef, r.vector.len()), (3, 64, 2));
        assert!(r.filter.is_some());
        assert!(decode_search(br#"{"vector": [1]}"#).is_err());
        assert!(decode_search(br#"{"k": 1, "sparse_indices": [1]}"#).is_err());
    }
}
