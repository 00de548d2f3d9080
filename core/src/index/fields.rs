//! A collection's further dense fields (Endee v2: several `vector` fields, `multi_vector`
//! fields). The index's own store and graph hold its first `vector` field; each further field
//! has its own store and graph over the same slots, so ids, meta, filters, deletes and the log
//! stay one. A `multi_vector` field keeps every vector of an object (normalised for cosine),
//! links the pooled vector (mean or max) in its graph, and scores by late interaction: the
//! sum over query vectors of the best similarity among the object's vectors.

use super::{Checks, EXACT_BELOW, GRAPH_SEED, Index, IndexError, SearchRequest, link_into};
use crate::hnsw::{Graph, Scratch};
use crate::params::{ExtraFieldSpec, MAX_MULTI_VECTORS, Pooling, SpaceType};
use crate::record::{FieldsItem, Record};
use crate::vectors::VectorStore;
use roaring::RoaringBitmap;

/// How much wider than `ef` a `multi_vector` field's candidate beam is (see `extra_ranked`).
pub const MULTI_BEAM: usize = 8;

/// One further dense field's data.
#[derive(Debug)]
pub struct ExtraField {
    pub(crate) spec: ExtraFieldSpec,
    pub(crate) store: VectorStore,
    pub(crate) graph: Graph,
    /// A `multi_vector` field's vectors per slot, concatenated (empty for `vector` fields).
    pub(crate) members: Vec<Vec<f32>>,
}

impl ExtraField {
    /// An empty field.
    pub fn new(spec: &ExtraFieldSpec) -> Self {
        Self {
            spec: spec.clone(),
            store: VectorStore::new(spec.dim, spec.space, spec.precision),
            graph: Graph::new(spec.m, spec.ef_construction, GRAPH_SEED, false),
            members: Vec::new(),
        }
    }

    fn is_multi(&self) -> bool {
        self.spec.pooling.is_some()
    }

    fn normalise(&self, v: &[f32]) -> Vec<f32> {
        let mut out = v.to_vec();
        if self.spec.space == SpaceType::Cosine {
            let n = out.iter().map(|x| x * x).sum::<f32>().sqrt();
            if n > 0.0 {
                out.iter_mut().for_each(|x| *x /= n);
            }
        }
        out
    }

    /// The vector its graph links for `vectors` (already normalised): the vector itself, or
    /// the pool of a `multi_vector` field's.
    fn pooled(&self, vectors: &[Vec<f32>]) -> Vec<f32> {
        let d = self.spec.dim;
        match self.spec.pooling {
            None => vectors.first().cloned().unwrap_or_else(|| vec![0.0; d]),
            Some(Pooling::Mean) => {
                let mut out = vec![0.0; d];
                for v in vectors {
                    out.iter_mut().zip(v).for_each(|(o, x)| *o += x);
                }
                let n = vectors.len().max(1) as f32;
                out.iter_mut().for_each(|o| *o /= n);
                self.normalise(&out)
            }
            Some(Pooling::Max) => {
                let mut out = vec![f32::NEG_INFINITY; d];
                for v in vectors {
                    out.iter_mut().zip(v).for_each(|(o, x)| *o = o.max(*x));
                }
                if vectors.is_empty() {
                    out = vec![0.0; d];
                }
                self.normalise(&out)
            }
        }
    }

    /// Endee's similarity of two normalised vectors in this field's space.
    fn sim(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.spec.space {
            SpaceType::L2 => 1.0 - a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>(),
            _ => a.iter().zip(b).map(|(x, y)| x * y).sum(),
        }
    }

    /// Late interaction: for each query vector the best similarity among slot's vectors, summed.
    fn max_sim(&self, queries: &[Vec<f32>], slot: u32) -> f32 {
        let d = self.spec.dim;
        let Some(m) = self.members.get(slot as usize) else {
            return f32::NEG_INFINITY;
        };
        queries
            .iter()
            .map(|q| {
                m.chunks_exact(d)
                    .map(|v| self.sim(q, v))
                    .fold(f32::NEG_INFINITY, f32::max)
            })
            .sum()
    }
}

