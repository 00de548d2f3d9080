//! The HNSW graph over dense slots. It stores links only; distances come from the caller
//! (the vector store), so the same graph code serves every precision.

use crate::links::{MAX_PACKED_LINKS, PackedLinks};
use crate::rng::SplitMix64;
use crate::rows::{Column, Rows};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A (distance, slot) pair ordered by distance, for the search heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Internal distance (lower is closer).
    pub dist: f32,
    /// Dense slot.
    pub slot: u32,
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.slot.cmp(&other.slot))
    }
}

/// The graph's view of the vectors: distances from one query to stored slots.
pub trait Probe {
    /// Distance (lower is closer) from the query to `slot`.
    fn dist(&self, slot: u32) -> f32;
    /// Four distances at once; override where the store can do better than four calls.
    fn dist4(&self, slots: [u32; 4]) -> [f32; 4] {
        slots.map(|s| self.dist(s))
    }
    /// Hint that `slot` will be needed soon.
    fn prefetch(&self, _slot: u32) {}
}

/// Distances from the query to every slot in `slots`, into `out`, four at a time. A ragged tail
/// is padded with its last slot (already in cache) so every vector streams through the batched
/// kernel: one call instead of up to three single ones with their memory latency exposed.
#[inline(always)]
fn dists4(p: &impl Probe, slots: &[u32], out: &mut Vec<f32>) {
    out.clear();
    let mut chunks = slots.chunks_exact(4);
    for c in &mut chunks {
        out.extend_from_slice(&p.dist4([c[0], c[1], c[2], c[3]]));
    }
    match *chunks.remainder() {
        [a, b] => out.extend_from_slice(&p.dist4([a, b, b, b])[..2]),
        [a, b, c] => out.extend_from_slice(&p.dist4([a, b, c, c])[..3]),
        ref rest => out.extend(rest.iter().map(|&n| p.dist(n))),
    }
}

/// Reusable per-search buffers: visited marks (a one-byte epoch per slot, so clearing is O(1)
/// and the marks of 100k slots fit in 100 KiB of cache) and the beam's heaps and batches, so a
/// search allocates only its result.
#[derive(Debug, Default)]
pub struct Scratch {
    marks: Vec<u8>,
    epoch: u8,
    cand: BinaryHeap<std::cmp::Reverse<Scored>>,
    top: BinaryHeap<Scored>,
    fresh: Vec<u32>,
    dists: Vec<f32>,
    /// A packed node's decoded links.
    links: Vec<u32>,
}

impl Scratch {
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
        self.cand.clear();
        self.top.clear();
    }
}

/// Marks `slot` in `marks`; true if it was not yet marked in this epoch.
#[inline(always)]
fn first_visit(marks: &mut [u8], epoch: u8, slot: u32) -> bool {
    match marks.get_mut(slot as usize) {
        Some(m) if *m != epoch => {
            *m = epoch;
            true
        }
        _ => false,
    }
}

/// How layer-0 links are stored.
#[derive(Debug, Clone)]
enum Layer0 {
    /// `m0 + 1` u32 per slot, the first is the count: read in place, the fastest to search.
    Rows(Rows<u32>),
    /// Sorted and bit-packed (see [`crate::links`]): about a quarter of the memory, for
    /// indexes whose precision was chosen to save memory.
    Packed(PackedLinks),
}

impl Layer0 {
    /// Appends a slot whose links are `ns`.
    fn push(&mut self, ns: &[u32]) {
        match self {
            Layer0::Rows(rows) => {
                rows.push_iter(std::iter::once(ns.len() as u32).chain(ns.iter().copied()))
            }
            Layer0::Packed(p) => p.push(ns),
        }
    }

    /// Replaces slot `slot`'s links with `ns` (at most the row width).
    fn set(&mut self, slot: u32, ns: &[u32]) {
        match self {
            Layer0::Rows(rows) => {
                let row = rows.row_mut(slot as usize);
                row[0] = ns.len() as u32;
                row[1..1 + ns.len()].copy_from_slice(ns);
            }
            Layer0::Packed(p) => p.set(slot as usize, ns),
        }
    }

