//! Layer-0 HNSW links, packed: each node's neighbour slots sorted, stored as the first slot
//! and bit-packed gaps of one width, in per-block byte arenas.
//!
//! Why: fixed rows cost `4 × (2M + 1)` bytes per node (132 at M = 16) whatever the degree,
//! while heuristic pruning leaves ~17–22 neighbours per node, whose sorted gaps need ~10–11
//! bits each. Packed, a node's links take ~30–40 bytes plus a 4-byte offset: for an int8
//! index of 128-d vectors that is the difference between links costing as much as the
//! vector and costing a third of it. The price is decoding ~20 gaps per expanded node, a few
//! nanoseconds next to the ~20 distances computed for it.
//!
//! Arenas are per 1,024 slots, so a node that outgrows its space moves within its block and
//! compacting the block's garbage copies tens of KiB, never the whole graph under the
//! writer's lock.

const BLOCK_SHIFT: u32 = 10;
const BLOCK: usize = 1 << BLOCK_SHIFT;
/// Entry header: capacity in 4-byte units, count, gap width in bits, first slot (u32 LE).
const HEAD: usize = 7;
/// Zero bytes kept after the last entry so decoding can always read a whole u64 window.
const PAD: usize = 8;
/// Spare bytes given to an entry that had to move because it grew: room for two or three more
/// links before the next move. Compaction takes it back.
const GROW_SLACK: usize = 4;
/// A block is compacted once its garbage exceeds an eighth of its bytes (and this many), so
/// an index built in place holds little more than one loaded from a checkpoint.
const MIN_GARBAGE: usize = 256;
/// Offset of a slot whose links were never set.
const NONE: u32 = u32::MAX;

/// Largest count of links per node this layout stores (the count and the capacity, in
/// 4-byte units, are one byte each).
pub(crate) const MAX_PACKED_LINKS: usize = 250;

/// Packed layer-0 link lists for slots `0..len()`.
#[derive(Debug, Clone, Default)]
pub(crate) struct PackedLinks {
    len: usize,
    blocks: Vec<Block>,
    /// Reused encoding buffers.
    sorted: Vec<u32>,
    entry: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct Block {
    /// Byte offset of each slot's entry in `bytes`.
    offs: Vec<u32>,
    /// Entries, then [`PAD`] zero bytes.
    bytes: Vec<u8>,
    /// Bytes of entries abandoned by moves.
    garbage: usize,
}

/// Reads the u64 (little endian) at `at`; bytes past the end read as zero.
#[inline(always)]
fn window(bytes: &[u8], at: usize) -> u64 {
    match bytes
        .get(at..at + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        Some(w) => u64::from_le_bytes(w),
        None => {
            let mut w = [0u8; 8];
            let tail = bytes.get(at..).unwrap_or(&[]);
            w[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(w)
        }
    }
}

/// Bytes an entry of `n` gaps-encoded links of width `w` needs (header included).
fn encoded_len(n: usize, w: u32) -> usize {
    HEAD + ((n.saturating_sub(1)) * w as usize).div_ceil(8)
}

/// Capacity byte for an entry of `len` bytes plus `slack`, rounded up to 4-byte units.
fn cap_units(len: usize, slack: usize) -> u8 {
    (len + slack).div_ceil(4).min(u8::MAX as usize) as u8
}

impl PackedLinks {
    /// Heap bytes held (for memory reports).
    pub fn heap_bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.offs.capacity() * 4 + b.bytes.capacity())
            .sum::<usize>()
            + self.blocks.capacity() * std::mem::size_of::<Block>()
    }

    /// Appends a slot with the links `ns` (at most [`MAX_PACKED_LINKS`]), stored tight: this
    /// is the load path, and a block that fills up gives back its spare capacity.
    pub fn push(&mut self, ns: &[u32]) {
        if self.len == self.blocks.len() << BLOCK_SHIFT {
            if let Some(last) = self.blocks.last_mut() {
                last.bytes.shrink_to_fit();
            }
            self.blocks.push(Block {
                offs: Vec::with_capacity(BLOCK),
                bytes: vec![0; PAD],
                garbage: 0,
            });
        }
        self.len += 1;
        if let Some(b) = self.blocks.last_mut() {
            b.offs.push(NONE);
        }
        self.set_with_slack(self.len - 1, ns, 0);
    }

