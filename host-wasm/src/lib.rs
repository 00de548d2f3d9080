//! # cairn-wasm
//!
//! CairnDB for the browser and Node: [`CairnDb`] wraps `cairn-core`'s single-threaded
//! [`Database`] and supplies what a host supplies — storage, time and entropy. Storage is either
//! in memory or a JS object with synchronous file methods (the OPFS pool in the Worker, or
//! `node:fs`); see `web/src/` for those.

mod js_storage;

use cairn_core::{Database, DatabaseError, Fault, IndexParams, MemStorage, Storage, wire, wire_v2};
use js_storage::JsStorage;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io;
use wasm_bindgen::prelude::*;

/// Memory or JS-backed storage.
enum AnyStorage {
    Mem(MemStorage),
    Js(JsStorage),
}

macro_rules! fwd {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStorage::Mem($s) => $e,
            AnyStorage::Js($s) => $e,
        }
    };
}

impl Storage for AnyStorage {
    fn size(&mut self, p: &str) -> io::Result<Option<u64>> {
        fwd!(self, s => s.size(p))
    }
    fn read_at(&mut self, p: &str, o: u64, l: usize) -> io::Result<Vec<u8>> {
        fwd!(self, s => s.read_at(p, o, l))
    }
    fn append(&mut self, p: &str, b: &[u8]) -> io::Result<()> {
        fwd!(self, s => s.append(p, b))
    }
    fn create(&mut self, p: &str) -> io::Result<()> {
        fwd!(self, s => s.create(p))
    }
    fn sync(&mut self, p: &str) -> io::Result<()> {
        fwd!(self, s => s.sync(p))
    }
    fn truncate(&mut self, p: &str, l: u64) -> io::Result<()> {
        fwd!(self, s => s.truncate(p, l))
    }
    fn rename(&mut self, f: &str, t: &str) -> io::Result<()> {
        fwd!(self, s => s.rename(f, t))
    }
    fn remove(&mut self, p: &str) -> io::Result<()> {
        fwd!(self, s => s.remove(p))
    }
    fn list(&mut self, p: &str) -> io::Result<Vec<String>> {
        fwd!(self, s => s.list(p))
    }
}

fn now() -> u64 {
    js_sys::Date::now() as u64
}

/// Microseconds on a clock that only moves forward (`performance`), for the write pause.
fn now_us() -> u64 {
    let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
    let t = perf.and_then(|p| {
        let origin = js_sys::Reflect::get(&p, &"timeOrigin".into())
            .ok()?
            .as_f64()?;
        let f: js_sys::Function = js_sys::Reflect::get(&p, &"now".into())
            .ok()?
            .dyn_into()
            .ok()?;
        Some(origin + f.call0(&p).ok()?.as_f64()?)
    });
    (t.unwrap_or_else(js_sys::Date::now) * 1000.0) as u64
}

/// A JS value as JSON text, typed arrays (`Float32Array` embeddings) as plain arrays.
fn json_text(v: &JsValue, what: &str) -> Result<String, JsValue> {
    let typed_as_array = Closure::<dyn Fn(JsValue, JsValue) -> JsValue>::new(|_k, x: JsValue| {
        if js_sys::ArrayBuffer::is_view(&x) {
            js_sys::Array::from(&x).into()
        } else {
            x
        }
    });
    js_sys::JSON::stringify_with_replacer(v, typed_as_array.as_ref())
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| err(400, format!("invalid {what}: not JSON-serialisable")))
}

fn entropy() -> [u8; 6] {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    b
}

/// A JS `Error` carrying `status` (400/404/409/500), like the server's HTTP codes.
/// A search request from the typed fast path's arguments (`ef` 0: the default; the index
/// checks `k`, `ef` and the vector as for any search).
fn typed_request(
    vector: Vec<f32>,
    k: usize,
    ef: usize,
    filter: &str,
) -> Result<cairn_core::SearchRequest, JsValue> {
    let mut req = cairn_core::SearchRequest::new(vector, k);
    if ef > 0 {
        req.ef = ef;
    }
    if !filter.is_empty() {
        req.filter = Some(cairn_core::Filter::parse_str(filter).map_err(|e| err(400, e))?);
    }
    Ok(req)
}

/// Hits gathered for the typed fast path: ids as strings, similarities as one `Float32Array`.
#[derive(Default)]
struct TypedHits {
    ids: Vec<String>,
    similarities: Vec<f32>,
}