    /// Slot `slot`'s links: in place, or decoded into `buf` when packed.
    #[inline(always)]
    fn get<'a>(&'a self, slot: u32, buf: &'a mut Vec<u32>) -> &'a [u32] {
        match self {
            Layer0::Rows(rows) => {
                let row = rows.row(slot as usize);
                let n = (row[0] as usize).min(row.len() - 1);
                &row[1..1 + n]
            }
            Layer0::Packed(p) => {
                p.decode_into(slot as usize, buf);
                buf
            }
        }
    }

    /// Starts loading slot `slot`'s links.
    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        match self {
            Layer0::Rows(rows) => crate::kernels::prefetch(rows.row(slot as usize)),
            Layer0::Packed(p) => crate::kernels::prefetch(p.entry_bytes(slot as usize)),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Layer0::Rows(r) => r.heap_bytes(),
            Layer0::Packed(p) => p.heap_bytes(),
        }
    }
}

/// HNSW links for every slot.
#[derive(Debug, Clone)]
pub struct Graph {
    m: usize,
    m0: usize,
    ef_construction: usize,
    level_mult: f64,
    /// Level of each slot.
    levels: Column<u8>,
    /// Layer-0 links.
    layer0: Layer0,
    /// Where each upper-layer slot's block starts in `upper` (a slot's level never changes,
    /// so blocks are appended once; one flat array instead of a `Vec` per slot saves 24 bytes
    /// and an allocation per vector). Keyed by slot for the ~1/M of slots above layer 0: a
    /// column would spend 4 bytes on every slot; searches look up only the few upper-layer
    /// nodes they pass on the way down.
    upper_at: hashbrown::HashMap<u32, u32>,
    /// Upper layers: per slot, `(m + 1)` u32 per level 1..=level.
    upper: Vec<u32>,
    entry: Option<u32>,
    max_level: u8,
    rng: SplitMix64,
}

