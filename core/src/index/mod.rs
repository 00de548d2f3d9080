//! One vector index: ids, vectors, meta, filters and the HNSW graph.
//!
//! Writes go through one path: `prepare_*` validates and returns a [`Record`] without touching
//! state; the host makes the record durable; [`Index::apply`] executes it. Recovery replays the
//! log through the same `apply`.

pub mod fields;
pub mod filter;
pub mod hnsw;
pub mod kernels;
pub(crate) mod links;
pub mod originals;
pub mod params;
pub mod rebuild;
pub(crate) mod rows;
pub(crate) mod slots;
pub mod sparse;
pub(crate) mod vectors;

use crate::filter::{Filter, FilterError, FilterIndex};
use crate::hnsw::{Graph, Scored, Scratch};
use crate::originals::{CheckpointBytes, NoCheckpoint, Originals, OriginalsLayout};
use crate::params::{IndexParams, ParamError, Precision, SpaceType};
use crate::record::{FrameError, LogScan, Record, UpsertItem, scan_log};
use crate::slots::SlotTable;
use crate::sparse::SparseIndex;
use crate::vectors::VectorStore;
use roaring::RoaringBitmap;
use serde_json::{Map, Value};
use std::sync::Mutex;
use thiserror::Error;

/// Below this many live vectors, unfiltered search is exact.
pub const EXACT_BELOW: u64 = 2048;
/// Endee's default: filters matching fewer vectors than this are searched exactly.
pub const DEFAULT_PREFILTER_THRESHOLD: u64 = 10_000;
/// Longest vector id, in bytes.
pub const MAX_ID_BYTES: usize = 1024;
/// Largest meta of one vector, in bytes.
pub const MAX_META_BYTES: usize = 256 << 10;
/// Largest filter object of one vector, as JSON text.
pub const MAX_FILTER_BYTES: usize = 64 << 10;
/// Largest search beam accepted.
pub const MAX_EF: usize = 4096;
/// Endee's default weight of the dense ranking in hybrid search.
pub const DEFAULT_DENSE_RRF_WEIGHT: f32 = 0.5;
/// Endee's default reciprocal rank fusion constant.
pub const DEFAULT_RRF_RANK_CONSTANT: f32 = 60.0;

/// Why a write or search was refused. Nothing changes when one is returned.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum IndexError {
    /// A parameter out of range.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// A malformed filter.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// Vector length differs from the index dimension.
    #[error("vector {id:?} has dimension {got}, index expects {want}")]
    Dimension {
        /// Which vector.
        id: String,
        /// Its length.
        got: usize,
        /// The index dimension.
        want: usize,
    },
    /// NaN or infinity in a vector.
    #[error("vector {0:?} contains NaN or infinity")]
    NotFinite(String),
    /// Empty id.
    #[error("vector id must not be empty")]
    EmptyId,
    /// Empty batch.
    #[error("no vectors given")]
    EmptyBatch,
    /// Sparse data malformed or given to a dense index.
    #[error("invalid sparse data for {id:?}: {detail}")]
    Sparse {
        /// Which vector.
        id: String,
        /// What is wrong.
        detail: String,
    },
    /// Unknown id.
    #[error("vector {0:?} not found")]
    NotFound(String),
    /// A delete by filter whose filter has no condition.
    #[error(
        "filter must contain at least one condition: an empty filter would delete every vector"
    )]
    EmptyDeleteFilter,
    /// An id, meta or filter larger than its limit.
    #[error("{what} too large: {got} bytes (max {max})")]
    TooLarge {
        /// Which part.
        what: &'static str,
        /// Its size.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A search that asks for nothing, or for a part the index does not have.
    #[error("{0}")]
    BadQuery(String),
    /// Reading float32 originals from the checkpoint failed.
    #[error("reading originals failed: {0}")]
    Io(String),
    /// An object's values for a collection's further dense fields are missing or malformed.
    #[error("object {id:?}: {detail}")]
    Fields {
        /// Which object.
        id: String,
        /// What is wrong.
        detail: String,
    },
}

/// Which rules a vector's payload is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checks {
    /// A new write: structure and every size limit.
    Write,
    /// Read back (log, checkpoint, archive), possibly written by an earlier version with other
    /// limits: structure only — what a search or insert could trip over.
    Stored,
}

/// Input to an upsert, before validation.
pub type UpsertInput = UpsertItem;

/// A search request.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Query vector (dense).
    pub vector: Vec<f32>,
    /// Results wanted, 1..=4096.
    pub k: usize,
    /// Beam width (0 = default); raised to `k` when smaller.
    pub ef: usize,
    /// Optional filter.
    pub filter: Option<Filter>,
    /// Return stored vectors in hits.
    pub include_vectors: bool,
    /// Filters matching fewer vectors than this use exact search (default 10,000).
    pub prefilter_threshold: Option<u64>,
    /// Sparse query terms (hybrid indexes); with `vector` empty, a sparse-only search.
    pub sparse_indices: Vec<u32>,
    /// Weights of `sparse_indices`.
    pub sparse_values: Vec<f32>,
    /// Weight of the dense ranking when both are fused, in [0, 1] (Endee's default 0.5).
    pub dense_rrf_weight: f32,
    /// Reciprocal rank fusion's constant, > 0 (Endee's default 60).
    pub rrf_rank_constant: f32,
    /// Which dense field: 0 the index's own vectors, `i + 1` the collection's further field
    /// `i` (then `vector` or `multi` is its query, and there is no sparse part).
    pub field: usize,
    /// A `multi_vector` field's query vectors.
    pub multi: Vec<Vec<f32>>,
}

