//! # cairn-wasm
//!
//! CairnDB for the browser and Node: [`CairnDb`] wraps `cairn-core`'s single-threaded
//! [`Database`] and supplies what a host supplies — storage, time and entropy. Storage is either
//! in memory or a JS object with synchronous file methods (the OPFS pool in the Worker, or
//! `node:fs`); see `web/src/` for those.

mod js_storage;

use cairn_core::{
    Database, DatabaseError, Fault, Filter, IndexParams, MemStorage, Precision, SearchRequest,
    SpaceType, Storage, UpsertItem,
};
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

fn entropy() -> [u8; 6] {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    b
}

/// A JS `Error` carrying `status` (400/404/409/500), like the server's HTTP codes.
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

#[derive(Deserialize)]
struct CreateOpts {
    dim: usize,
    #[serde(default = "cosine")]
    space_type: String,
    #[serde(rename = "M", default)]
    m: Option<usize>,
    #[serde(default)]
    ef_con: Option<usize>,
    #[serde(default)]
    precision: Option<String>,
}

fn cosine() -> String {
    "cosine".into()
}

#[derive(Deserialize)]
struct ItemIn {
    id: Value,
    vector: Vec<f32>,
    #[serde(default)]
    meta: Option<Value>,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    norm: Option<f32>,
}

#[derive(Deserialize)]
struct QueryIn {
    vector: Vec<f32>,
    #[serde(default = "ten")]
    k: usize,
    #[serde(default)]
    ef: usize,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    include_vectors: bool,
}

fn ten() -> usize {
    10
}

fn id_string(v: &Value) -> Result<String, JsValue> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(err(400, "id must be a string or number")),
    }
}

fn meta_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

