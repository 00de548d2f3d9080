//! Endee's `/api/v2` bodies (the official client `endee` 2.2.0): collections of named fields,
//! objects as msgpack `ObjectBatch`es, searches with one ranked list per field.
//!
//! A collection is an index whose params name its fields ([`FieldNames`]): one `vector` field
//! (the index's dense vectors) and at most one `sparse` field (its sparse parts). An index
//! created through `/api/v1` is a collection whose fields are called
//! [`crate::params::V1_VECTOR_FIELD`] and [`crate::params::V1_SPARSE_FIELD`]. Further
//! `vector` and `multi_vector` fields are the index's further dense fields
//! ([`crate::index::fields`]). A collection needs a `vector` field; sparse-only collections
//! are refused with a clear 400 (not built yet).
//!
//! Decoders here follow the rules of [`crate::wire`]: typed visitors, no value trees for
//! vectors, free-form parts size-checked first.

use crate::control::rebuild::FieldRebuild;
use crate::filter::Filter;
use crate::index::{MAX_FILTER_BYTES, SearchHit, SearchRequest, VectorRecord};
use crate::params::{ExtraFieldSpec, FieldNames, IndexParams, Pooling, Precision, SpaceType};
use crate::record::{FieldsItem, UpsertItem};
use crate::sparse::SparseModel;
use crate::wire::{
    BytesLike, Floats, IdText, ListOrNil, U32s, WireError, filter_from_json, small_json, werr,
};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;

/// Longest collection name the v2 client allows (`MAX_COLLECTION_NAME_LENGTH_ALLOWED`).
pub const MAX_COLLECTION_NAME: usize = 48;
/// Largest `ef_search` the v2 client allows.
pub const MAX_EF_SEARCH: u64 = 1024;

/// Checks a new collection's name: the index-name rule, at most 48 characters, no leading `__`.
pub fn validate_collection_name(name: &str) -> Result<(), WireError> {
    crate::params::validate_index_name(name).map_err(|e| werr(e.to_string()))?;
    if name.len() > MAX_COLLECTION_NAME {
        return Err(werr(format!(
            "collection name too long (max {MAX_COLLECTION_NAME} characters)"
        )));
    }
    if name.starts_with("__") {
        return Err(werr("collection names may not start with '__'"));
    }
    Ok(())
}

#[derive(Deserialize)]
struct FieldSpec {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    params: Option<FieldParams>,
    sparse_model: Option<String>,
}

#[derive(Deserialize)]
struct FieldParams {
    dimension: Option<u64>,
    space_type: Option<String>,
    precision: Option<String>,
    #[serde(rename = "M", alias = "m")]
    m: Option<u64>,
    #[serde(alias = "ef_construct")]
    ef_con: Option<u64>,
    pooling: Option<String>,
}

#[derive(Deserialize)]
struct CreateBody {
    name: Option<String>,
    fields: Option<Vec<FieldSpec>>,
}