impl SearchRequest {
    /// A plain top-k request with default beam.
    pub fn new(vector: Vec<f32>, k: usize) -> Self {
        Self {
            vector,
            k,
            ef: 0,
            filter: None,
            include_vectors: false,
            prefilter_threshold: None,
            sparse_indices: Vec::new(),
            sparse_values: Vec::new(),
            dense_rrf_weight: DEFAULT_DENSE_RRF_WEIGHT,
            rrf_rank_constant: DEFAULT_RRF_RANK_CONSTANT,
            field: 0,
            multi: Vec::new(),
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// Endee's similarity (higher is better).
    pub similarity: f32,
    /// The user's id.
    pub id: String,
    /// Meta bytes.
    pub meta: Vec<u8>,
    /// Filter JSON text.
    pub filter: String,
    /// Stored norm.
    pub norm: f32,
    /// Decoded vector if asked for, else empty.
    pub vector: Vec<f32>,
}

/// A stored vector, as `get` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRecord {
    /// The user's id.
    pub id: String,
    /// Meta bytes.
    pub meta: Vec<u8>,
    /// Filter JSON text (`{}` when none).
    pub filter: String,
    /// Stored norm.
    pub norm: f32,
    /// Decoded vector.
    pub vector: Vec<f32>,
    /// Sparse indices.
    pub sparse_indices: Vec<u32>,
    /// Sparse values.
    pub sparse_values: Vec<f32>,
    /// Per further dense field of a collection, its vectors (normalised for cosine).
    pub extra: Vec<Vec<Vec<f32>>>,
}

/// The index.
#[derive(Debug)]
pub struct Index {
    pub(crate) params: IndexParams,
    pub(crate) store: VectorStore,
    pub(crate) graph: Graph,
    /// Per-slot payload and the id → slot lookup.
    pub(crate) slots: SlotTable,
    /// Freed slots, reused last-freed first (deterministic across replay).
    pub(crate) free: Vec<u32>,
    pub(crate) live: RoaringBitmap,
    /// The same set as `live`, as a dense bitset: the per-node check inside graph search.
    live_bits: Vec<u64>,
    pub(crate) filters: FilterIndex,
    /// Float32 originals for re-ranking and for reading vectors back (int8 and binary; `None`
    /// for other precisions and for indexes loaded from a checkpoint written without them).
    pub(crate) originals: Option<Originals>,
    /// Slots stored but not yet linked into the graph (a log replayed with
    /// [`Index::replay_deferred`]): searches scan them exactly until
    /// [`Index::link_pending`] has linked them.
    unlinked: RoaringBitmap,
    /// Postings of the sparse parts (hybrid indexes).
    pub(crate) sparse: SparseIndex,
    /// Set while applying a replay whose links are deferred.
    defer_links: bool,
    /// A collection's further dense fields, in its order (see [`fields`]).
    pub(crate) extra: Vec<fields::ExtraField>,
    /// Slots written since a graph rebuild began ([`rebuild::GraphBuilder`]), in order:
    /// the rebuild relinks those it had already placed. `None` when no rebuild runs.
    changes: Option<Vec<u32>>,
    scratch: Mutex<Vec<Scratch>>,
}

/// A prepared query over the store, as the graph sees it.
struct StoreProbe<'a> {
    store: &'a VectorStore,
    q: &'a crate::vectors::Query,
}

impl crate::hnsw::Probe for StoreProbe<'_> {
    #[inline(always)]
    fn dist(&self, slot: u32) -> f32 {
        self.store.dist(self.q, slot)
    }
    #[inline(always)]
    fn dist4(&self, slots: [u32; 4]) -> [f32; 4] {
        self.store.dist4(self.q, slots)
    }
    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        self.store.prefetch(slot)
    }
}

/// Inserts (or relinks) `slot` of `store` into `graph`, measuring from its stored vector.
fn link_into(graph: &mut Graph, store: &VectorStore, slot: u32, scratch: &mut Scratch) {
    let q = store.prepare(&store.get(slot as usize));
    let probe = StoreProbe { store, q: &q };
    graph.insert(slot, &probe, &|a, b| store.dist_slots(a, b), scratch);
}

/// Candidates re-ranked per result wanted, for indexes with float32 originals. Measured on
/// the three bench sets (int8, k = 10, ef 24–192): re-ranking the best 20 by code gave exactly
/// the recall of re-ranking the best 40 (to four decimals, even where codes alone capped at
/// 0.962), at 10–40 % more q/s — each candidate is one read of its original.
pub const RERANK_OVERSAMPLE: usize = 2;

/// Fewest candidates re-ranked, so a small `k` still has a margin over the codes' ordering.
pub const RERANK_MIN: usize = 16;

/// True for precisions whose indexes keep float32 originals to re-rank with: int8 (codes rank
/// well, re-ranking makes the last digits exact) and binary (sign bits only shortlist; without
/// re-ranking a 1-bit index finds a fraction of the true neighbours).
pub fn keeps_originals(p: Precision) -> bool {
    matches!(p, Precision::Int8 | Precision::Binary)
}

/// How many of the search's candidates an index with originals re-ranks for `k` results with
/// beam `ef`: int8 the best `k × RERANK_OVERSAMPLE` (at least [`RERANK_MIN`]); binary, whose
/// Hamming distances tie in large groups, the whole beam.
fn rerank_candidates(p: Precision, k: usize, ef: usize) -> usize {
    let oversampled = (k * RERANK_OVERSAMPLE).max(RERANK_MIN);
    match p {
        Precision::Binary => oversampled.max(ef),
        _ => oversampled,
    }
}