impl Graph {
    /// An empty graph with the given `M` and construction beam; `packed` stores layer-0
    /// links packed (when `2 × M` fits the packed layout) instead of in fixed rows.
    pub fn new(m: usize, ef_construction: usize, seed: u64, packed: bool) -> Self {
        Self {
            m,
            m0: 2 * m,
            ef_construction,
            level_mult: 1.0 / (m.max(2) as f64).ln(),
            levels: Column::default(),
            layer0: if packed && 2 * m <= MAX_PACKED_LINKS {
                Layer0::Packed(PackedLinks::default())
            } else {
                Layer0::Rows(Rows::new(2 * m + 1))
            },
            upper_at: hashbrown::HashMap::new(),
            upper: Vec::new(),
            entry: None,
            max_level: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// Number of slots the graph knows.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// True when the graph has no node.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Bytes used by links (for memory reports).
    pub fn heap_bytes(&self) -> usize {
        self.levels.heap_bytes()
            + self.layer0.heap_bytes()
            + self.upper_at.capacity() * (std::mem::size_of::<(u32, u32)>() + 1)
            + self.upper.capacity() * 4
    }

    /// `slot`'s links on `level`: in place, or decoded into `buf` when packed.
    #[inline]
    fn links<'a>(&'a self, slot: u32, level: u8, buf: &'a mut Vec<u32>) -> &'a [u32] {
        if level > 0 {
            return self.upper_links(slot, level);
        }
        self.layer0.get(slot, buf)
    }

    /// `slot`'s links on upper `level` (>= 1).
    #[inline]
    fn upper_links(&self, slot: u32, level: u8) -> &[u32] {
        let base = self.upper_base(slot, level);
        let n = self.upper[base] as usize;
        &self.upper[base + 1..base + 1 + n]
    }

    fn set_links(&mut self, slot: u32, level: u8, ns: &[u32]) {
        if level == 0 {
            let n = ns.len().min(self.m0);
            self.layer0.set(slot, &ns[..n]);
        } else {
            let base = self.upper_base(slot, level);
            let n = ns.len().min(self.m);
            self.upper[base] = n as u32;
            self.upper[base + 1..base + 1 + n].copy_from_slice(&ns[..n]);
        }
    }

    /// Appends slot `slot`'s upper-layer block (nothing for a layer-0-only slot).
    fn push_upper(&mut self, slot: u32, block: &[u32]) {
        if !block.is_empty() {
            self.upper_at.insert(slot, self.upper.len() as u32);
            self.upper.extend_from_slice(block);
        }
    }

    /// Where slot `slot`'s upper-layer block starts in `upper` (0 for a layer-0-only slot,
    /// whose block is empty).
    #[inline]
    fn upper_start(&self, slot: u32) -> usize {
        self.upper_at.get(&slot).copied().unwrap_or(0) as usize
    }

    /// Where slot `slot`'s block for upper `level` (>= 1, at most the slot's level) starts.
    #[inline]
    fn upper_base(&self, slot: u32, level: u8) -> usize {
        self.upper_start(slot) + (level as usize - 1) * (self.m + 1)
    }

    fn cap(&self, level: u8) -> usize {
        if level == 0 { self.m0 } else { self.m }
    }

    fn random_level(&mut self) -> u8 {
        let r = self.rng.next_f64().max(1e-12);
        ((-r.ln() * self.level_mult) as usize).min(32) as u8
    }

    /// Greedy descent on upper `level` (>= 1).
    fn greedy(&self, mut cur: Scored, level: u8, p: &impl Probe) -> Scored {
        let mut dists = Vec::with_capacity(self.m + 4);
        loop {
            let mut changed = false;
            let links = self.upper_links(cur.slot, level);
            dists4(p, links, &mut dists);
            for (&n, &d) in links.iter().zip(&dists) {
                if d < cur.dist {
                    cur = Scored { dist: d, slot: n };
                    changed = true;
                }
            }
            if !changed {
                return cur;
            }
        }
    }

    /// Starts loading `slot`'s link list on `level` (layer 0 only: upper layers are few and hot).
    #[inline(always)]
    fn prefetch_links(&self, slot: u32, level: u8) {
        if level == 0 {
            self.layer0.prefetch(slot);
        }
    }

    /// Beam search on one layer. `accept` decides which nodes may be results; every node is
    /// still traversed. Returns up to `ef` accepted nodes, closest first.
    fn search_layer(
        &self,
        eps: &[Scored],
        ef: usize,
        level: u8,
        p: &impl Probe,
        accept: &impl Fn(u32) -> bool,
        scratch: &mut Scratch,
    ) -> Vec<Scored> {
        scratch.reset(self.len());
        let Scratch {
            marks,
            epoch,
            cand,
            top,
            fresh,
            dists,
            links,
        } = scratch;
        let epoch = *epoch;
        let mut bound = f32::INFINITY;
        for &e in eps {
            first_visit(marks, epoch, e.slot);
            cand.push(std::cmp::Reverse(e));
            if accept(e.slot) {
                top.push(e);
                if top.len() > ef {
                    top.pop();
                }
                if top.len() >= ef {
                    bound = top.peek().map_or(f32::INFINITY, |s| s.dist);
                }
            }
        }
        while let Some(std::cmp::Reverse(c)) = cand.pop() {
            if c.dist > bound && top.len() >= ef {
                break;
            }
            fresh.clear();
            for &n in self.links(c.slot, level, links) {
                if first_visit(marks, epoch, n) {
                    p.prefetch(n);
                    fresh.push(n);
                }
            }
            if let Some(next) = cand.peek() {
                self.prefetch_links(next.0.slot, level);
            }
            dists4(p, fresh, dists);
            for (&n, &d) in fresh.iter().zip(dists.iter()) {
                if top.len() < ef || d < bound {
                    cand.push(std::cmp::Reverse(Scored { dist: d, slot: n }));
                    if accept(n) {
                        top.push(Scored { dist: d, slot: n });
                        if top.len() > ef {
                            top.pop();
                        }
                        if top.len() >= ef {
                            bound = top.peek().map_or(f32::INFINITY, |s| s.dist);
                        }
                    }
                }
            }
        }
        let mut out: Vec<Scored> = top.drain().collect();
        out.sort_unstable();
        out
    }

    /// hnswlib's neighbour heuristic: keep a candidate only if it is closer to the base than
    /// to every neighbour kept so far. `cands` must be sorted closest first.
    fn select(&self, cands: &[Scored], m: usize, pair: &impl Fn(u32, u32) -> f32) -> Vec<u32> {
        let mut kept: Vec<Scored> = Vec::with_capacity(m);
        for &c in cands {
            if kept.len() >= m {
                break;
            }
            if kept.iter().all(|k| pair(c.slot, k.slot) >= c.dist) {
                kept.push(c);
            }
        }
        kept.into_iter().map(|s| s.slot).collect()
    }

    /// Inserts a new slot (`slot == len()`) or relinks an existing one whose vector changed.
    /// `p` measures from the slot's own vector; `pair(a, b)` between stored slots.
    pub fn insert(
        &mut self,
        slot: u32,
        p: &impl Probe,
        pair: &impl Fn(u32, u32) -> f32,
        scratch: &mut Scratch,
    ) {
        let s = slot as usize;
        let level = if s == self.len() {
            let level = self.random_level();
            self.levels.push(level);
            self.layer0.push(&[]);
            self.push_upper(slot, &vec![0; level as usize * (self.m + 1)]);
            level
        } else {
            self.levels[s]
        };
        let Some(entry) = self.entry else {
            self.entry = Some(slot);
            self.max_level = level;
            return;
        };
        if entry == slot && self.len() == 1 {
            return;
        }
        let not_self = |x: u32| x != slot;
        let mut cur = Scored {
            dist: p.dist(entry),
            slot: entry,
        };
        let mut l = self.max_level;
        while l > level {
            cur = self.greedy(cur, l, p);
            l -= 1;
        }
        let mut eps = vec![cur];
        for l in (0..=level.min(self.max_level)).rev() {
            let found = self.search_layer(&eps, self.ef_construction, l, p, &not_self, scratch);
            if found.is_empty() {
                continue;
            }
            let chosen = self.select(&found, self.m.min(self.cap(l)), pair);
            self.set_links(slot, l, &chosen);
            for &n in &chosen {
                let mut ns: Vec<u32> = self.links(n, l, &mut scratch.links).to_vec();
                if ns.contains(&slot) {
                    continue;
                }
                if ns.len() < self.cap(l) {
                    ns.push(slot);
                    self.set_links(n, l, &ns);
                } else {
                    ns.push(slot);
                    let mut scored: Vec<Scored> = ns
                        .iter()
                        .map(|&x| Scored {
                            dist: pair(n, x),
                            slot: x,
                        })
                        .collect();
                    scored.sort();
                    let kept = self.select(&scored, self.cap(l), pair);
                    self.set_links(n, l, &kept);
                }
            }
            eps = found;
        }
        if level > self.max_level {
            self.max_level = level;
            self.entry = Some(slot);
        }
    }

    /// `slot`'s layer-0 links (the graph's pruned edges, not its nearest neighbours).
    pub fn layer0_links(&self, slot: u32) -> Vec<u32> {
        if slot as usize >= self.len() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        self.links(slot, 0, &mut buf).to_vec()
    }

    /// Appends a node for slot `len()` with no links on any level: a slot that holds no
    /// vector now (a rebuild skips deleted slots, whose old links only cost searches). Nodes
    /// are numbered without gaps, so a dead slot still needs one; if it is reused,
    /// [`Graph::insert`] links it on layer 0. A graph with nodes always has an entry, so the
    /// first node becomes it until a linked node of a higher level takes over.
    pub fn push_unlinked(&mut self) {
        let slot = self.len() as u32;
        self.levels.push(0);
        self.layer0.push(&[]);
        self.entry.get_or_insert(slot);
    }

    /// k-NN search: up to `ef.max(k)` accepted nodes, closest first (caller truncates).
    pub fn search(
        &self,
        ef: usize,
        p: &impl Probe,
        accept: &impl Fn(u32) -> bool,
        scratch: &mut Scratch,
    ) -> Vec<Scored> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let mut cur = Scored {
            dist: p.dist(entry),
            slot: entry,
        };
        for l in (1..=self.max_level).rev() {
            cur = self.greedy(cur, l, p);
        }
        self.search_layer(&[cur], ef, 0, p, accept, scratch)
    }
}

/// Graph-wide state saved in a checkpoint header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GraphMeta {
    entry: Option<u32>,
    max_level: u8,
    rng: SplitMix64,
}