/// Decodes `POST /collection {name, fields: [...]}` into the index it is: one `vector` field
/// (dimension required; space `cosine`, precision `int8`, `M` 16, `ef_con` 128 by default)
/// and at most one `sparse` field (`sparse_model` `default` or `endee_bm25`).
pub fn decode_create_collection(body: &[u8]) -> Result<(String, IndexParams), WireError> {
    let b: CreateBody =
        serde_json::from_slice(body).map_err(|e| werr(format!("Invalid JSON: {e}")))?;
    let name = b
        .name
        .ok_or_else(|| werr("Missing required parameter 'name'"))?;
    validate_collection_name(&name)?;
    let fields = b
        .fields
        .filter(|f| !f.is_empty())
        .ok_or_else(|| werr("a collection needs at least one field"))?;
    let mut vector: Option<(String, IndexParams)> = None;
    let mut extra: Vec<ExtraFieldSpec> = Vec::new();
    let mut sparse: Option<(String, SparseModel)> = None;
    let mut seen = std::collections::BTreeSet::new();
    for (i, f) in fields.into_iter().enumerate() {
        let fname = f
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| werr(format!("fields[{i}]: missing name")))?;
        if fname.len() > 128 {
            return Err(werr(format!("fields[{i}]: name too long (max 128 bytes)")));
        }
        if !seen.insert(fname.clone()) {
            return Err(werr(format!("duplicate field name {fname:?}")));
        }
        match f.kind.as_deref() {
            Some(kind @ ("vector" | "multi_vector")) => {
                if f.sparse_model.is_some() {
                    return Err(werr(format!(
                        "field {fname:?}: sparse_model is only valid for sparse fields"
                    )));
                }
                let p = f
                    .params
                    .ok_or_else(|| werr(format!("field {fname:?}: {kind} fields need params")))?;
                let pooling = match (kind, p.pooling.as_deref()) {
                    ("vector", None) => None,
                    ("vector", Some(_)) => {
                        return Err(werr(format!(
                            "field {fname:?}: pooling is only valid for multi_vector fields"
                        )));
                    }
                    (_, Some("mean" | "average_pooling")) => Some(Pooling::Mean),
                    (_, Some("max" | "max_pooling")) => Some(Pooling::Max),
                    (_, other) => {
                        return Err(werr(format!(
                            "field {fname:?}: multi_vector fields need pooling \"mean\" or \"max\", got {other:?}"
                        )));
                    }
                };
                let ip = vector_params(p, pooling.is_some())?;
                if vector.is_none() && pooling.is_none() {
                    vector = Some((fname, ip));
                } else {
                    extra.push(ExtraFieldSpec {
                        name: fname,
                        dim: ip.dim,
                        space: ip.space,
                        precision: ip.precision,
                        m: ip.m,
                        ef_construction: ip.ef_construction,
                        pooling,
                    });
                }
            }
            Some("sparse") => {
                if sparse.is_some() {
                    return Err(werr(
                        "collections with more than one sparse field are not supported by this server yet",
                    ));
                }
                let m = f.sparse_model.ok_or_else(|| {
                    werr(format!(
                        "field {fname:?}: sparse fields require sparse_model"
                    ))
                })?;
                let model = match SparseModel::parse(&m) {
                    Some(SparseModel::None) | None => {
                        return Err(werr(format!(
                            "field {fname:?}: invalid sparse_model {m:?}: must be 'default' or 'endee_bm25'"
                        )));
                    }
                    Some(model) => model,
                };
                sparse = Some((fname, model));
            }
            other => {
                return Err(werr(format!(
                    "field {fname:?}: invalid type {:?}: must be one of vector, sparse, multi_vector",
                    other.unwrap_or("")
                )));
            }
        }
    }
    // Without a vector field the index keeps vectors of no values (see `FieldNames::vector`).
    let (vname, mut p) = match vector {
        Some((n, p)) => (Some(n), p),
        None => (
            None,
            IndexParams::new(0, SpaceType::Ip).with_precision(Precision::Float32),
        ),
    };
    if let Some((_, model)) = &sparse {
        p.sparse_model = *model;
    }
    p.fields = Some(FieldNames {
        vector: vname,
        sparse: sparse.map(|(n, _)| n),
        extra,
    });
    p.validate().map_err(|e| werr(e.to_string()))?;
    Ok((name, p))
}

/// A dense field's params; a further field (`multi_vector`) defaults to float32.
fn vector_params(p: FieldParams, further: bool) -> Result<IndexParams, WireError> {
    let dim = p
        .dimension
        .ok_or_else(|| werr("vector field params need a dimension"))?;
    let space = SpaceType::parse(p.space_type.as_deref().unwrap_or("cosine"))
        .map_err(|e| werr(e.to_string()))?;
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let mut out = IndexParams::new(size(dim), space);
    if further {
        out.precision = Precision::Float32;
    }
    if let Some(pr) = p.precision {
        out.precision = Precision::parse(&pr).map_err(|e| werr(e.to_string()))?;
    }
    if let Some(m) = p.m {
        out.m = size(m);
    }
    if let Some(e) = p.ef_con {
        out.ef_construction = size(e);
    }
    Ok(out)
}

/// A collection as `GET /collection/{c}` shows it: `{name, fields, created_at, layout_version}`.
pub fn collection_json(name: &str, p: &IndexParams, created_at_s: u64, count: usize) -> Value {
    let mut fields: Vec<Value> = p
        .vector_field()
        .map(|name| {
            json!({
                "name": name,
                "type": "vector",
                "params": {
                    "dimension": p.dim,
                    "space_type": p.space.as_str(),
                    "precision": p.precision.as_str(),
                    "M": p.m,
                    "ef_con": p.ef_construction,
                },
            })
        })
        .into_iter()
        .collect();
    for f in p.extra_fields() {
        let mut params = json!({
            "dimension": f.dim,
            "space_type": f.space.as_str(),
            "precision": f.precision.as_str(),
            "M": f.m,
            "ef_con": f.ef_construction,
        });
        let kind = match f.pooling {
            Some(pool) => {
                params["pooling"] = json!(match pool {
                    Pooling::Mean => "mean",
                    Pooling::Max => "max",
                });
                "multi_vector"
            }
            None => "vector",
        };
        fields.push(json!({"name": f.name, "type": kind, "params": params}));
    }
    if let Some(s) = p.sparse_field() {
        fields.push(json!({"name": s, "type": "sparse", "sparse_model": p.scoring().as_str()}));
    }
    json!({
        "name": name,
        "fields": fields,
        "created_at": created_at_s,
        "layout_version": 1,
        "count": count,
        "api": if p.fields.is_some() { "v2" } else { "v1" },
    })
}