/// True for precisions whose graphs store layer-0 links packed (see [`crate::links`]): every
/// precision chosen to save memory. float32 keeps fixed rows, read in place, for the fastest
/// search.
pub fn packs_links(p: Precision) -> bool {
    p != Precision::Float32
}

/// Seed of the level generator: fixed, so that a replay builds the same graph.
const GRAPH_SEED: u64 = 100;

impl Index {
    /// A new empty index. Fails if a parameter is out of range.
    pub fn new(params: IndexParams) -> Result<Self, IndexError> {
        params.validate()?;
        let mut ix = Self::from_parts(
            VectorStore::new(params.dim, params.space, params.precision),
            Graph::new(
                params.m,
                params.ef_construction,
                GRAPH_SEED,
                packs_links(params.precision),
            ),
            params,
        );
        if keeps_originals(ix.params.precision) {
            ix.originals = Some(Originals::new(ix.params.dim));
        }
        ix.extra = ix
            .params
            .extra_fields()
            .iter()
            .map(fields::ExtraField::new)
            .collect();
        Ok(ix)
    }

    pub(crate) fn from_parts(store: VectorStore, graph: Graph, params: IndexParams) -> Self {
        Self {
            params,
            store,
            graph,
            slots: SlotTable::default(),
            free: Vec::new(),
            live: RoaringBitmap::new(),
            live_bits: Vec::new(),
            filters: FilterIndex::default(),
            originals: None,
            unlinked: RoaringBitmap::new(),
            sparse: SparseIndex::default(),
            defer_links: false,
            extra: Vec::new(),
            changes: None,
            scratch: Mutex::new(Vec::new()),
        }
    }

    /// The index parameters.
    pub fn params(&self) -> &IndexParams {
        &self.params
    }

    /// Number of live vectors.
    pub fn len(&self) -> usize {
        self.slots.live()
    }

    /// True when no vector is stored.
    pub fn is_empty(&self) -> bool {
        self.slots.live() == 0
    }

