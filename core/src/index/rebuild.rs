//! Rebuilding an index's HNSW graph with new `M` / `ef_con` while the index keeps serving.
//!
//! A [`GraphBuilder`] owns the new graph; the index keeps its old one and answers every search
//! and write with it. The builder places slots in order, a batch at a time, reading vectors
//! from the index through a shared borrow (a host holds only a read lock for a batch, so
//! searches run beside it). Writes go on between batches: the index notes every slot it
//! writes while a rebuild watches, and the builder relinks those it had already placed before
//! taking the next ones. The last batch runs with the index borrowed exclusively (writes held
//! for that batch only): it catches up, and [`GraphBuilder::install`] swaps the graphs and the
//! parameters. Dropping a builder before that leaves the old graph untouched.
//!
//! Deleted slots get an empty node (graph nodes are numbered without gaps): the rebuilt graph
//! carries no links to dead vectors, which is what a rebuild after many deletes is for.

use super::{GRAPH_SEED, Index, link_into, packs_links};
use crate::hnsw::Graph;
use crate::vectors::VectorStore;
use roaring::RoaringBitmap;

/// A graph being rebuilt for an index (see the module doc).
#[derive(Debug)]
pub struct GraphBuilder {
    /// Which dense field: 0 the index's own vectors, `i + 1` further field `i`.
    field: usize,
    graph: Graph,
    m: usize,
    ef_construction: usize,
    /// Slots below this are placed in the new graph.
    next: u32,
    /// How much of the index's change list this builder has read.
    seen: usize,
    /// Placed slots written since: relinked before new ones are placed.
    stale: RoaringBitmap,
}

/// Where a rebuild stands, in vectors (slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    /// Slots placed in the new graph.
    pub done: u64,
    /// Slots the index has now.
    pub total: u64,
}

impl Index {
    /// Slots the index has (live and freed): what a rebuild walks.
    pub fn slot_count(&self) -> u32 {
        self.slots.len() as u32
    }

    /// True while a [`GraphBuilder`] watches this index's writes.
    pub fn rebuilding(&self) -> bool {
        self.changes.is_some()
    }

    /// Stops noting writes for a rebuild (it was cancelled or failed).
    pub fn abandon_rebuild(&mut self) {
        self.changes = None;
    }
}

impl GraphBuilder {
    /// Begins rebuilding dense field `field`'s graph (0: the index's own; `i + 1`: further
    /// field `i`, which must exist) with `m` and `ef_construction` (already validated): from
    /// now on the index notes the slots it writes. One rebuild per index at a time.
    pub fn begin(ix: &mut Index, field: usize, m: usize, ef_construction: usize) -> Self {
        ix.changes = Some(Vec::new());
        let packed = field == 0 && packs_links(ix.params.precision);
        Self {
            field,
            graph: Graph::new(m, ef_construction, GRAPH_SEED, packed),
            m,
            ef_construction,
            next: 0,
            seen: 0,
            stale: RoaringBitmap::new(),
        }
    }

    /// Vectors placed so far and the index's slot count now.
    pub fn progress(&self, ix: &Index) -> RebuildProgress {
        RebuildProgress {
            done: u64::from(self.next),
            total: u64::from(ix.slot_count()),
        }
    }

    /// True when every slot of `ix` is placed and none needs relinking: [`GraphBuilder::install`]
    /// then only catches up with writes made since.
    pub fn caught_up(&mut self, ix: &Index) -> bool {
        self.read_changes(ix);
        self.stale.is_empty() && self.next >= ix.slot_count()
    }

    /// Reads the writes `ix` noted since the last call: placed slots become stale.
    fn read_changes(&mut self, ix: &Index) {
        let Some(changes) = &ix.changes else { return };
        for &slot in changes.get(self.seen..).unwrap_or_default() {
            if slot < self.next {
                self.stale.insert(slot);
            }
        }
        self.seen = changes.len();
    }

    /// The store the rebuilt field's vectors are in.
    fn store<'a>(&self, ix: &'a Index) -> &'a VectorStore {
        match self.field {
            0 => &ix.store,
            f => &ix.extra[f - 1].store,
        }
    }

    /// Places or relinks up to `budget` slots of `ix` (stale ones first); returns how many.
    /// Needs only a shared borrow: hosts run it under a read lock, beside searches.
    pub fn step(&mut self, ix: &Index, budget: usize) -> usize {
        self.read_changes(ix);
        let store = self.store(ix);
        let mut scratch = ix.take_scratch();
        let mut n = 0;
        while n < budget {
            if let Some(slot) = self.stale.min() {
                self.stale.remove(slot);
                // A slot written then deleted keeps its node; nothing to relink.
                if ix.is_live(slot) {
                    link_into(&mut self.graph, store, slot, &mut scratch);
                }
            } else if self.next < ix.slot_count() {
                let slot = self.next;
                if ix.is_live(slot) {
                    link_into(&mut self.graph, store, slot, &mut scratch);
                } else {
                    self.graph.push_unlinked();
                }
                self.next += 1;
            } else {
                break;
            }
            n += 1;
        }
        ix.give_scratch(scratch);
        n
    }

    /// Finishes the rebuild with `ix` borrowed exclusively (writes held): places what writes
    /// added since the last step, then swaps in the new graph and the new `M` / `ef_con`.
    /// Every slot the old graph had unlinked (a deferred replay) is linked in the new one.
    pub fn install(mut self, ix: &mut Index) {
        while self.step(ix, usize::MAX) > 0 {}
        match self.field {
            0 => {
                ix.graph = self.graph;
                ix.params.m = self.m;
                ix.params.ef_construction = self.ef_construction;
                ix.unlinked.clear();
            }
            f => {
                let e = &mut ix.extra[f - 1];
                e.graph = self.graph;
                e.spec.m = self.m;
                e.spec.ef_construction = self.ef_construction;
                if let Some(spec) = ix
                    .params
                    .fields
                    .as_mut()
                    .and_then(|n| n.extra.get_mut(f - 1))
                {
                    spec.m = self.m;
                    spec.ef_construction = self.ef_construction;
                }
            }
        }
        ix.changes = None;
    }
}