/// A `{field: value}` msgpack map, decoded into pairs (clients send a handful of fields).
struct FieldMap<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for FieldMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = FieldMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of field name to value, or nil")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<FieldMap<T>, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = a.next_entry::<String, T>()? {
                    if v.len() >= 64 {
                        return Err(de::Error::custom("more than 64 fields in one object"));
                    }
                    v.push((k, x));
                }
                Ok(FieldMap(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<FieldMap<T>, E> {
                Ok(FieldMap(Vec::new()))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A sparse value on the wire: `[indices, values]`.
#[derive(Deserialize)]
struct SparseWire(U32s, Floats);

/// One object: `[id, meta, filter, {field: vector}, {field: [indices, values]}, {field: [[..]..]}]`.
struct WireObject {
    id: String,
    meta: Vec<u8>,
    filter: String,
    vectors: Vec<(String, Floats)>,
    sparses: Vec<(String, SparseWire)>,
    multi: Vec<(String, ListOrNil<Floats>)>,
}

impl<'de> Deserialize<'de> for WireObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object [id, meta, filter, vectors, sparses, multi_vectors]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<WireObject, A::Error> {
                let short =
                    || de::Error::custom("an object must be [id, meta, filter, vectors, ...]");
                let id = a.next_element::<IdText>()?.ok_or_else(short)?.0;
                let meta = a.next_element::<BytesLike>()?.ok_or_else(short)?.0;
                let filter = a.next_element::<BytesLike>()?.ok_or_else(short)?.0;
                let vectors = a.next_element::<FieldMap<Floats>>()?.ok_or_else(short)?.0;
                let sparses = a
                    .next_element::<FieldMap<SparseWire>>()?
                    .map(|m| m.0)
                    .unwrap_or_default();
                let multi = a
                    .next_element::<FieldMap<ListOrNil<Floats>>>()?
                    .map(|m| m.0)
                    .unwrap_or_default();
                while a.next_element::<IgnoredAny>()?.is_some() {}
                let filter = String::from_utf8(filter)
                    .map_err(|_| de::Error::custom("filter is not UTF-8 text"))?;
                Ok(WireObject {
                    id,
                    meta,
                    filter,
                    vectors,
                    sparses,
                    multi,
                })
            }
        }
        d.deserialize_seq(V)
    }
}

/// `ObjectBatch = [objects]`: a one-element array (a 1-tuple; a newtype would be transparent).
type ObjectBatch = (Vec<WireObject>,);

/// Decodes `POST /collection/{c}/objects` (msgpack `ObjectBatch`) into objects of the index
/// whose params are `p`: the first vector field is the object's vector, the sparse field its
/// sparse part, further `vector` / `multi_vector` fields its `extra` values (in the
/// collection's order). An unknown field or a missing dense value is an error naming the
/// object. Shapes and bounds of the values themselves are the index's to check.
pub fn decode_objects(body: &[u8], p: &IndexParams) -> Result<Vec<FieldsItem>, WireError> {
    let batch: ObjectBatch =
        rmp_serde::from_slice(body).map_err(|e| werr(format!("invalid msgpack body: {e}")))?;
    batch.0.into_iter().map(|o| object_item(o, p)).collect()
}

/// A field's value in a JSON object: a vector, a list of vectors, or `{indices, values}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonFieldValue {
    Dense(Floats),
    Multi(Vec<Floats>),
    Sparse { indices: U32s, values: Floats },
}

/// One object as JSON: `{id, meta?, filter?, fields: {field: value}}`.
#[derive(Deserialize)]
struct JsonObject<'a> {
    id: Option<IdText>,
    #[serde(borrow)]
    meta: Option<&'a RawValue>,
    #[serde(borrow)]
    filter: Option<&'a RawValue>,
    #[serde(default, borrow)]
    fields: BTreeMap<String, &'a RawValue>,
}