    /// Heap bytes of vectors, graph, payload and live sets (for memory reports; the filter
    /// index is not counted).
    pub fn heap_bytes(&self) -> usize {
        self.store.heap_bytes()
            + self.graph.heap_bytes()
            + self.slots.heap_bytes()
            + self.live.serialized_size()
            + self.live_bits.capacity() * 8
            + self.free.capacity() * 4
            + self.originals.as_ref().map_or(0, Originals::heap_bytes)
            + self
                .extra
                .iter()
                .map(|f| {
                    f.store.heap_bytes()
                        + f.graph.heap_bytes()
                        + f.members
                            .iter()
                            .map(|m| m.capacity() * 4 + 24)
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    /// True when this index re-ranks with float32 originals, so its checkpoints carry them and
    /// searches need a [`CheckpointBytes`] for the checkpoint it was loaded from or last wrote.
    pub fn has_originals(&self) -> bool {
        self.originals.is_some()
    }

    /// Tells the index that the checkpoint its host now reads originals from is laid out as
    /// `layout` (what [`crate::checkpoint::write_checkpoint`] returned). Call it, with writes
    /// held, between finishing a checkpoint and handing searches the new file.
    pub fn checkpointed(&mut self, layout: Option<OriginalsLayout>) {
        match (&mut self.originals, layout) {
            (Some(o), Some(l)) => o.checkpointed(l),
            (o, None) => *o = None,
            (None, Some(_)) => {}
        }
    }

    fn check_vector(&self, id: &str, v: &[f32]) -> Result<(), IndexError> {
        if v.len() != self.params.dim {
            return Err(IndexError::Dimension {
                id: id.into(),
                got: v.len(),
                want: self.params.dim,
            });
        }
        if !v.iter().all(|x| x.is_finite()) {
            return Err(IndexError::NotFinite(id.into()));
        }
        Ok(())
    }

    /// Validates an upsert batch; returns the record to log. Changes nothing.
    pub fn prepare_upsert(&self, items: Vec<UpsertInput>) -> Result<Record, IndexError> {
        if items.is_empty() {
            return Err(IndexError::EmptyBatch);
        }
        self.check_items(&items, Checks::Write)?;
        Ok(Record::Upsert(items))
    }

    fn check_id(id: &str, checks: Checks) -> Result<(), IndexError> {
        if id.is_empty() {
            return Err(IndexError::EmptyId);
        }
        if checks == Checks::Write && id.len() > MAX_ID_BYTES {
            return Err(IndexError::TooLarge {
                what: "id",
                got: id.len(),
                max: MAX_ID_BYTES,
            });
        }
        Ok(())
    }

    fn check_filter_text(f: &str, checks: Checks) -> Result<(), IndexError> {
        if checks == Checks::Stored {
            filter::parse_object(f)?;
            return Ok(());
        }
        if f.len() > MAX_FILTER_BYTES {
            return Err(IndexError::TooLarge {
                what: "filter",
                got: f.len(),
                max: MAX_FILTER_BYTES,
            });
        }
        filter::parse_stored(f)?;
        Ok(())
    }

    /// Every rule an upserted vector must keep.
    fn check_items(&self, items: &[UpsertItem], checks: Checks) -> Result<(), IndexError> {
        if !self.extra.is_empty() {
            return Err(IndexError::Fields {
                id: items.first().map(|i| i.id.clone()).unwrap_or_default(),
                detail: format!(
                    "this collection has {} more dense fields: write objects with every field (/api/v2)",
                    self.extra.len()
                ),
            });
        }
        items.iter().try_for_each(|it| self.check_item(it, checks))
    }

    fn check_item(&self, it: &UpsertItem, checks: Checks) -> Result<(), IndexError> {
        self.check_vector(&it.id, &it.vector)?;
        self.check_payload(
            &it.id,
            &it.meta,
            &it.filter,
            it.norm,
            (&it.sparse_indices, &it.sparse_values),
            checks,
        )
    }

    /// The rules for what a vector carries besides its values: id, meta, filter, norm, sparse
    /// part. Shared by writes, replay and checkpoint loading (`checks` says which).
    pub(crate) fn check_payload(
        &self,
        id: &str,
        meta: &[u8],
        filter: &str,
        norm: f32,
        (sparse_indices, sparse_values): (&[u32], &[f32]),
        checks: Checks,
    ) -> Result<(), IndexError> {
        Self::check_id(id, checks)?;
        if checks == Checks::Write && meta.len() > MAX_META_BYTES {
            return Err(IndexError::TooLarge {
                what: "meta",
                got: meta.len(),
                max: MAX_META_BYTES,
            });
        }
        Self::check_filter_text(filter, checks)?;
        if !norm.is_finite() {
            return Err(IndexError::NotFinite(id.into()));
        }
        let sparse_err = |detail: String| IndexError::Sparse {
            id: id.into(),
            detail,
        };
        if sparse_indices.len() != sparse_values.len() {
            return Err(sparse_err(
                "sparse_indices and sparse_values differ in length".into(),
            ));
        }
        if !sparse_indices.is_empty() {
            if !self.params.is_hybrid() {
                return Err(sparse_err("this index is dense-only".into()));
            }
            if let Some(bad) = sparse_indices
                .iter()
                .find(|&&i| self.params.sparse_dim > 0 && i as u64 >= self.params.sparse_dim)
            {
                return Err(sparse_err(format!(
                    "index {bad} >= sparse_dim {}",
                    self.params.sparse_dim
                )));
            }
            if !sparse_values.iter().all(|x| x.is_finite()) {
                return Err(sparse_err("NaN or infinity in sparse_values".into()));
            }
        }
        Ok(())
    }

    /// Checks a record read back from a log or an archive: it must be one a `prepare` could
    /// have produced for this index — of this or an earlier version, so the size limits new
    /// writes keep are not applied (they are policy, not structure). Replay refuses anything
    /// else instead of applying it.
    pub fn check_record(&self, rec: &Record) -> Result<(), IndexError> {
        let stored = Checks::Stored;
        match rec {
            Record::Upsert(items) => self.check_items(items, stored),
            Record::Delete(ids) => ids.iter().try_for_each(|id| Self::check_id(id, stored)),
            Record::UpdateFilters(ups) => ups.iter().try_for_each(|(id, f)| {
                Self::check_id(id, stored)?;
                Self::check_filter_text(f, stored)
            }),
            Record::UpsertFields(items) => self.check_fields_items(items, stored),
        }
    }

    /// Validates a delete by ids; unknown ids are an error only when none is known.
    pub fn prepare_delete(&self, ids: Vec<String>) -> Result<Record, IndexError> {
        if ids.len() == 1
            && let Some(missing) = ids.iter().find(|id| !self.slots.contains(id))
        {
            return Err(IndexError::NotFound(missing.clone()));
        }
        Ok(Record::Delete(
            ids.into_iter()
                .filter(|id| self.slots.contains(id))
                .collect(),
        ))
    }

    /// Resolves a filter to the ids it matches now; the record deletes exactly those. An empty
    /// filter (which would match every vector) is refused: deleting everything takes deleting
    /// the index, never a filter that happens to be `[]`.
    pub fn prepare_delete_by_filter(&self, f: &Filter) -> Result<Record, IndexError> {
        if f.is_empty() {
            return Err(IndexError::EmptyDeleteFilter);
        }
        let ids = match self.matching(f) {
            Some(bm) => bm
                .iter()
                .filter_map(|s| self.slots.id(s).map(String::from))
                .collect(),
            None => self.slots.ids().map(|(id, _)| id.to_string()).collect(),
        };
        Ok(Record::Delete(ids))
    }

    /// Validates filter updates; unknown ids are skipped (as Endee).
    pub fn prepare_update_filters(
        &self,
        updates: Vec<(String, String)>,
    ) -> Result<Record, IndexError> {
        for (id, f) in &updates {
            Self::check_id(id, Checks::Write)?;
            Self::check_filter_text(f, Checks::Write)?;
        }
        Ok(Record::UpdateFilters(
            updates
                .into_iter()
                .filter(|(id, _)| self.slots.contains(id))
                .collect(),
        ))
    }

    fn normalise(&self, v: &[f32]) -> Vec<f32> {
        if self.params.space != SpaceType::Cosine {
            return v.to_vec();
        }
        let n = crate::kernels::dot_f32(v, v).sqrt().max(1e-10);
        v.iter().map(|x| x / n).collect()
    }

    fn stored_filter(s: &str) -> Map<String, Value> {
        filter::parse_stored(s).unwrap_or_default()
    }

    /// Removes an occupied slot's stored filter from the filter index (before it changes).
    fn unindex_filter(&mut self, slot: u32) {
        if let Some(r) = self.slots.get(slot) {
            let old = Self::stored_filter(r.filter);
            self.filters.remove(slot, &old);
        }
    }

    fn take_scratch(&self) -> Scratch {
        self.scratch
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default()
    }

    fn give_scratch(&self, v: Scratch) {
        if let Ok(mut p) = self.scratch.lock() {
            p.push(v);
        }
    }

    /// Executes a record. Returns how many vectors it affected. Items a valid `prepare` could
    /// not have produced (wrong dimension) are skipped, so replay of any log is panic-free.
    pub fn apply(&mut self, rec: &Record) -> usize {
        match rec {
            Record::Upsert(items) => {
                let mut n = 0;
                let mut scratch = self.take_scratch();
                for it in items {
                    if it.vector.len() != self.params.dim || it.id.is_empty() {
                        continue;
                    }
                    self.upsert_one(it, &mut scratch);
                    n += 1;
                }
                self.give_scratch(scratch);
                n
            }
            Record::UpsertFields(items) => {
                let mut n = 0;
                let mut scratch = self.take_scratch();
                for f in items {
                    if !self.fields_fit(f) {
                        continue;
                    }
                    let slot = self.upsert_one(&f.item, &mut scratch);
                    self.set_extra(slot, &f.extra, &mut scratch);
                    n += 1;
                }
                self.give_scratch(scratch);
                n
            }
            Record::Delete(ids) => ids.iter().filter(|id| self.delete_one(id)).count(),
            Record::UpdateFilters(ups) => {
                let mut n = 0;
                for (id, f) in ups {
                    if let Some(slot) = self.slots.find(id) {
                        self.unindex_filter(slot);
                        self.slots.set_filter(slot, f);
                        self.filters.add(slot, &Self::stored_filter(f));
                        n += 1;
                    }
                }
                n
            }
        }
    }

    /// Replays a log into the index: every whole record is checked ([`Index::check_record`])
    /// and applied, in order. A torn tail is reported (the host cuts it); corruption in the
    /// middle, an undecodable record or one no valid write could have produced is an error,
    /// with the records before it applied.
    pub fn replay<R: std::io::Read>(&mut self, log: R) -> Result<LogScan, FrameError> {
        scan_log(log, |_, rec| {
            self.check_record(&rec).map_err(|e| e.to_string())?;
            self.apply(&rec);
            Ok(())
        })
    }

    /// [`Index::replay`] without linking the replayed vectors into the graph: they are stored,
    /// filterable and found (searches scan them exactly), and [`Index::link_pending`] links
    /// them later, a few at a time. Linking is what costs in a replay (~0.2 ms a vector at
    /// 384-d); this is how a server answers its first query after a crash as soon as the
    /// checkpoint is loaded. Link everything before writing a checkpoint.
    pub fn replay_deferred<R: std::io::Read>(&mut self, log: R) -> Result<LogScan, FrameError> {
        self.defer_links = true;
        let r = self.replay(log);
        self.defer_links = false;
        r
    }

    /// Vectors stored but not yet linked into the graph.
    pub fn pending_links(&self) -> u64 {
        self.unlinked.len()
    }

    /// Links up to `budget` pending vectors into the graph (lowest slots first); returns how
    /// many are still pending.
    pub fn link_pending(&mut self, budget: usize) -> u64 {
        let batch: Vec<u32> = self.unlinked.iter().take(budget).collect();
        let mut scratch = self.take_scratch();
        for slot in batch {
            if !self.unlinked.contains(slot) {
                continue; // linked already, filling a gap below another
            }
            // A dead slot still needs its node if the graph has not reached it: graph nodes
            // are numbered without gaps.
            if self.is_live(slot) || slot as usize >= self.graph.len() {
                self.link(slot, &mut scratch);
            } else {
                self.unlinked.remove(slot);
            }
        }
        self.give_scratch(scratch);
        self.unlinked.len()
    }

    /// How many of `set` are linked into the graph (what a graph search can reach).
    fn linked_len(&self, set: &RoaringBitmap) -> u64 {
        if self.unlinked.is_empty() {
            set.len()
        } else {
            set.len() - set.intersection_len(&self.unlinked)
        }
    }

    /// Inserts a stored slot into the graph, first the pending slots below it that the graph
    /// has not reached (its nodes are numbered without gaps).
    fn link(&mut self, slot: u32, scratch: &mut Scratch) {
        while self.graph.len() < slot as usize {
            let gap = self.graph.len() as u32;
            self.link_one(gap, scratch);
        }
        self.link_one(slot, scratch);
    }

    fn link_one(&mut self, slot: u32, scratch: &mut Scratch) {
        self.unlinked.remove(slot);
        if self.params.dim == 0 {
            // A collection without a vector field: its graph only numbers the slots (a
            // checkpoint writes a node per slot); linking vectors of no values would cost
            // ef_construction distances a write for links nothing searches.
            while self.graph.len() <= slot as usize {
                self.graph.push_unlinked();
            }
            return;
        }
        link_into(&mut self.graph, &self.store, slot, scratch);
    }

    fn upsert_one(&mut self, it: &UpsertItem, scratch: &mut Scratch) -> u32 {
        let v = self.normalise(&it.vector);
        let slot = match self.slots.find(&it.id) {
            Some(s) => {
                self.unindex_filter(s);
                self.unindex_sparse(s);
                s
            }
            None => match self.free.pop() {
                Some(s) => s,
                None => self.slots.len() as u32,
            },
        };
        let filter = if it.filter.trim().is_empty() {
            "{}"
        } else {
            it.filter.as_str()
        };
        self.filters.add(slot, &Self::stored_filter(filter));
        self.slots.put(
            slot,
            &it.id,
            &it.meta,
            filter,
            it.norm,
            &it.sparse_indices,
            &it.sparse_values,
        );
        self.sparse.add(slot, &it.sparse_indices, &it.sparse_values);
        self.store.set(slot as usize, &v);
        if let Some(o) = &mut self.originals {
            o.set(slot, &v);
        }
        if self.defer_links {
            self.unlinked.insert(slot);
        } else {
            self.link(slot, scratch);
        }
        self.set_live(slot, true);
        if let Some(c) = &mut self.changes {
            c.push(slot);
        }
        slot
    }

    fn delete_one(&mut self, id: &str) -> bool {
        let Some(slot) = self.slots.find(id) else {
            return false;
        };
        self.unindex_filter(slot);
        self.unindex_sparse(slot);
        self.slots.clear(slot);
        self.set_live(slot, false);
        self.free.push(slot);
        true
    }

    /// Takes a slot's sparse part out of the postings (before it is replaced or cleared).
    fn unindex_sparse(&mut self, slot: u32) {
        if let Some(d) = self.slots.get(slot) {
            let (terms, _) = d.sparse();
            self.sparse.remove(slot, &terms);
        }
    }

    /// Marks a slot live or dead in both live sets.
    pub(crate) fn set_live(&mut self, slot: u32, live: bool) {
        let (w, b) = (slot as usize / 64, slot % 64);
        if self.live_bits.len() <= w {
            self.live_bits.resize(w + 1, 0);
        }
        if live {
            self.live.insert(slot);
            self.live_bits[w] |= 1 << b;
        } else {
            self.live.remove(slot);
            self.live_bits[w] &= !(1 << b);
        }
    }

    #[inline]
    fn is_live(&self, slot: u32) -> bool {
        self.live_bits
            .get(slot as usize / 64)
            .is_some_and(|w| (w >> (slot % 64)) & 1 == 1)
    }

    /// The ids `id` links to on dense field `field`'s graph base layer (live ones only; 0: the
    /// index's own vectors, `i + 1`: a collection's further field `i`), or `None` if `id` is
    /// not stored or there is no such field. A vector replayed but not yet linked has none.
    pub fn links_of(&self, field: usize, id: &str) -> Option<Vec<String>> {
        let graph = match field {
            0 => &self.graph,
            f => &self.extra.get(f - 1)?.graph,
        };
        let slot = self.slots.find(id)?;
        Some(
            graph
                .layer0_links(slot)
                .into_iter()
                .filter(|&s| self.is_live(s))
                .filter_map(|s| self.slots.id(s).map(String::from))
                .collect(),
        )
    }

    /// The stored vector for `id`, without a checkpoint file: as [`Index::get_with`], with
    /// the vector decoded from its codes when its original is only in the file.
    pub fn get(&self, id: &str) -> Option<VectorRecord> {
        self.get_with(id, &mut NoCheckpoint).ok().flatten()
    }

    /// The stored vector for `id`. An index with originals returns the float32 original (read
    /// from memory or through `src`, as [`Index::search_with`]), so an int8 or binary index
    /// gives back what a float32 one would; other precisions decode their codes.
    pub fn get_with(
        &self,
        id: &str,
        src: &mut dyn CheckpointBytes,
    ) -> Result<Option<VectorRecord>, IndexError> {
        let Some(slot) = self.slots.find(id) else {
            return Ok(None);
        };
        let Some(d) = self.slots.get(slot) else {
            return Ok(None);
        };
        let (sparse_indices, sparse_values) = d.sparse();
        Ok(Some(VectorRecord {
            id: id.to_string(),
            meta: d.meta.to_vec(),
            filter: d.filter.to_string(),
            norm: d.norm,
            vector: self.vector_of(slot, src)?,
            sparse_indices,
            sparse_values,
            extra: self.extra_values(slot),
        }))
    }

    /// Slot `slot`'s vector: its float32 original where the index keeps them and can read
    /// them (see [`Index::can_read_originals`]), else decoded from its codes.
    fn vector_of(&self, slot: u32, src: &mut dyn CheckpointBytes) -> Result<Vec<f32>, IndexError> {
        match &self.originals {
            Some(o) if self.can_read_originals(src) => {
                let (mut v, mut buf) = (vec![0f32; self.params.dim], Vec::new());
                o.read(slot, src, &mut v, &mut buf)
                    .map_err(|e| IndexError::Io(e.to_string()))?;
                Ok(v)
            }
            _ => Ok(self.store.get(slot as usize)),
        }
    }

    /// True when every original this index keeps is readable: all still in memory (never
    /// checkpointed) or `src` is the checkpoint file.
    fn can_read_originals(&self, src: &dyn CheckpointBytes) -> bool {
        self.originals
            .as_ref()
            .is_some_and(|o| !o.has_checkpointed() || src.available())
    }

    /// Live slots matching `f`; `None` for an empty filter (everything matches).
    fn matching(&self, f: &Filter) -> Option<RoaringBitmap> {
        if f.is_empty() {
            return None;
        }
        let mut bm = self.filters.eval(f).unwrap_or_default();
        bm &= &self.live;
        Some(bm)
    }

    /// Number of live vectors a filter matches.
    pub fn count_matching(&self, f: &Filter) -> u64 {
        self.matching(f).map_or(self.live.len(), |b| b.len())
    }

    fn exact(
        &self,
        q: &crate::vectors::Query,
        k: usize,
        slots: impl Iterator<Item = u32>,
    ) -> Vec<Scored> {
        let mut heap = std::collections::BinaryHeap::with_capacity(k + 1);
        for s in slots {
            let d = Scored {
                dist: self.store.dist(q, s),
                slot: s,
            };
            if heap.len() < k {
                heap.push(d);
            } else if heap.peek().is_some_and(|top: &Scored| d < *top) {
                heap.pop();
                heap.push(d);
            }
        }
        heap.into_sorted_vec()
    }

    /// Top-k search without a checkpoint file: as [`Index::search_with`], re-ranking only when
    /// every original is still in memory (an index never checkpointed).
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<SearchHit>, IndexError> {
        self.search_with(req, &mut NoCheckpoint)
    }

    /// Top-k search. Exact for small or highly filtered sets, HNSW otherwise; with a filter,
    /// k results come back whenever k vectors match. An int8 or binary index then re-ranks its
    /// best candidates (see [`rerank_candidates`]) by float32 distance to their originals, read
    /// from memory or from the checkpoint through `src` (the file it was loaded from or last
    /// wrote).
    pub fn search_with(
        &self,
        req: &SearchRequest,
        src: &mut dyn CheckpointBytes,
    ) -> Result<Vec<SearchHit>, IndexError> {
        params::validate_k(req.k)?;
        let filtered_early;
        let ranked_extra = if req.field > 0 {
            filtered_early = req.filter.as_ref().and_then(|f| self.matching(f));
            Some(self.extra_ranked(req, filtered_early.as_ref())?)
        } else {
            None
        };
        if let Some(ranked) = ranked_extra {
            return self.hits(ranked, req, src);
        }
        let dense = !req.vector.is_empty();
        let sparse = !req.sparse_indices.is_empty() || !req.sparse_values.is_empty();
        if !dense && !sparse {
            return Err(IndexError::BadQuery(
                "send 'vector', 'sparse_indices' with 'sparse_values', or both".into(),
            ));
        }
        let filtered = req.filter.as_ref().and_then(|f| self.matching(f));
        let dense_ranked = if dense {
            Some(self.dense_ranked(req, src, filtered.as_ref())?)
        } else {
            None
        };
        let sparse_ranked = if sparse {
            Some(self.sparse_ranked(req, filtered.as_ref())?)
        } else {
            None
        };
        let ranked = match (dense_ranked, sparse_ranked) {
            (Some(d), Some(s)) => fuse(&d, &s, req),
            (Some(r), None) | (None, Some(r)) => r,
            (None, None) => Vec::new(),
        };
        self.hits(ranked, req, src)
    }

    /// Search hits for ranked slots.
    fn hits(
        &self,
        ranked: Vec<(u32, f32)>,
        req: &SearchRequest,
        src: &mut dyn CheckpointBytes,
    ) -> Result<Vec<SearchHit>, IndexError> {
        let mut hits = Vec::with_capacity(ranked.len());
        for (slot, similarity) in ranked {
            let Some(d) = self.slots.get(slot) else {
                continue;
            };
            hits.push(SearchHit {
                similarity,
                id: d.id.to_string(),
                meta: d.meta.to_vec(),
                filter: d.filter.to_string(),
                norm: d.norm,
                vector: if req.include_vectors {
                    self.vector_of(slot, src)?
                } else {
                    Vec::new()
                },
            });
        }
        Ok(hits)
    }

    /// The sparse ranking: the best `k` by the index's sparse model, as (slot, score).
    fn sparse_ranked(
        &self,
        req: &SearchRequest,
        filtered: Option<&RoaringBitmap>,
    ) -> Result<Vec<(u32, f32)>, IndexError> {
        let bad = |why: &str| Err(IndexError::BadQuery(why.into()));
        if !self.params.is_hybrid() {
            return bad(
                "this index is dense-only: create it with a sparse_model for sparse or hybrid search",
            );
        }
        if req.sparse_indices.len() != req.sparse_values.len() {
            return bad("sparse_indices and sparse_values differ in length");
        }
        if !req.sparse_values.iter().all(|x| x.is_finite()) {
            return bad("NaN or infinity in sparse_values");
        }
        let accept = |s: u32| self.is_live(s) && filtered.is_none_or(|bm| bm.contains(s));
        Ok(self
            .sparse
            .search(
                &req.sparse_indices,
                &req.sparse_values,
                self.params.scoring(),
                req.k,
                &accept,
            )
            .into_iter()
            .map(|h| (h.slot, h.score))
            .collect())
    }

    /// The dense ranking: the best `k` as (slot, similarity), exact or HNSW, re-ranked with
    /// originals when the index keeps them.
    fn dense_ranked(
        &self,
        req: &SearchRequest,
        src: &mut dyn CheckpointBytes,
        filtered: Option<&RoaringBitmap>,
    ) -> Result<Vec<(u32, f32)>, IndexError> {
        self.check_vector("query", &req.vector)?;
        if req.ef > MAX_EF {
            return Err(ParamError::Invalid {
                field: "ef",
                allowed: format!("0..={MAX_EF}"),
                got: req.ef.to_string(),
            }
            .into());
        }
        let ef = if req.ef == 0 {
            params::DEFAULT_EF_SEARCH
        } else {
            req.ef
        }
        .max(req.k);
        let nq = self.normalise(&req.vector);
        let q = self.store.prepare(&nq);
        let rerank = self.can_read_originals(src);
        let want = if rerank {
            rerank_candidates(self.params.precision, req.k, ef)
        } else {
            req.k
        };
        let mut graph_searched = false;
        let found = match filtered {
            Some(bm) if bm.is_empty() => Vec::new(),
            Some(bm)
                if bm.len()
                    < req
                        .prefilter_threshold
                        .unwrap_or(DEFAULT_PREFILTER_THRESHOLD) =>
            {
                self.exact(&q, want, bm.iter())
            }
            Some(bm) => {
                let mut scratch = self.take_scratch();
                let probe = StoreProbe {
                    store: &self.store,
                    q: &q,
                };
                let mut r = self
                    .graph
                    .search(ef, &probe, &|x| bm.contains(x), &mut scratch);
                self.give_scratch(scratch);
                graph_searched = true;
                if r.len() < req.k.min(self.linked_len(bm) as usize) {
                    r = self.exact(&q, want, bm.iter());
                    graph_searched = false;
                }
                r
            }
            None if self.live.len() < EXACT_BELOW => self.exact(&q, want, self.live.iter()),
            None => {
                let mut scratch = self.take_scratch();
                let probe = StoreProbe {
                    store: &self.store,
                    q: &q,
                };
                // Without tombstones every graph node is live: skip the per-node check.
                let mut r = if self.free.is_empty() && self.live.len() as usize == self.slots.len()
                {
                    self.graph.search(ef, &probe, &|_| true, &mut scratch)
                } else {
                    self.graph
                        .search(ef, &probe, &|x| self.is_live(x), &mut scratch)
                };
                self.give_scratch(scratch);
                graph_searched = true;
                if r.len() < req.k.min(self.linked_len(&self.live) as usize) {
                    r = self.exact(&q, want, self.live.iter());
                    graph_searched = false;
                }
                r
            }
        };
        // Vectors a deferred replay has not linked yet are not in the graph: scan them.
        let found = if self.unlinked.is_empty() || !graph_searched {
            found
        } else {
            let pending = match filtered {
                Some(bm) => bm & &self.unlinked,
                None => &self.live & &self.unlinked,
            };
            let mut all = found;
            all.extend(self.exact(&q, want, pending.iter()));
            all.sort_unstable();
            let mut seen = std::collections::HashSet::with_capacity(all.len());
            all.retain(|s| seen.insert(s.slot));
            all.truncate(want);
            all
        };
        let (found, exact) = match (&self.originals, rerank) {
            (Some(o), true) => (self.rerank(o, &nq, found, want, src)?, true),
            _ => (found, false),
        };
        Ok(found
            .into_iter()
            .take(req.k)
            .map(|s| {
                let sim = if exact {
                    self.exact_similarity(s.dist)
                } else {
                    self.store.similarity(s.dist)
                };
                (s.slot, sim)
            })
            .collect())
    }

    /// The best `want` of `found` (best first), re-scored by float32 distance and re-sorted.
    fn rerank(
        &self,
        o: &Originals,
        nq: &[f32],
        mut found: Vec<Scored>,
        want: usize,
        src: &mut dyn CheckpointBytes,
    ) -> Result<Vec<Scored>, IndexError> {
        found.truncate(want);
        let (mut v, mut buf) = (vec![0f32; self.params.dim], Vec::new());
        for s in &mut found {
            o.read(s.slot, src, &mut v, &mut buf)
                .map_err(|e| IndexError::Io(e.to_string()))?;
            s.dist = match self.params.space {
                SpaceType::L2 => crate::kernels::l2sq_f32(nq, &v),
                SpaceType::Cosine | SpaceType::Ip => -crate::kernels::dot_f32(nq, &v),
            };
        }
        found.sort_unstable();
        Ok(found)
    }

    /// Endee's similarity for a float32 distance as [`Index::rerank`] computes it.
    fn exact_similarity(&self, dist: f32) -> f32 {
        match self.params.space {
            SpaceType::L2 => 1.0 - dist,
            SpaceType::Cosine | SpaceType::Ip => -dist,
        }
    }

    /// A page of live ids in slot order (the order they were first written): `limit` of
    /// them after skipping `offset`. For browsing; O(offset + limit).
    pub fn ids_page(&self, offset: usize, limit: usize) -> Vec<String> {
        self.live
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|s| self.slots.id(s).map(String::from))
            .collect()
    }

    /// Every live id (unordered).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.slots.ids().map(|(id, _)| id)
    }
}

/// Weighted reciprocal rank fusion of a dense and a sparse ranking (each best first): a slot
/// scores `w / (c + rank)` from the dense list and `(1 - w) / (c + rank)` from the sparse one
/// (ranks from 1, as Endee's `1 / (c + rank0 + 1)`); the best `k` by that score.
fn fuse(dense: &[(u32, f32)], sparse: &[(u32, f32)], req: &SearchRequest) -> Vec<(u32, f32)> {
    let (w, c) = (req.dense_rrf_weight, req.rrf_rank_constant);
    let mut score: std::collections::HashMap<u32, f32> = std::collections::HashMap::new();
    for (list, weight) in [(dense, w), (sparse, 1.0 - w)] {
        for (rank, &(slot, _)) in list.iter().enumerate() {
            *score.entry(slot).or_default() += weight / (c + rank as f32 + 1.0);
        }
    }
    let mut out: Vec<(u32, f32)> = score.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(req.k);
    out
}