impl Graph {
    /// Graph-wide state for a checkpoint.
    pub(crate) fn meta(&self) -> GraphMeta {
        GraphMeta {
            entry: self.entry,
            max_level: self.max_level,
            rng: self.rng.clone(),
        }
    }
    /// Restores graph-wide state after all slots were pushed.
    pub(crate) fn set_meta(&mut self, m: GraphMeta) {
        self.entry = m.entry;
        self.max_level = m.max_level;
        self.rng = m.rng;
    }
    /// Checks what a checkpoint's graph-wide state claims against its nodes, so a crafted file
    /// can't send a search or an insert out of bounds: the entry point exists and sits on the
    /// top level, no node is above it, and every upper-layer link leads to a node that has that
    /// layer (layer-0 links and levels were range-checked as each node was pushed).
    pub(crate) fn validate(&self) -> Result<(), String> {
        let n = self.levels.len();
        match self.entry {
            None if n > 0 => return Err(format!("no entry point for {n} nodes")),
            None if self.max_level > 0 => return Err("a top level without an entry point".into()),
            None => return Ok(()),
            Some(e) if e as usize >= n => {
                return Err(format!("entry point {e} of {n} nodes"));
            }
            Some(e) if self.levels[e as usize] != self.max_level => {
                return Err(format!(
                    "entry point {e} has level {}, the graph {}",
                    self.levels[e as usize], self.max_level
                ));
            }
            Some(_) => {}
        }
        for (s, level) in self.levels.iter().enumerate() {
            if level > self.max_level {
                return Err(format!("node {s} above the top level"));
            }
            for lv in 1..=level {
                if let Some(&t) = self
                    .upper_links(s as u32, lv)
                    .iter()
                    .find(|&&t| self.levels.get(t as usize).is_none_or(|l| l < lv))
                {
                    return Err(format!("node {s} links to {t} on layer {lv} it lacks"));
                }
            }
        }
        Ok(())
    }