/// Decodes objects given as JSON (the npm package's `collection.upsert`, the shape Endee's
/// clients take before they pack it): `[{id, meta?, filter?, fields: {field: value}}]`, a
/// value being a vector, a list of vectors (`multi_vector`) or `{indices, values}` (sparse).
/// The same rules as [`decode_objects`] apply after.
pub fn decode_json_objects(body: &[u8], p: &IndexParams) -> Result<Vec<FieldsItem>, WireError> {
    let objs: Vec<JsonObject<'_>> =
        serde_json::from_slice(body).map_err(|e| werr(format!("Invalid JSON: {e}")))?;
    objs.into_iter()
        .map(|o| {
            let id = o
                .id
                .ok_or_else(|| werr("each object needs an id (string or number)"))?
                .0;
            let mut w = WireObject {
                meta: crate::wire::json_meta(o.meta)?,
                filter: crate::wire::json_filter(&id, o.filter)?,
                vectors: Vec::new(),
                sparses: Vec::new(),
                multi: Vec::new(),
                id,
            };
            for (name, raw) in o.fields {
                match serde_json::from_str::<JsonFieldValue>(raw.get()) {
                    Ok(JsonFieldValue::Dense(v)) => w.vectors.push((name, v)),
                    Ok(JsonFieldValue::Multi(vs)) => w.multi.push((name, ListOrNil(vs))),
                    Ok(JsonFieldValue::Sparse { indices, values }) => {
                        w.sparses.push((name, SparseWire(indices, values)));
                    }
                    Err(_) => {
                        return Err(werr(format!(
                            "object {:?}: field {name:?} must be a vector, a list of vectors or {{indices, values}}",
                            w.id
                        )));
                    }
                }
            }
            object_item(w, p)
        })
        .collect()
}