impl TypedHits {
    fn push(&mut self, hits: Vec<cairn_core::SearchHit>) {
        for h in hits {
            self.similarities.push(h.similarity);
            self.ids.push(h.id);
        }
    }

    /// `{ids, similarities[, counts]}` as JS values (one copy of the floats out of wasm memory).
    fn into_js(self, counts: Option<&[u32]>) -> JsValue {
        let o = js_sys::Object::new();
        let ids: js_sys::Array = self.ids.iter().map(|s| JsValue::from_str(s)).collect();
        let _ = js_sys::Reflect::set(&o, &"ids".into(), &ids);
        let sims = js_sys::Float32Array::from(&self.similarities[..]);
        let _ = js_sys::Reflect::set(&o, &"similarities".into(), &sims);
        if let Some(c) = counts {
            let _ = js_sys::Reflect::set(&o, &"counts".into(), &js_sys::Uint32Array::from(c));
        }
        o.into()
    }
}

fn err(status: u16, msg: impl std::fmt::Display) -> JsValue {
    let e = js_sys::Error::new(&msg.to_string());
    let _ = js_sys::Reflect::set(&e, &"status".into(), &JsValue::from(status));
    e.into()
}

fn db_err(e: DatabaseError) -> JsValue {
    // The statuses the native server answers for the same kinds.
    let status = match e.fault() {
        Fault::BadInput => 400,
        Fault::NotFound => 404,
        Fault::Conflict => 409,
        Fault::Unavailable => 503,
        Fault::Internal => 500,
    };
    err(status, e)
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| err(500, e))
}

fn from_js<T: for<'de> Deserialize<'de>>(v: JsValue, what: &str) -> Result<T, JsValue> {
    serde_wasm_bindgen::from_value(v).map_err(|e| err(400, format!("invalid {what}: {e}")))
}

/// The database handle JS holds. Every method is synchronous; run it in a Worker in browsers.
#[wasm_bindgen]
pub struct CairnDb {
    db: Database<AnyStorage>,
}

#[wasm_bindgen]
impl CairnDb {
    /// A database in memory (lost when the page or process ends).
    #[wasm_bindgen(js_name = openMemory)]
    pub fn open_memory() -> Result<CairnDb, JsValue> {
        Database::open(AnyStorage::Mem(MemStorage::new()), now(), "wasm")
            .map(|db| CairnDb { db })
            .map_err(db_err)
    }

    /// A database over a JS storage object with synchronous methods `size`, `readAt`, `append`,
    /// `create`, `sync`, `truncate`, `rename`, `remove`, `list` (see `web/src/*-storage.js`).
    #[wasm_bindgen(js_name = openWith)]
    pub fn open_with(storage: JsValue) -> Result<CairnDb, JsValue> {
        Database::open(AnyStorage::Js(JsStorage::new(storage)), now(), "wasm")
            .map(|db| CairnDb { db })
            .map_err(db_err)
    }