    /// Slot `slot`'s level and links as one u32 list: `[level, links0 block, upper block]`.
    pub(crate) fn encode_slot(&self, slot: usize) -> Vec<u32> {
        let up = self.upper_start(slot as u32);
        let up_len = self.levels[slot] as usize * (self.m + 1);
        let mut out = Vec::with_capacity(1 + self.m0 + 1 + up_len);
        out.push(self.levels[slot] as u32);
        let mut buf = Vec::new();
        let ns = self.layer0.get(slot as u32, &mut buf);
        out.push(ns.len() as u32);
        out.extend_from_slice(ns);
        out.resize(1 + self.m0 + 1, 0);
        out.extend_from_slice(&self.upper[up..up + up_len]);
        out
    }
    /// Appends a slot from `encode_slot` output; `None` if malformed.
    pub(crate) fn push_encoded(&mut self, b: &[u32], slots_total: usize) -> Option<()> {
        let level = *b.first()? as usize;
        if level > 32 || b.len() != 1 + self.m0 + 1 + level * (self.m + 1) {
            return None;
        }
        let l0 = &b[1..self.m0 + 2];
        if l0[0] as usize > self.m0 || l0[1..].iter().any(|&x| x as usize >= slots_total) {
            return None;
        }
        let up = &b[self.m0 + 2..];
        for lv in 0..level {
            let blk = &up[lv * (self.m + 1)..(lv + 1) * (self.m + 1)];
            if blk[0] as usize > self.m || blk[1..].iter().any(|&x| x as usize >= slots_total) {
                return None;
            }
        }
        let slot = self.levels.len() as u32;
        self.levels.push(level as u8);
        self.layer0.push(&l0[1..1 + l0[0] as usize]);
        self.push_upper(slot, up);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct L2<'a> {
        data: &'a [Vec<f32>],
        q: &'a [f32],
    }
    impl Probe for L2<'_> {
        fn dist(&self, slot: u32) -> f32 {
            l2(&self.data[slot as usize], self.q)
        }
    }
    fn l2(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    fn build(data: &[Vec<f32>], packed: bool) -> Graph {
        let mut g = Graph::new(8, 64, 1, packed);
        let mut scratch = Scratch::default();
        for (s, v) in data.iter().enumerate() {
            let p = L2 { data, q: v };
            let pair = |a: u32, b: u32| l2(&data[a as usize], &data[b as usize]);
            g.insert(s as u32, &p, &pair, &mut scratch);
        }
        g
    }

    fn neighbour_sets(g: &Graph) -> Vec<Vec<u32>> {
        let mut buf = Vec::new();
        (0..g.len() as u32)
            .map(|s| {
                let mut l = g.links(s, 0, &mut buf).to_vec();
                l.sort_unstable();
                l
            })
            .collect()
    }

    fn recall(g: &Graph, data: &[Vec<f32>], queries: &[Vec<f32>]) -> f64 {
        let mut scratch = Scratch::default();
        let mut hit = 0;
        for q in queries {
            let p = L2 { data, q };
            let mut exact: Vec<Scored> = (0..data.len() as u32)
                .map(|s| Scored {
                    dist: p.dist(s),
                    slot: s,
                })
                .collect();
            exact.sort();
            let got = g.search(32, &p, &|_| true, &mut scratch);
            hit += got[..10]
                .iter()
                .filter(|h| exact[..10].iter().any(|e| e.slot == h.slot))
                .count();
        }
        hit as f64 / (10 * queries.len()) as f64
    }

    #[test]
    fn packed_links_search_like_rows_and_survive_a_checkpoint() {
        let mut rng = SplitMix64::new(5);
        let mut point = || (0..16).map(|_| rng.gaussian()).collect::<Vec<f32>>();
        let data: Vec<Vec<f32>> = (0..3000).map(|_| point()).collect();
        let queries: Vec<Vec<f32>> = (0..100).map(|_| point()).collect();
        let rows = build(&data, false);
        let packed = build(&data, true);
        assert!(matches!(rows.layer0, Layer0::Rows(_)));
        assert!(matches!(packed.layer0, Layer0::Packed(_)));
        let layer0 = |g: &Graph| match &g.layer0 {
            Layer0::Rows(r) => r.heap_bytes(),
            Layer0::Packed(p) => p.heap_bytes(),
        };
        // Built in place (moves, garbage and all), packed links take under half the rows.
        assert!(layer0(&packed) * 2 < layer0(&rows));
        let (r, p) = (
            recall(&rows, &data, &queries),
            recall(&packed, &data, &queries),
        );
        assert!(
            r > 0.9 && p > 0.9 && (r - p).abs() < 0.03,
            "rows {r} packed {p}"
        );
        // Encoded per slot and pushed back, as a checkpoint does, in either layout.
        for into_packed in [false, true] {
            let mut loaded = Graph::new(8, 64, 1, into_packed);
            for s in 0..packed.len() {
                loaded
                    .push_encoded(&packed.encode_slot(s), packed.len())
                    .unwrap();
            }
            loaded.set_meta(packed.meta());
            assert_eq!(neighbour_sets(&loaded), neighbour_sets(&packed));
            assert_eq!(recall(&loaded, &data, &queries), p);
        }
    }
}