    /// Replaces slot `slot`'s links with `ns` (at most [`MAX_PACKED_LINKS`]; the caller keeps
    /// `slot < len()`).
    pub fn set(&mut self, slot: usize, ns: &[u32]) {
        self.set_with_slack(slot, ns, GROW_SLACK);
    }

    fn set_with_slack(&mut self, slot: usize, ns: &[u32], slack: usize) {
        self.encode(ns);
        let entry = &mut self.entry;
        let b = &mut self.blocks[slot >> BLOCK_SHIFT];
        let i = slot & (BLOCK - 1);
        let off = b.offs[i];
        if off != NONE {
            let o = off as usize;
            let cap = b.bytes[o] as usize * 4;
            if entry.len() <= cap {
                entry[0] = b.bytes[o];
                b.bytes[o..o + entry.len()].copy_from_slice(entry);
                return;
            }
            b.garbage += cap;
        }
        let cap = cap_units(entry.len(), slack);
        entry[0] = cap;
        entry.resize(cap as usize * 4, 0);
        let at = b.bytes.len() - PAD;
        let spare = b.bytes.capacity() - b.bytes.len();
        if spare < entry.len() {
            // Grow by an eighth, not by doubling: a block's arena is most of its memory.
            b.bytes.reserve_exact(entry.len().max(b.bytes.len() / 8));
        }
        b.bytes.truncate(at);
        b.bytes.extend_from_slice(entry);
        b.bytes.extend_from_slice(&[0; PAD]);
        b.offs[i] = at as u32;
        if b.garbage >= MIN_GARBAGE && b.garbage * 8 > b.bytes.len() {
            b.compact();
        }
    }

    /// Encodes `ns` into `self.entry` (capacity byte left 0).
    fn encode(&mut self, ns: &[u32]) {
        let n = ns.len().min(MAX_PACKED_LINKS);
        self.sorted.clear();
        self.sorted.extend_from_slice(&ns[..n]);
        self.sorted.sort_unstable();
        let s = &self.sorted;
        let max_gap = s.windows(2).map(|p| p[1] - p[0]).max().unwrap_or(0);
        let w = u32::BITS - max_gap.leading_zeros();
        self.entry.clear();
        self.entry.resize(encoded_len(n, w), 0);
        self.entry[1] = n as u8;
        self.entry[2] = w as u8;
        if let Some(&first) = s.first() {
            self.entry[3..HEAD].copy_from_slice(&first.to_le_bytes());
        }
        let bits = &mut self.entry[HEAD..];
        for (i, p) in s.windows(2).enumerate() {
            let gap = (p[1] - p[0]) as u64;
            let bp = i * w as usize;
            let v = gap << (bp & 7);
            for (k, byte) in bits[bp / 8..].iter_mut().take(5).enumerate() {
                *byte |= (v >> (8 * k)) as u8;
            }
        }
    }

    /// Slot `slot`'s links, ascending, into `out` (cleared first).
    #[inline]
    pub fn decode_into(&self, slot: usize, out: &mut Vec<u32>) {
        out.clear();
        let b = &self.blocks[slot >> BLOCK_SHIFT];
        let off = b.offs[slot & (BLOCK - 1)];
        if off == NONE {
            return;
        }
        let e = &b.bytes[off as usize..];
        let n = e[1] as usize;
        if n == 0 {
            return;
        }
        let w = e[2] as u32;
        let mut x = u32::from_le_bytes([e[3], e[4], e[5], e[6]]);
        out.push(x);
        let bits = &e[HEAD..];
        let mask = (1u64 << w) - 1;
        let mut bp = 0usize;
        // `extend` over a counted range reserves once: no capacity check per link.
        out.extend((1..n).map(|_| {
            let gap = (window(bits, bp >> 3) >> (bp & 7)) & mask;
            bp += w as usize;
            x = x.wrapping_add(gap as u32);
            x
        }));
    }