    /// Creates an index: `{dim, space_type?, M?, ef_con?, precision?, sparse_model?}`
    /// (`sparse_model`: `default` or `endee_bm25` for hybrid search).
    #[wasm_bindgen(js_name = createIndex)]
    pub fn create_index(&mut self, name: &str, opts: JsValue) -> Result<(), JsValue> {
        // The server's own create parser, with this API's defaults (cosine) and the name given
        // apart: the browser accepts exactly what the server does.
        let body = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&body, &"space_type".into(), &"cosine".into());
        let body = js_sys::Object::assign(&body, &js_sys::Object::from(opts));
        let _ = js_sys::Reflect::set(&body, &"index_name".into(), &name.into());
        let text = json_text(&body, "index options")?;
        let (name, p) = wire::decode_create_index(text.as_bytes()).map_err(|e| err(400, e))?;
        self.db.create_index(&name, p, now()).map_err(db_err)
    }

    /// Creates a collection (Endee's v2 model): `fields` is `[{name, type: "vector", params:
    /// {dimension, space_type?, precision?, M?, ef_con?}}, {name, type: "sparse",
    /// sparse_model}]`, decoded by the server's own parser (`cairn_core::wire_v2`): one vector
    /// field and at most one sparse field. Returns the collection as `describeCollection`.
    #[wasm_bindgen(js_name = createCollection)]
    pub fn create_collection(&mut self, name: &str, fields: JsValue) -> Result<JsValue, JsValue> {
        let body = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&body, &"name".into(), &name.into());
        let _ = js_sys::Reflect::set(&body, &"fields".into(), &fields);
        let text = json_text(&body, "collection")?;
        let (name, p) =
            wire_v2::decode_create_collection(text.as_bytes()).map_err(|e| err(400, e))?;
        self.db.create_index(&name, p, now()).map_err(db_err)?;
        self.describe_collection(&name)
    }

    /// Inserts or replaces a collection's objects, `[{id, meta?, filter?, fields: {field:
    /// value}}]` (a vector, a list of vectors for `multi_vector`, `{indices, values}` for
    /// sparse), decoded by the server's own rules (`cairn_core::wire_v2`); returns how many.
    #[wasm_bindgen(js_name = upsertObjects)]
    pub fn upsert_objects(&mut self, name: &str, objects: JsValue) -> Result<usize, JsValue> {
        let body = json_text(&objects, "objects")?;
        let p = self.db.index(name).map_err(db_err)?.params().clone();
        let items = wire_v2::decode_json_objects(body.as_bytes(), &p).map_err(|e| err(400, e))?;
        self.db.write_fields(name, items).map_err(db_err)
    }

    /// Searches a collection, one ranked list per field: the body of Endee's v2 search
    /// (`{fields: [{field: {query, limit?, ef_search?}}], filter?, filter_params?}`) →
    /// `{results: {field: [{id, similarity, meta, filter}]}}`.
    #[wasm_bindgen(js_name = searchCollection)]
    pub fn search_collection(&mut self, name: &str, body: JsValue) -> Result<JsValue, JsValue> {
        let body = json_text(&body, "search")?;
        let p = self.db.index(name).map_err(db_err)?.params().clone();
        let reqs = wire_v2::decode_search(body.as_bytes(), &p).map_err(|e| err(400, e))?;
        let mut results = serde_json::Map::new();
        for (field, req) in reqs {
            let hits = self.db.search(name, &req).map_err(db_err)?;
            let list: Vec<Value> = hits
                .into_iter()
                .map(|h| json!({"id": h.id, "similarity": h.similarity, "meta": wire::meta_json(&h.meta), "filter": wire::filter_json(&h.filter)}))
                .collect();
            results.insert(field, Value::Array(list));
        }
        to_js(&json!({ "results": results }))
    }

    /// The stored objects among `ids` (missing ones left out), each `{id, meta, filter,
    /// vectors: {field: v}, sparses: {field: {indices, values}}, multi_vectors: {field: [v]}}`.
    #[wasm_bindgen(js_name = getObjects)]
    pub fn get_objects(&mut self, name: &str, ids: JsValue) -> Result<JsValue, JsValue> {
        let ids: Vec<String> = from_js(ids, "ids")?;
        let p = self.db.index(name).map_err(db_err)?.params().clone();
        let mut out = Vec::new();
        for id in ids {
            let r = match self.db.get(name, &id) {
                Ok(r) => r,
                Err(e) if e.fault() == Fault::NotFound => continue,
                Err(e) => return Err(db_err(e)),
            };
            let (mut vectors, mut multi) = (serde_json::Map::new(), serde_json::Map::new());
            if let Some(f) = p.vector_field() {
                vectors.insert(f.into(), json!(r.vector));
            }
            for (f, vs) in p.extra_fields().iter().zip(&r.extra) {
                match (f.pooling, vs.first()) {
                    (None, Some(v)) => vectors.insert(f.name.clone(), json!(v)),
                    _ => multi.insert(f.name.clone(), json!(vs)),
                };
            }
            let mut sparses = serde_json::Map::new();
            if let Some(f) = p.sparse_field() {
                sparses.insert(
                    f.into(),
                    json!({"indices": r.sparse_indices, "values": r.sparse_values}),
                );
            }
            out.push(json!({"id": r.id, "meta": wire::meta_json(&r.meta), "filter": wire::filter_json(&r.filter),
                "vectors": vectors, "sparses": sparses, "multi_vectors": multi}));
        }
        to_js(&out)
    }

    /// Starts rebuilding one of a collection's dense fields: the body of Endee's v2 rebuild
    /// (`{fields: [{field, M?, ef_con?}]}`); returns the running job (see `startRebuild`).
    #[wasm_bindgen(js_name = startCollectionRebuild)]
    pub fn start_collection_rebuild(
        &mut self,
        name: &str,
        body: JsValue,
    ) -> Result<JsValue, JsValue> {
        let body = json_text(&body, "rebuild")?;
        let p = self.db.index(name).map_err(db_err)?.params().clone();
        let fields = wire_v2::decode_rebuild(body.as_bytes(), &p).map_err(|e| err(400, e))?;
        let job = self
            .db
            .start_rebuild_fields(name, &fields, now(), entropy())
            .map_err(db_err)?;
        to_js(&job)
    }

    /// A collection (any index) as Endee's v2 shows it: `{name, fields, count, ...}`.
    #[wasm_bindgen(js_name = describeCollection)]
    pub fn describe_collection(&self, name: &str) -> Result<JsValue, JsValue> {
        let ix = self.db.index(name).map_err(db_err)?;
        to_js(&wire_v2::collection_json(name, ix.params(), 0, ix.len()))
    }

    /// What opening did that someone should hear about: a jobs file kept aside, an index that
    /// did not load and why (it answers 503 until deleted), a create that never committed.
    #[wasm_bindgen(js_name = recoveryNotes)]
    pub fn recovery_notes(&self) -> Result<JsValue, JsValue> {
        to_js(&self.db.recovery_notes())
    }

    /// Every index with its parameters and count.
    #[wasm_bindgen(js_name = listIndexes)]
    pub fn list_indexes(&self) -> Result<JsValue, JsValue> {
        let v: Vec<Value> = self
            .db
            .list_indexes()
            .into_iter()
            .map(|(n, p, created, count)| describe_json(&n, &p, created, count))
            .collect();
        to_js(&v)
    }

    /// One index's parameters and count.
    pub fn describe(&self, name: &str) -> Result<JsValue, JsValue> {
        let ix = self.db.index(name).map_err(db_err)?;
        to_js(&describe_json(name, ix.params(), 0, ix.len()))
    }

    /// Deletes an index.
    #[wasm_bindgen(js_name = deleteIndex)]
    pub fn delete_index(&mut self, name: &str) -> Result<(), JsValue> {
        self.db.delete_index(name).map_err(db_err)
    }

    /// Inserts or replaces `[{id, vector, meta?, filter?, norm?, sparse_indices?,
    /// sparse_values?}]` (or one such object); returns how many. Decoded by the server's own
    /// JSON parser (`cairn_core::wire`), so the browser accepts exactly what the server does.
    pub fn upsert(&mut self, name: &str, items: JsValue) -> Result<usize, JsValue> {
        let body = json_text(&items, "vectors")?;
        let items = wire::decode_json_insert(body.as_bytes()).map_err(|e| err(400, e))?;
        self.db.upsert(name, items).map_err(db_err)
    }

    /// One vector: `{id, vector, meta, filter, norm}`.
    pub fn get(&mut self, name: &str, id: &str) -> Result<JsValue, JsValue> {
        let r = self.db.get(name, id).map_err(db_err)?;
        to_js(
            &json!({"id": r.id, "vector": r.vector, "meta": wire::meta_json(&r.meta), "filter": wire::filter_json(&r.filter), "norm": r.norm,
                    "sparse_indices": r.sparse_indices, "sparse_values": r.sparse_values}),
        )
    }

    /// Deletes ids; returns how many existed.
    pub fn delete(&mut self, name: &str, ids: JsValue) -> Result<usize, JsValue> {
        let ids: Vec<String> = from_js(ids, "ids")?;
        self.db.delete(name, ids).map_err(db_err)
    }

    /// Deletes what a filter matches; returns how many. An empty filter is refused: a
    /// delete never matches everything.
    #[wasm_bindgen(js_name = deleteByFilter)]
    pub fn delete_by_filter(&mut self, name: &str, filter: JsValue) -> Result<usize, JsValue> {
        let body = format!("{{\"filter\":{}}}", json_text(&filter, "filter")?);
        let f = wire::decode_delete_by_filter(body.as_bytes()).map_err(|e| err(400, e))?;
        self.db.delete_by_filter(name, &f).map_err(db_err)
    }

    /// Top-k search: `{vector, k?, ef?, filter?, include_vectors?}` → `[{id, similarity, meta, filter, vector?}]`.
    pub fn search(&mut self, name: &str, query: JsValue) -> Result<JsValue, JsValue> {
        // `k` defaults to 10 here (the server's clients always send it).
        let with_k = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&with_k, &"k".into(), &JsValue::from(10));
        let query = js_sys::Object::assign(&with_k, &js_sys::Object::from(query));
        let body = json_text(&query, "query")?;
        let req = wire::decode_search(body.as_bytes()).map_err(|e| err(400, e))?;
        let hits = self.db.search(name, &req).map_err(db_err)?;
        let v: Vec<Value> = hits
            .into_iter()
            .map(|h| {
                let mut o = json!({"id": h.id, "similarity": h.similarity, "meta": wire::meta_json(&h.meta), "filter": wire::filter_json(&h.filter), "norm": h.norm});
                if req.include_vectors {
                    o["vector"] = json!(h.vector);
                }
                o
            })
            .collect();
        to_js(&v)
    }

    /// Searches with a typed-array query and no JSON on the way in or out: the fast path for
    /// apps that send many queries. `filter` is Endee's filter JSON text (empty: none).
    /// Returns `{ids: string[], similarities: Float32Array}`, best first.
    #[wasm_bindgen(js_name = searchVector)]
    pub fn search_vector(
        &mut self,
        name: &str,
        vector: &[f32],
        k: usize,
        ef: usize,
        filter: &str,
    ) -> Result<JsValue, JsValue> {
        let mut out = TypedHits::default();
        let req = typed_request(vector.to_vec(), k, ef, filter)?;
        out.push(self.db.search(name, &req).map_err(db_err)?);
        Ok(out.into_js(None))
    }

    /// [`CairnDb::search_vector`] for `n` queries at once, packed one after another in
    /// `queries` (`n × dim` values): one call across the JS↔wasm boundary for the batch.
    /// Returns `{ids: string[], similarities: Float32Array, counts: Uint32Array}`: query `i`'s
    /// hits are the next `counts[i]` entries (fewer than `k` when fewer match).
    #[wasm_bindgen(js_name = searchMany)]
    pub fn search_many(
        &mut self,
        name: &str,
        queries: &[f32],
        k: usize,
        ef: usize,
        filter: &str,
    ) -> Result<JsValue, JsValue> {
        let dim = self.db.index(name).map_err(db_err)?.params().dim;
        if dim == 0 || !queries.len().is_multiple_of(dim) {
            return Err(err(
                400,
                format!(
                    "queries hold {} values: not a whole number of {dim}-d vectors",
                    queries.len()
                ),
            ));
        }
        let mut out = TypedHits::default();
        let mut counts = Vec::with_capacity(queries.len() / dim);
        for q in queries.chunks_exact(dim) {
            let req = typed_request(q.to_vec(), k, ef, filter)?;
            let hits = self.db.search(name, &req).map_err(db_err)?;
            counts.push(hits.len() as u32);
            out.push(hits);
        }
        Ok(out.into_js(Some(&counts)))
    }

    /// Starts a backup of `index` into archive `name` and returns the running job at once.
    /// Every rule is checked now and the cut recorded now (writes pause for microseconds);
    /// [`CairnDb::step`] carries the job out between requests, so writes, searches and
    /// `cancel` go on meanwhile.
    #[wasm_bindgen(js_name = startBackup)]
    pub fn start_backup(&mut self, index: &str, name: &str) -> Result<JsValue, JsValue> {
        let job = self
            .db
            .start_backup(index, name, now(), now_us(), entropy())
            .map_err(db_err)?;
        to_js(&job)
    }

    /// Starts restoring archive `backup` into a new index `target`; returns the running job.
    #[wasm_bindgen(js_name = startRestore)]
    pub fn start_restore(&mut self, backup: &str, target: &str) -> Result<JsValue, JsValue> {
        let job = self
            .db
            .start_restore(backup, target, now(), entropy())
            .map_err(db_err)?;
        to_js(&job)
    }

    /// Starts rebuilding `index`'s graph with `m` / `ef_con` (absent: keep the current value)
    /// and returns the running job at once; [`CairnDb::step`] builds the new graph a batch at
    /// a time while searches and writes go on with the old one.
    #[wasm_bindgen(js_name = startRebuild)]
    pub fn start_rebuild(
        &mut self,
        index: &str,
        m: Option<u32>,
        ef_con: Option<u32>,
    ) -> Result<JsValue, JsValue> {
        let job = self
            .db
            .start_rebuild(
                index,
                m.map(|m| m as usize),
                ef_con.map(|e| e as usize),
                now(),
                entropy(),
            )
            .map_err(db_err)?;
        to_js(&job)
    }

    /// The newest rebuild job of `index`, or `null` if it was never rebuilt.
    #[wasm_bindgen(js_name = rebuildStatus)]
    pub fn rebuild_status(&self, index: &str) -> Result<JsValue, JsValue> {
        to_js(&self.db.rebuild_status(index).map_err(db_err)?)
    }

    /// Carries background jobs up to `steps` steps forward (a step is one storage call or one
    /// turn of bookkeeping). Returns `{running, waitMs}`: jobs still running, and when every
    /// one of them is paced, milliseconds until the next step is due (`null`: step again now).
    pub fn step(&mut self, steps: usize) -> Result<JsValue, JsValue> {
        let t = now();
        let (running, wait) = self.db.step(t, steps);
        to_js(&json!({"running": running, "waitMs": wait.map(|w| w.saturating_sub(t))}))
    }

    /// Paces backups to `mib_per_s` MiB a second of reads (0 or absent: as fast as storage goes).
    #[wasm_bindgen(js_name = setBackupRate)]
    pub fn set_backup_rate(&mut self, mib_per_s: Option<f64>) {
        let rate = mib_per_s
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| (r * 1_048_576.0).max(1.0) as u64);
        self.db.set_backup_rate(rate);
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Result<JsValue, JsValue> {
        to_js(&self.db.jobs())
    }

    /// One job.
    pub fn job(&self, id: &str) -> Result<JsValue, JsValue> {
        to_js(&self.db.job(id).map_err(db_err)?)
    }

    /// Cancels a queued or running job. A running one answers *cancelling* and ends
    /// *cancelled* at its next step, its partial files removed.
    pub fn cancel(&mut self, id: &str) -> Result<JsValue, JsValue> {
        to_js(&self.db.cancel(id, now()).map_err(db_err)?)
    }

    /// Archive names.
    pub fn backups(&self) -> Result<JsValue, JsValue> {
        to_js(&self.db.backups())
    }

    /// An archive's bytes (a `.tar` the native server can restore too).
    #[wasm_bindgen(js_name = exportBackup)]
    pub fn export_backup(&mut self, name: &str) -> Result<Vec<u8>, JsValue> {
        self.db.export_backup(name).map_err(db_err)
    }

    /// Verified manifest of an archive.
    #[wasm_bindgen(js_name = backupInfo)]
    pub fn backup_info(&mut self, name: &str) -> Result<JsValue, JsValue> {
        to_js(&self.db.backup_info(name).map_err(db_err)?)
    }

    /// Validates and stores an archive (from a file, a download, the native server).
    #[wasm_bindgen(js_name = importBackup)]
    pub fn import_backup(&mut self, name: &str, bytes: &[u8]) -> Result<JsValue, JsValue> {
        to_js(&self.db.import_backup(name, bytes).map_err(db_err)?)
    }

    /// Deletes an archive.
    #[wasm_bindgen(js_name = deleteBackup)]
    pub fn delete_backup(&mut self, name: &str) -> Result<(), JsValue> {
        self.db.delete_backup(name).map_err(db_err)
    }

    /// Writes a checkpoint of an index now (it also happens after 16 MiB of log).
    pub fn checkpoint(&mut self, name: &str) -> Result<(), JsValue> {
        self.db.checkpoint(name).map_err(db_err)
    }
}

fn describe_json(name: &str, p: &IndexParams, created: u64, count: usize) -> Value {
    json!({"name": name, "dimension": p.dim, "space_type": p.space.as_str(), "precision": p.precision.as_str(),
           "M": p.m, "ef_con": p.ef_construction, "sparse_model": p.scoring().as_str(), "total_elements": count, "created_at": created})
}

/// Which distance kernels this build uses (`wasm simd128` when built with `+simd128`).
#[wasm_bindgen(js_name = kernelBackend)]
pub fn kernel_backend() -> String {
    cairn_core::kernels::backend().into()
}