impl Index {
    /// The names of the further dense fields, in order.
    pub fn extra_field_names(&self) -> Vec<&str> {
        self.extra.iter().map(|f| f.spec.name.as_str()).collect()
    }

    /// Validates a batch of a collection's objects, whatever fields the collection has: a
    /// plain upsert record when it has no further dense fields (the log format every index
    /// had before collections), else [`Index::prepare_upsert_fields`]'s. Changes nothing.
    pub fn prepare_upsert_objects(&self, items: Vec<FieldsItem>) -> Result<Record, IndexError> {
        if self.extra.is_empty() {
            self.prepare_upsert(items.into_iter().map(|f| f.item).collect())
        } else {
            self.prepare_upsert_fields(items)
        }
    }

    /// Validates objects of a collection with further dense fields; returns the record to
    /// log. Changes nothing.
    pub fn prepare_upsert_fields(&self, items: Vec<FieldsItem>) -> Result<Record, IndexError> {
        if items.is_empty() {
            return Err(IndexError::EmptyBatch);
        }
        self.check_fields_items(&items, Checks::Write)?;
        Ok(Record::UpsertFields(items))
    }

    /// Every rule an object with further fields must keep (writes, replay).
    pub(crate) fn check_fields_items(
        &self,
        items: &[FieldsItem],
        checks: Checks,
    ) -> Result<(), IndexError> {
        for f in items {
            self.check_item(&f.item, checks)?;
            let err = |detail: String| IndexError::Fields {
                id: f.item.id.clone(),
                detail,
            };
            if f.extra.len() != self.extra.len() {
                return Err(err(format!(
                    "{} values for {} further fields",
                    f.extra.len(),
                    self.extra.len()
                )));
            }
            for (field, vs) in self.extra.iter().zip(&f.extra) {
                let name = &field.spec.name;
                let (lo, hi) = if field.is_multi() {
                    (1, MAX_MULTI_VECTORS)
                } else {
                    (1, 1)
                };
                if vs.len() < lo || vs.len() > hi {
                    return Err(err(format!(
                        "field {name:?} takes {lo} to {hi} vectors, got {}",
                        vs.len()
                    )));
                }
                for v in vs {
                    if v.len() != field.spec.dim {
                        return Err(err(format!(
                            "field {name:?} has dimension {}, got {}",
                            field.spec.dim,
                            v.len()
                        )));
                    }
                    if !v.iter().all(|x| x.is_finite()) {
                        return Err(err(format!("field {name:?} contains NaN or infinity")));
                    }
                }
            }
        }
        Ok(())
    }

    /// True when `f` has the shape `apply` needs (replay skips what no prepare could make).
    pub(crate) fn fields_fit(&self, f: &FieldsItem) -> bool {
        f.item.vector.len() == self.params.dim
            && !f.item.id.is_empty()
            && f.extra.len() == self.extra.len()
            && self
                .extra
                .iter()
                .zip(&f.extra)
                .all(|(field, vs)| !vs.is_empty() && vs.iter().all(|v| v.len() == field.spec.dim))
    }

    /// Stores and links slot `slot`'s further fields.
    pub(crate) fn set_extra(&mut self, slot: u32, extra: &[Vec<Vec<f32>>], scratch: &mut Scratch) {
        for (field, vs) in self.extra.iter_mut().zip(extra) {
            let normed: Vec<Vec<f32>> = vs.iter().map(|v| field.normalise(v)).collect();
            let pooled = field.pooled(&normed);
            let s = slot as usize;
            // Every slot is stored in every field as it is created: the field's store and graph
            // grow in step with the slot table.
            while field.store.len() < s {
                let gap = field.store.len();
                field.store.set(gap, &vec![0.0; field.spec.dim]);
                field.graph.push_unlinked();
            }
            field.store.set(s, &pooled);
            if field.is_multi() {
                if field.members.len() <= s {
                    field.members.resize(s + 1, Vec::new());
                }
                field.members[s] = normed.concat();
            }
            if field.graph.len() < s {
                while field.graph.len() < s {
                    field.graph.push_unlinked();
                }
            }
            link_into(&mut field.graph, &field.store, slot, scratch);
        }
    }