fn parse_filter(v: Option<Value>) -> Result<Option<Filter>, JsValue> {
    cairn_core::wire::filter_from_json(v.as_ref()).map_err(|e| err(400, e))
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

    /// Creates an index: `{dim, space_type?, M?, ef_con?, precision?}`.
    #[wasm_bindgen(js_name = createIndex)]
    pub fn create_index(&mut self, name: &str, opts: JsValue) -> Result<(), JsValue> {
        let o: CreateOpts = from_js(opts, "index options")?;
        let space = SpaceType::parse(&o.space_type).map_err(|e| err(400, e))?;
        let mut p = IndexParams::new(o.dim, space);
        if let Some(m) = o.m {
            p.m = m;
        }
        if let Some(e) = o.ef_con {
            p.ef_construction = e;
        }
        if let Some(pr) = o.precision {
            p.precision = Precision::parse(&pr).map_err(|e| err(400, e))?;
        }
        self.db.create_index(name, p, now()).map_err(db_err)
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

    /// Inserts or replaces `[{id, vector, meta?, filter?}]`; returns how many.
    pub fn upsert(&mut self, name: &str, items: JsValue) -> Result<usize, JsValue> {
        let items: Vec<ItemIn> = from_js(items, "vectors")?;
        let items = items
            .into_iter()
            .map(|i| {
                Ok(UpsertItem {
                    id: id_string(&i.id)?,
                    norm: i
                        .norm
                        .unwrap_or_else(|| i.vector.iter().map(|x| x * x).sum::<f32>().sqrt()),
                    vector: i.vector,
                    meta: match i.meta {
                        None | Some(Value::Null) => vec![],
                        Some(Value::String(s)) => s.into_bytes(),
                        Some(v) => v.to_string().into_bytes(),
                    },
                    filter: match i.filter {
                        None | Some(Value::Null) => "{}".into(),
                        Some(Value::String(s)) => s,
                        Some(v) => v.to_string(),
                    },
                    sparse_indices: vec![],
                    sparse_values: vec![],
                })
            })
            .collect::<Result<Vec<_>, JsValue>>()?;
        self.db.upsert(name, items).map_err(db_err)
    }

    /// One vector: `{id, vector, meta, filter, norm}`.
    pub fn get(&mut self, name: &str, id: &str) -> Result<JsValue, JsValue> {
        let r = self.db.get(name, id).map_err(db_err)?;
        to_js(
            &json!({"id": r.id, "vector": r.vector, "meta": meta_value(&r.meta), "filter": serde_json::from_str::<Value>(&r.filter).unwrap_or(Value::Null), "norm": r.norm}),
        )
    }

    /// Deletes ids; returns how many existed.
    pub fn delete(&mut self, name: &str, ids: JsValue) -> Result<usize, JsValue> {
        let ids: Vec<String> = from_js(ids, "ids")?;
        self.db.delete(name, ids).map_err(db_err)
    }

    /// Deletes what a filter matches; returns how many.
    #[wasm_bindgen(js_name = deleteByFilter)]
    pub fn delete_by_filter(&mut self, name: &str, filter: JsValue) -> Result<usize, JsValue> {
        let f: Value = from_js(filter, "filter")?;
        let f = parse_filter(Some(f))?.ok_or_else(|| err(400, "filter must not be empty"))?;
        self.db.delete_by_filter(name, &f).map_err(db_err)
    }

    /// Top-k search: `{vector, k?, ef?, filter?, include_vectors?}` → `[{id, similarity, meta, filter, vector?}]`.
    pub fn search(&mut self, name: &str, query: JsValue) -> Result<JsValue, JsValue> {
        let q: QueryIn = from_js(query, "query")?;
        let mut req = SearchRequest::new(q.vector, q.k);
        req.ef = q.ef;
        req.include_vectors = q.include_vectors;
        req.filter = parse_filter(q.filter)?;
        let hits = self.db.search(name, &req).map_err(db_err)?;
        let v: Vec<Value> = hits
            .into_iter()
            .map(|h| {
                let mut o = json!({"id": h.id, "similarity": h.similarity, "meta": meta_value(&h.meta), "filter": serde_json::from_str::<Value>(&h.filter).unwrap_or(Value::Null), "norm": h.norm});
                if q.include_vectors {
                    o["vector"] = json!(h.vector);
                }
                o
            })
            .collect();
        to_js(&v)
    }

    /// Runs a backup job; `on_progress(done, total)` is called as bytes stream. Returns the job.
    pub fn backup(
        &mut self,
        index: &str,
        name: &str,
        on_progress: Option<js_sys::Function>,
    ) -> Result<JsValue, JsValue> {
        let mut cb = |done: u64, total: u64| {
            if let Some(f) = &on_progress {
                let _ = f.call2(
                    &JsValue::NULL,
                    &JsValue::from(done as f64),
                    &JsValue::from(total as f64),
                );
            }
        };
        let job = self
            .db
            .backup(index, name, now(), entropy(), &mut cb)
            .map_err(db_err)?;
        to_js(&job)
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Result<JsValue, JsValue> {
        to_js(&self.db.jobs())
    }

    /// One job.
    pub fn job(&self, id: &str) -> Result<JsValue, JsValue> {
        to_js(&self.db.job(id).map_err(db_err)?)
    }

    /// Cancels a queued or running job.
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

    /// Restores an archive into a new index; returns the job.
    pub fn restore(&mut self, backup: &str, target: &str) -> Result<JsValue, JsValue> {
        to_js(
            &self
                .db
                .restore(backup, target, now(), entropy())
                .map_err(db_err)?,
        )
    }

    /// Writes a checkpoint of an index now (it also happens after 16 MiB of log).
    pub fn checkpoint(&mut self, name: &str) -> Result<(), JsValue> {
        self.db.checkpoint(name).map_err(db_err)
    }
}

fn describe_json(name: &str, p: &IndexParams, created: u64, count: usize) -> Value {
    json!({"name": name, "dimension": p.dim, "space_type": p.space.as_str(), "precision": p.precision.as_str(),
           "M": p.m, "ef_con": p.ef_construction, "total_elements": count, "created_at": created})
}

/// Which distance kernels this build uses (`wasm simd128` when built with `+simd128`).
#[wasm_bindgen(js_name = kernelBackend)]
pub fn kernel_backend() -> String {
    cairn_core::kernels::backend().into()
}