    /// The first bytes of slot `slot`'s entry, for a prefetch hint.
    #[inline(always)]
    pub fn entry_bytes(&self, slot: usize) -> &[u8] {
        let b = &self.blocks[slot >> BLOCK_SHIFT];
        match b.offs[slot & (BLOCK - 1)] {
            NONE => &[],
            o => b.bytes.get(o as usize..).unwrap_or(&[]),
        }
    }
}

impl Block {
    /// Rewrites the live entries back to back, each in the space it needs now.
    fn compact(&mut self) {
        let live = self.bytes.len() - self.garbage;
        let mut fresh = Vec::with_capacity(live + live / 8);
        for off in self.offs.iter_mut().filter(|o| **o != NONE) {
            let o = *off as usize;
            let e = &self.bytes[o..];
            let cap = cap_units(encoded_len(e[1] as usize, e[2] as u32), 0);
            *off = fresh.len() as u32;
            fresh.push(cap);
            fresh.extend_from_slice(&e[1..cap as usize * 4]);
        }
        fresh.extend_from_slice(&[0; PAD]);
        self.bytes = fresh;
        self.garbage = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn decoded(p: &PackedLinks, slot: usize) -> Vec<u32> {
        let mut v = Vec::new();
        p.decode_into(slot, &mut v);
        v
    }

    fn sorted(mut v: Vec<u32>) -> Vec<u32> {
        v.sort_unstable();
        v
    }

    #[test]
    fn round_trips_every_width_and_count() {
        let mut p = PackedLinks::default();
        let mut want = Vec::new();
        let mut rng = SplitMix64::new(7);
        for s in 0..5_000usize {
            let n = s % 40;
            let spread = 1u64 << (s % 33);
            let ns: Vec<u32> = (0..n)
                .map(|_| (rng.next_u64() % spread.min(u32::MAX as u64 + 1)) as u32)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            p.push(&ns);
            want.push(ns);
        }
        p.push(&[0, u32::MAX]);
        want.push(vec![0, u32::MAX]);
        for (s, w) in want.iter().enumerate() {
            assert_eq!(&decoded(&p, s), w, "slot {s}");
        }
    }

    #[test]
    fn updates_grow_shrink_move_and_compact_without_losing_a_list() {
        let mut p = PackedLinks::default();
        let slots = 3 * BLOCK + 17;
        let mut want: Vec<Vec<u32>> = vec![Vec::new(); slots];
        for _ in 0..slots {
            p.push(&[]);
        }
        let mut rng = SplitMix64::new(11);
        let mut peak_garbage = 0;
        for round in 0..40_000 {
            let s = (rng.next_u64() % slots as u64) as usize;
            let l = &mut want[s];
            if l.len() < 32 && round % 5 != 0 {
                l.push((rng.next_u64() % 1_000_000) as u32);
            } else {
                l.truncate(l.len() / 2);
            }
            p.set(s, l);
            peak_garbage = peak_garbage.max(p.blocks.iter().map(|b| b.garbage).max().unwrap());
        }
        for (s, w) in want.iter().enumerate() {
            assert_eq!(decoded(&p, s), sorted(w.clone()), "slot {s}");
        }
        for b in &p.blocks {
            assert!(b.garbage * 8 <= b.bytes.len() || b.garbage < MIN_GARBAGE);
            assert_eq!(&b.bytes[b.bytes.len() - PAD..], &[0; PAD]);
        }
        assert!(peak_garbage > 0, "the test never moved an entry");
    }

    #[test]
    fn packs_typical_lists_in_a_quarter_of_fixed_rows() {
        let mut p = PackedLinks::default();
        let mut rng = SplitMix64::new(3);
        let n = 20 * BLOCK;
        for _ in 0..n {
            let ns: Vec<u32> = (0..20)
                .map(|_| (rng.next_u64() % n as u64) as u32)
                .collect();
            p.push(&ns);
        }
        let per_node = p.heap_bytes() as f64 / n as f64;
        assert!(per_node < 132.0 / 3.0, "{per_node} bytes per node");
    }
}