    /// Slot `slot`'s values in the further fields, as stored (normalised for cosine).
    pub(crate) fn extra_values(&self, slot: u32) -> Vec<Vec<Vec<f32>>> {
        self.extra
            .iter()
            .map(|f| {
                if f.is_multi() {
                    f.members
                        .get(slot as usize)
                        .map(|m| m.chunks_exact(f.spec.dim).map(<[f32]>::to_vec).collect())
                        .unwrap_or_default()
                } else {
                    vec![f.store.get(slot as usize)]
                }
            })
            .collect()
    }

    /// The best `k` of further field `req.field - 1` as (slot, similarity): exact over the
    /// accepted slots when few, else the field's graph searched with the (pooled) query, its
    /// `ef` best rescored exactly (late interaction for a `multi_vector` field).
    pub(crate) fn extra_ranked(
        &self,
        req: &SearchRequest,
        filtered: Option<&RoaringBitmap>,
    ) -> Result<Vec<(u32, f32)>, IndexError> {
        let bad = |why: String| Err(IndexError::BadQuery(why));
        let Some(field) = req.field.checked_sub(1).and_then(|i| self.extra.get(i)) else {
            return bad(format!("no field number {}", req.field));
        };
        let queries: Vec<Vec<f32>> = if field.is_multi() {
            if req.multi.is_empty() || req.multi.len() > MAX_MULTI_VECTORS {
                return bad(format!(
                    "field {:?} is a multi_vector field: query it with 1 to {MAX_MULTI_VECTORS} vectors",
                    field.spec.name
                ));
            }
            req.multi.clone()
        } else {
            vec![req.vector.clone()]
        };
        for q in &queries {
            if q.len() != field.spec.dim || !q.iter().all(|x| x.is_finite()) {
                return bad(format!(
                    "field {:?} takes finite vectors of dimension {}",
                    field.spec.name, field.spec.dim
                ));
            }
        }
        let queries: Vec<Vec<f32>> = queries.iter().map(|q| field.normalise(q)).collect();
        let accept = |s: u32| self.is_live(s) && filtered.is_none_or(|bm| bm.contains(s));
        let accepted = filtered.map_or(self.live.len(), |bm| bm.len());
        let threshold = req
            .prefilter_threshold
            .unwrap_or(EXACT_BELOW)
            .max(EXACT_BELOW);
        let candidates: Vec<u32> = if accepted <= threshold {
            match filtered {
                Some(bm) => bm.iter().filter(|&s| self.is_live(s)).collect(),
                None => self.live.iter().collect(),
            }
        } else {
            // Candidates: the graph searched with the pooled query and, for a multi_vector
            // field, with each query vector too (an object one query vector matches well may
            // pool far from the pooled query); all rescored exactly below.
            let mut probes = vec![field.pooled(&queries)];
            if field.is_multi() && queries.len() > 1 {
                probes.extend(queries.iter().cloned());
            }
            let mut ef = req
                .ef
                .max(req.k)
                .max(super::params::DEFAULT_EF_SEARCH.min(4 * req.k));
            if field.is_multi() {
                // Pooled vectors shortlist loosely: measured on minilm (objects of four
                // sentences, queries of two), beams of 256 / 512 / 1024 found 0.79 / 0.89 /
                // 0.96 of the exact late-interaction top 10.
                ef = (ef * MULTI_BEAM).min(super::MAX_EF);
            }
            let mut scratch = self.take_scratch();
            let mut found = RoaringBitmap::new();
            for p in &probes {
                let q = field.store.prepare(p);
                let probe = super::StoreProbe {
                    store: &field.store,
                    q: &q,
                };
                for s in field.graph.search(ef, &probe, &accept, &mut scratch) {
                    found.insert(s.slot);
                }
            }
            self.give_scratch(scratch);
            found.iter().collect()
        };
        let mut scored: Vec<(u32, f32)> = candidates
            .into_iter()
            .map(|s| {
                let score = if field.is_multi() {
                    field.max_sim(&queries, s)
                } else {
                    field.sim(&queries[0], &field.store.get(s as usize))
                };
                (s, score)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(req.k);
        Ok(scored)
    }
}