/// One decoded object as the index whose params are `p` takes it (see [`decode_objects`]).
fn object_item(o: WireObject, p: &IndexParams) -> Result<FieldsItem, WireError> {
    let (vf, sf, extra) = (p.vector_field(), p.sparse_field(), p.extra_fields());
    let slot_of = |f: &str, multi: bool| {
        extra
            .iter()
            .position(|e| e.name == f && e.pooling.is_some() == multi)
    };
    let id = o.id;
    let mut values: Vec<Option<Vec<Vec<f32>>>> = vec![None; extra.len()];
    let mut vector = None;
    for (f, v) in o.vectors {
        if Some(f.as_str()) == vf {
            vector = Some(v.0);
        } else if let Some(i) = slot_of(&f, false) {
            values[i] = Some(vec![v.0]);
        } else {
            return Err(werr(format!(
                "object {id:?}: {f:?} is not a vector field of this collection"
            )));
        }
    }
    for (f, vs) in o.multi {
        if vs.0.is_empty() {
            continue;
        }
        match slot_of(&f, true) {
            Some(i) => values[i] = Some(vs.0.into_iter().map(|v| v.0).collect()),
            None => {
                return Err(werr(format!(
                    "object {id:?}: {f:?} is not a multi_vector field of this collection"
                )));
            }
        }
    }
    let vector = match (vector, vf) {
        (Some(v), _) => v,
        (None, None) => Vec::new(),
        (None, Some(vf)) => {
            return Err(werr(format!(
                "object {id:?}: missing a value for vector field {vf:?}"
            )));
        }
    };
    let extra = values
        .into_iter()
        .zip(extra)
        .map(|(v, e)| {
            v.ok_or_else(|| {
                werr(format!(
                    "object {id:?}: missing a value for field {:?}",
                    e.name
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (mut sparse_indices, mut sparse_values) = (Vec::new(), Vec::new());
    for (f, SparseWire(ix, vals)) in o.sparses {
        if Some(f.as_str()) != sf {
            return Err(werr(format!(
                "object {id:?}: {f:?} is not a sparse field of this collection"
            )));
        }
        (sparse_indices, sparse_values) = (ix.0, vals.0);
    }
    let filter = if o.filter.trim().is_empty() {
        "{}".to_string()
    } else {
        o.filter
    };
    Ok(FieldsItem {
        item: UpsertItem {
            id,
            vector,
            meta: o.meta,
            filter,
            norm: 1.0,
            sparse_indices,
            sparse_values,
        },
        extra,
    })
}

#[derive(Deserialize)]
struct FilterParamsV2 {
    prefilter_threshold: Option<u64>,
    boost_percentage: Option<f64>,
}

#[derive(Deserialize)]
struct SearchBodyV2<'a> {
    fields: Option<Vec<BTreeMap<String, FieldQuery>>>,
    #[serde(borrow)]
    filter: Option<&'a RawValue>,
    filter_params: Option<FilterParamsV2>,
}

#[derive(Deserialize)]
struct FieldQuery {
    query: Option<QueryValue>,
    limit: Option<u64>,
    ef_search: Option<u64>,
}

/// A field's query: a dense vector, a list of vectors (multi_vector), or a sparse object.
enum QueryValue {
    Dense(Vec<f32>),
    Multi(Vec<Vec<f32>>),
    Sparse(Vec<u32>, Vec<f32>),
}

impl<'de> Deserialize<'de> for QueryValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = QueryValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a vector, a list of vectors, or {indices, values}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<QueryValue, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 14));
                let mut multi: Vec<Vec<f32>> = Vec::new();
                while let Some(x) = a.next_element::<NumOrList>()? {
                    match x {
                        NumOrList::Num(x) if multi.is_empty() => v.push(x),
                        NumOrList::List(l) if v.is_empty() => multi.push(l),
                        _ => return Err(de::Error::custom("a query mixes numbers and lists")),
                    }
                }
                Ok(if multi.is_empty() {
                    QueryValue::Dense(v)
                } else {
                    QueryValue::Multi(multi)
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<QueryValue, A::Error> {
                let (mut ix, mut vals) = (None, None);
                while let Some(k) = a.next_key::<String>()? {
                    match k.as_str() {
                        "indices" | "sparse_indices" | "position" => {
                            ix = Some(a.next_value::<U32s>()?.0)
                        }
                        "values" | "sparse_values" => vals = Some(a.next_value::<Floats>()?.0),
                        _ => {
                            a.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(QueryValue::Sparse(
                    ix.unwrap_or_default(),
                    vals.unwrap_or_default(),
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number, or (a multi-vector query) a vector.
enum NumOrList {
    Num(f32),
    List(Vec<f32>),
}

impl<'de> Deserialize<'de> for NumOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NumOrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a list")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumOrList, E> {
                Ok(NumOrList::Num(v as f32))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumOrList, E> {
                Ok(NumOrList::Num(v as f32))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumOrList, E> {
                Ok(NumOrList::Num(v as f32))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<NumOrList, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 14));
                while let Some(x) = a.next_element::<f32>()? {
                    v.push(x);
                }
                Ok(NumOrList::List(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes `POST /collection/{c}/search` into one request per field, in the order given:
/// a vector field's query is a dense search, a sparse field's a sparse-only search; the
/// filter and prefilter threshold apply to every field.
pub fn decode_search(
    body: &[u8],
    p: &IndexParams,
) -> Result<Vec<(String, SearchRequest)>, WireError> {
    let b: SearchBodyV2 =
        serde_json::from_slice(body).map_err(|e| werr(format!("Invalid JSON: {e}")))?;
    let fields = b
        .fields
        .filter(|f| !f.is_empty())
        .ok_or_else(|| werr("search requires at least one field"))?;
    let filter: Option<Filter> = match b.filter {
        None => None,
        Some(raw) => filter_from_json(Some(&small_json(raw, "filter", MAX_FILTER_BYTES)?))?,
    };
    let (threshold, boost) = match b.filter_params {
        Some(f) => (f.prefilter_threshold, f.boost_percentage.unwrap_or(0.0)),
        None => (None, 0.0),
    };
    if !(0.0..=100.0).contains(&boost) {
        return Err(werr("boost_percentage must be between 0 and 100"));
    }
    let mut out = Vec::new();
    for entry in fields {
        for (name, q) in entry {
            let limit = q.limit.unwrap_or(10);
            let ef = q.ef_search.unwrap_or(128);
            if ef == 0 || ef > MAX_EF_SEARCH {
                return Err(werr(format!(
                    "field {name:?}: ef_search must be between 1 and {MAX_EF_SEARCH}"
                )));
            }
            let query = q
                .query
                .ok_or_else(|| werr(format!("field {name:?}: missing query")))?;
            let mut req = SearchRequest::new(Vec::new(), usize::try_from(limit).unwrap_or(0));
            req.ef = ef as usize;
            let further = p.extra_fields().iter().position(|e| e.name == name);
            let is_multi = further.is_some_and(|i| p.extra_fields()[i].pooling.is_some());
            match query {
                QueryValue::Dense(v) if Some(name.as_str()) == p.vector_field() => req.vector = v,
                QueryValue::Dense(v) if further.is_some() && !is_multi => {
                    req.field = further.map_or(0, |i| i + 1);
                    req.vector = v;
                }
                QueryValue::Multi(vs) if is_multi => {
                    req.field = further.map_or(0, |i| i + 1);
                    req.multi = vs;
                }
                QueryValue::Sparse(ix, vals) if Some(name.as_str()) == p.sparse_field() => {
                    if ix.len() != vals.len() {
                        return Err(werr(format!(
                            "field {name:?}: indices and values must have the same length"
                        )));
                    }
                    req.sparse_indices = ix;
                    req.sparse_values = vals;
                }
                _ => {
                    return Err(werr(format!(
                        "field {name:?} is not a field of this collection, or the query does not fit its type"
                    )));
                }
            }
            // Endee's filter boost: a filtered search widens its candidate pool by this much.
            if filter.is_some() && boost > 0.0 {
                req.ef = ((req.ef as f64 * (1.0 + boost / 100.0)).ceil() as usize)
                    .min(crate::index::MAX_EF);
            }
            req.filter = filter.clone();
            req.prefilter_threshold = threshold;
            out.push((name, req));
        }
    }
    Ok(out)
}

/// `ObjectMeta = [id, meta bytes, filter text]`.
#[derive(Serialize)]
struct ObjectMeta<'a>(&'a str, #[serde(with = "serde_bytes")] &'a [u8], &'a str);

/// Encodes a search answer as the v2 client decodes it: `[objects, results]`, objects a map of
/// small integer ids (numbered per answer) to `[id, meta, filter]`, results a map of field name
/// to `[[int id, similarity], ...]`.
pub fn encode_search(per_field: &[(String, Vec<SearchHit>)]) -> Vec<u8> {
    let mut numbers: BTreeMap<&str, u32> = BTreeMap::new();
    let mut objects: BTreeMap<u32, ObjectMeta<'_>> = BTreeMap::new();
    let mut results: BTreeMap<&str, Vec<(u32, f32)>> = BTreeMap::new();
    for (field, hits) in per_field {
        let list = results.entry(field.as_str()).or_default();
        for h in hits {
            let next = numbers.len() as u32;
            let n = *numbers.entry(h.id.as_str()).or_insert(next);
            objects
                .entry(n)
                .or_insert_with(|| ObjectMeta(&h.id, &h.meta, &h.filter));
            list.push((n, h.similarity));
        }
    }
    rmp_serde::to_vec(&(objects, results)).unwrap_or_default()
}

/// One stored object as `objects/query` answers it.
#[derive(Serialize)]
struct ObjectOut<'a>(
    &'a str,
    #[serde(with = "serde_bytes")] &'a [u8],
    &'a str,
    BTreeMap<&'a str, &'a [f32]>,
    BTreeMap<&'a str, (&'a [u32], &'a [f32])>,
    BTreeMap<&'a str, Vec<Vec<f32>>>,
);

/// Encodes `objects/query`'s answer: `ObjectBatch = [[id, meta, filter, {vector field: v},
/// {sparse field: [indices, values]}, {}], ...]`.
pub fn encode_objects(p: &IndexParams, recs: &[VectorRecord]) -> Vec<u8> {
    let objs: Vec<ObjectOut<'_>> = recs
        .iter()
        .map(|r| {
            let mut vectors = BTreeMap::new();
            if let Some(vf) = p.vector_field() {
                vectors.insert(vf, r.vector.as_slice());
            }
            let mut multi = BTreeMap::new();
            for (f, vs) in p.extra_fields().iter().zip(&r.extra) {
                match (f.pooling, vs.first()) {
                    (None, Some(v)) => {
                        vectors.insert(f.name.as_str(), v.as_slice());
                    }
                    (Some(_), _) => {
                        multi.insert(f.name.as_str(), vs.clone());
                    }
                    (None, None) => {}
                }
            }
            let mut sparses = BTreeMap::new();
            if let Some(s) = p.sparse_field() {
                sparses.insert(s, (r.sparse_indices.as_slice(), r.sparse_values.as_slice()));
            }
            ObjectOut(&r.id, &r.meta, &r.filter, vectors, sparses, multi)
        })
        .collect();
    rmp_serde::to_vec(&(objs,)).unwrap_or_default()
}

/// Decodes `objects/query {ids: [...]}`.
pub fn decode_ids(body: &[u8]) -> Result<Vec<String>, WireError> {
    #[derive(Deserialize)]
    struct Body {
        ids: Option<Vec<IdText>>,
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| werr(format!("Invalid JSON: {e}")))?;
    let ids: Vec<String> = b
        .ids
        .ok_or_else(|| werr("Missing required parameter 'ids'"))?
        .into_iter()
        .map(|i| i.0)
        .collect();
    if ids.is_empty() || ids.len() > 10_000 {
        return Err(werr("ids must hold 1 to 10,000 ids"));
    }
    Ok(ids)
}

/// Decodes `POST /collection/{c}/rebuild {fields: [{field, M, ef_con}, …]}` for collection
/// `p`: the dense fields to rebuild, in order (0: the first, `i + 1`: further field `i`), each
/// with its new `M` / `ef_con`. A sparse field in the list is skipped, as Endee does; a field
/// named twice, or not a field of the collection, is refused.
pub fn decode_rebuild(body: &[u8], p: &IndexParams) -> Result<Vec<FieldRebuild>, WireError> {
    #[derive(Deserialize)]
    struct Spec {
        field: Option<String>,
        #[serde(rename = "M", alias = "m")]
        m: Option<u64>,
        #[serde(alias = "ef_construct")]
        ef_con: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Body {
        fields: Option<Vec<Spec>>,
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| werr(format!("Invalid JSON: {e}")))?;
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let mut out: Vec<FieldRebuild> = Vec::new();
    for s in b.fields.unwrap_or_default() {
        let f = s.field.unwrap_or_default();
        if let Some(field) = p.dense_field_number(&f) {
            if out.iter().any(|r| r.field == field) {
                return Err(werr(format!("field {f:?} is named twice")));
            }
            out.push(FieldRebuild {
                field,
                m: s.m.map(size),
                ef_con: s.ef_con.map(size),
            });
        } else if Some(f.as_str()) != p.sparse_field() {
            return Err(werr(format!("{f:?} is not a field of this collection")));
        }
    }
    if out.is_empty() {
        return Err(werr(
            "rebuild needs at least one of the collection's dense fields in 'fields'",
        ));
    }
    Ok(out)
}

/// Runs every v2 decoder over one input (the fuzz targets call it): none may panic.
#[doc(hidden)]
pub fn decode_all(body: &[u8], p: &IndexParams) {
    let _ = decode_create_collection(body);
    let _ = decode_objects(body, p);
    let _ = decode_json_objects(body, p);
    let _ = decode_search(body, p);
    let _ = decode_ids(body);
    let _ = decode_rebuild(body, p);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> IndexParams {
        decode_create_collection(
            br#"{"name":"docs","fields":[
                {"name":"emb","type":"vector","params":{"dimension":4,"space_type":"l2","m":20,"ef_construct":90}},
                {"name":"kw","type":"sparse","sparse_model":"endee_bm25"}]}"#,
        )
        .map(|(_, p)| p)
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(body: &str) -> String {
        decode_create_collection(body.as_bytes())
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
    }

    #[test]
    fn a_collection_is_an_index_with_named_fields() {
        let p = hybrid();
        assert_eq!((p.dim, p.m, p.ef_construction), (4, 20, 90));
        assert_eq!(
            (p.vector_field(), p.sparse_field()),
            (Some("emb"), Some("kw"))
        );
        assert_eq!(p.scoring(), SparseModel::Bm25);
        let v1 = IndexParams::new(4, SpaceType::L2);
        assert_eq!(
            (v1.vector_field(), v1.sparse_field()),
            (Some("dense"), None)
        );
        let j = collection_json("docs", &p, 7, 3);
        assert_eq!(j["fields"][1]["sparse_model"], "endee_bm25");
        assert_eq!(j["fields"][0]["params"]["M"], 20);
    }

    #[test]
    fn malformed_collections_are_refused_with_their_reason() {
        let v = r#"{"name":"a","type":"vector","params":{"dimension":4}}"#;
        assert!(err(&format!(r#"{{"name":"x","fields":[{v},{v}]}}"#)).contains("duplicate"));
        let m = r#"{"name":"m","type":"multi_vector","params":{"dimension":4,"pooling":"mean"}}"#;
        assert!(
            decode_create_collection(format!(r#"{{"name":"x","fields":[{m}]}}"#).as_bytes())
                .is_ok()
        );
        let nopool = r#"{"name":"m","type":"multi_vector","params":{"dimension":4}}"#;
        assert!(err(&format!(r#"{{"name":"x","fields":[{v},{nopool}]}}"#)).contains("pooling"));
        let int8 = r#"{"name":"b","type":"vector","params":{"dimension":4,"precision":"int8e"}}"#;
        let (_, p) =
            decode_create_collection(format!(r#"{{"name":"x","fields":[{v},{int8}]}}"#).as_bytes())
                .unwrap();
        assert_eq!(p.extra_fields()[0].precision, Precision::Int8);
        let bin = r#"{"name":"b","type":"vector","params":{"dimension":4,"precision":"binary"}}"#;
        assert!(err(&format!(r#"{{"name":"x","fields":[{v},{bin}]}}"#)).contains("precision"));
        let mbin = r#"{"name":"m","type":"multi_vector","params":{"dimension":4,"pooling":"max","precision":"binary"}}"#;
        assert!(
            decode_create_collection(format!(r#"{{"name":"x","fields":[{v},{mbin}]}}"#).as_bytes())
                .is_ok()
        );
        let sparse = r#"{"name":"s","type":"sparse","sparse_model":"default"}"#;
        assert!(
            err(&format!(r#"{{"name":"x","fields":[{sparse},{sparse}]}}"#)).contains("duplicate")
        );
        let sparse2 = r#"{"name":"t","type":"sparse","sparse_model":"default"}"#;
        assert!(
            err(&format!(r#"{{"name":"x","fields":[{sparse},{sparse2}]}}"#))
                .contains("more than one sparse")
        );
        assert!(
            err(r#"{"name":"x","fields":[{"name":"a","type":"vector","params":{}}]}"#)
                .contains("dimension")
        );
        assert!(err(r#"{"name":"__x","fields":[]}"#).contains("__"));
        assert!(
            err(&format!(
                r#"{{"name":"{}","fields":[{v}]}}"#,
                "n".repeat(49)
            ))
            .contains("too long")
        );
        assert!(
            err(r#"{"name":"x","fields":[{"name":"s","type":"sparse","sparse_model":"None"}]}"#)
                .contains("sparse_model")
        );
    }

    #[test]
    fn objects_round_trip_and_map_onto_the_fields() {
        let p = hybrid();
        let rec = VectorRecord {
            id: "o1".into(),
            meta: vec![1, 2, 3],
            filter: r#"{"g":1}"#.into(),
            norm: 1.0,
            vector: vec![0.5, 0.5, 0.5, 0.5],
            sparse_indices: vec![3, 9],
            sparse_values: vec![1.0, 0.25],
            extra: vec![],
        };
        let items = decode_objects(&encode_objects(&p, std::slice::from_ref(&rec)), &p)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(items.len(), 1);
        let it = &items[0].item;
        assert_eq!(
            (it.id.as_str(), &it.meta, it.filter.as_str()),
            ("o1", &rec.meta, rec.filter.as_str())
        );
        assert_eq!(
            (&it.vector, &it.sparse_indices, &it.sparse_values),
            (&rec.vector, &rec.sparse_indices, &rec.sparse_values)
        );
        // A field the collection does not have, or no vector, is refused naming the object.
        let other = IndexParams::new(4, SpaceType::L2);
        let e = decode_objects(&encode_objects(&p, &[rec]), &other)
            .err()
            .map(|e| e.0);
        assert!(e.is_some_and(|e| e.contains("o1") && e.contains("emb")));
    }

    #[test]
    fn a_search_is_one_request_per_field_and_answers_numbered_objects() {
        let p = hybrid();
        let reqs = decode_search(
            br#"{"fields":[{"emb":{"query":[1,2,3,4],"limit":3,"ef_search":50}},
                           {"kw":{"query":{"indices":[3],"values":[1.0]},"limit":2}}],
                 "filter":[{"g":{"$eq":1}}],"filter_params":{"prefilter_threshold":5000}}"#,
            &p,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reqs.len(), 2);
        assert_eq!(
            (reqs[0].1.k, reqs[0].1.ef, reqs[0].1.vector.len()),
            (3, 50, 4)
        );
        assert!(reqs[1].1.vector.is_empty() && reqs[1].1.sparse_indices == vec![3]);
        assert!(
            reqs.iter()
                .all(|(_, r)| r.filter.is_some() && r.prefilter_threshold == Some(5000))
        );
        let boosted = decode_search(
            br#"{"fields":[{"emb":{"query":[1,2,3,4],"ef_search":100}}],"filter":[{"g":{"$eq":1}}],
                 "filter_params":{"prefilter_threshold":1000,"boost_percentage":50}}"#,
            &p,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            boosted[0].1.ef, 150,
            "a filtered search widens by the boost"
        );
        for bad in [
            r#"{"fields":[{"nope":{"query":[1,2,3,4]}}]}"#,
            r#"{"fields":[{"emb":{"query":[[1,2],[3,4]]}}]}"#,
            r#"{"fields":[{"emb":{"query":[1,2,3,4],"ef_search":5000}}]}"#,
            r#"{"fields":[]}"#,
            r#"{"fields":[{"emb":{"query":[1,2,3,4]}}],"filter_params":{"boost_percentage":101}}"#,
        ] {
            assert!(decode_search(bad.as_bytes(), &p).is_err(), "{bad}");
        }
        let hit = |id: &str, s: f32| SearchHit {
            id: id.into(),
            similarity: s,
            meta: vec![],
            filter: "{}".into(),
            norm: 1.0,
            vector: vec![],
        };
        let bytes = encode_search(&[
            ("emb".into(), vec![hit("a", 0.9), hit("b", 0.5)]),
            ("kw".into(), vec![hit("b", 2.0)]),
        ]);
        type Answer = (
            BTreeMap<u32, (String, serde_bytes::ByteBuf, String)>,
            BTreeMap<String, Vec<(u32, f32)>>,
        );
        let (objects, results): Answer =
            rmp_serde::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(objects.len(), 2, "b is listed once");
        let b = results["kw"][0].0;
        assert_eq!(objects[&b].0, "b");
        assert_eq!(results["emb"][1].0, b);
    }
}
