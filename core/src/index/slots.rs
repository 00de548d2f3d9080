//! Per-slot payload (id, meta, filter, norm, sparse) packed into one byte arena, and the
//! id → slot lookup over it.
//!
//! Why not a `Vec<struct { String, Vec<u8>, String, .. }>` plus a `HashMap<String, u32>`: that
//! costs about 300 bytes per vector (six heap headers, two copies of every id, allocator
//! slack), which is most of an int8 index's memory. Here a slot costs its encoded bytes
//! (usually a dozen), 8 bytes of offset and a few bytes of hash table, and the id is stored
//! once. Rewritten slots leave garbage that is compacted once it is half the arena.

use crate::rows::Column;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

/// The owned form of one slot's payload: what checkpoints store and load.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SlotData {
    pub id: Option<String>,
    #[serde(with = "serde_bytes")]
    pub meta: Vec<u8>,
    pub filter: String,
    pub norm: f32,
    pub sparse_indices: Vec<u32>,
    pub sparse_values: Vec<f32>,
}

/// A borrowed view of one occupied slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotRef<'a> {
    pub id: &'a str,
    pub meta: &'a [u8],
    pub filter: &'a str,
    pub norm: f32,
    sparse: &'a [u8],
}

impl SlotRef<'_> {
    /// Sparse indices and values, decoded.
    pub fn sparse(&self) -> (Vec<u32>, Vec<f32>) {
        let n = self.sparse.len() / 8;
        let (a, b) = self.sparse.split_at(n * 4);
        let word = |c: &[u8]| [c[0], c[1], c[2], c[3]];
        (
            a.chunks_exact(4)
                .map(|c| u32::from_le_bytes(word(c)))
                .collect(),
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(word(c)))
                .collect(),
        )
    }
}

/// Offset value of an empty (free) slot.
const EMPTY: u64 = u64::MAX;
/// Compaction starts only past this much garbage, so small tables never pay for it.
const MIN_GARBAGE: usize = 1 << 20;

/// The payload of every slot and the id index.
#[derive(Debug, Default)]
pub(crate) struct SlotTable {
    offs: Column<u64>,
    arena: Vec<u8>,
    garbage: usize,
    by_id: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 length at `*at`, advancing it. Only our own encoder writes the arena, so
/// a malformed length cannot occur; it would read as a short field, never panic.
fn get_len(b: &[u8], at: &mut usize) -> usize {
    let mut n = 0usize;
    let mut shift = 0;
    while let Some(&x) = b.get(*at) {
        *at += 1;
        n |= ((x & 0x7f) as usize) << shift;
        if x & 0x80 == 0 || shift > 56 {
            break;
        }
        shift += 7;
    }
    n
}

fn get_bytes<'a>(b: &'a [u8], at: &mut usize) -> &'a [u8] {
    let n = get_len(b, at);
    let from = (*at).min(b.len());
    let to = (from + n).min(b.len());
    *at = to;
    &b[from..to]
}

/// Decodes the record at `off`; returns the view and the record's length in bytes.
fn decode(arena: &[u8], off: u64) -> (SlotRef<'_>, usize) {
    let start = off as usize;
    let mut at = start;
    let id = std::str::from_utf8(get_bytes(arena, &mut at)).unwrap_or("");
    let meta = get_bytes(arena, &mut at);
    // "{}" (no filter, the common case) is stored as nothing.
    let filter = match std::str::from_utf8(get_bytes(arena, &mut at)) {
        Ok("") | Err(_) => "{}",
        Ok(f) => f,
    };
    let norm = arena
        .get(at..at + 4)
        .map_or(0.0, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    at += 4;
    let sparse = get_bytes(arena, &mut at);
    let r = SlotRef {
        id,
        meta,
        filter,
        norm,
        sparse,
    };
    (r, at - start)
}

fn id_at<'a>(offs: &Column<u64>, arena: &'a [u8], slot: u32) -> &'a str {
    match offs.get(slot as usize) {
        Some(o) if o != EMPTY => decode(arena, o).0.id,
        _ => "",
    }
}

impl SlotTable {
    /// Number of slots, occupied or free.
    pub fn len(&self) -> usize {
        self.offs.len()
    }

    /// True when there is no slot at all.
    pub fn is_empty(&self) -> bool {
        self.offs.is_empty()
    }

    /// Number of occupied slots (= live ids).
    pub fn live(&self) -> usize {
        self.by_id.len()
    }

    /// The slot holding `id`.
    pub fn find(&self, id: &str) -> Option<u32> {
        let h = self.hasher.hash_one(id);
        let (offs, arena) = (&self.offs, &self.arena);
        self.by_id
            .find(h, |&s| id_at(offs, arena, s) == id)
            .copied()
    }

    /// True when `id` is stored.
    pub fn contains(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    /// The payload of an occupied slot.
    pub fn get(&self, slot: u32) -> Option<SlotRef<'_>> {
        match self.offs.get(slot as usize) {
            Some(o) if o != EMPTY => Some(decode(&self.arena, o).0),
            _ => None,
        }
    }

    /// The id in an occupied slot.
    pub fn id(&self, slot: u32) -> Option<&str> {
        self.get(slot).map(|r| r.id)
    }

    /// Every live id with its slot, in slot order.
    pub fn ids(&self) -> impl Iterator<Item = (&str, u32)> {
        self.offs
            .iter()
            .enumerate()
            .filter(|(_, o)| *o != EMPTY)
            .map(|(s, o)| (decode(&self.arena, o).0.id, s as u32))
    }

    /// The owned payload of a slot (an empty `SlotData` for a free one).
    pub fn to_data(&self, slot: u32) -> SlotData {
        match self.get(slot) {
            None => SlotData::default(),
            Some(r) => {
                let (sparse_indices, sparse_values) = r.sparse();
                SlotData {
                    id: Some(r.id.to_string()),
                    meta: r.meta.to_vec(),
                    filter: r.filter.to_string(),
                    norm: r.norm,
                    sparse_indices,
                    sparse_values,
                }
            }
        }
    }

    /// Stores a payload at `slot` (`slot <= len()`; equal appends), replacing what was there.
    /// The caller keeps ids unique: `id` must not be stored in another slot.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        slot: u32,
        id: &str,
        meta: &[u8],
        filter: &str,
        norm: f32,
        sparse_indices: &[u32],
        sparse_values: &[f32],
    ) {
        self.clear(slot);
        let off = self.arena.len() as u64;
        let a = &mut self.arena;
        put_len(a, id.len());
        a.extend_from_slice(id.as_bytes());
        put_len(a, meta.len());
        a.extend_from_slice(meta);
        let filter = if filter == "{}" { "" } else { filter };
        put_len(a, filter.len());
        a.extend_from_slice(filter.as_bytes());
        a.extend_from_slice(&norm.to_le_bytes());
        let n = sparse_indices.len().min(sparse_values.len());
        put_len(a, n * 8);
        for i in &sparse_indices[..n] {
            a.extend_from_slice(&i.to_le_bytes());
        }
        for v in &sparse_values[..n] {
            a.extend_from_slice(&v.to_le_bytes());
        }
        let s = slot as usize;
        if s == self.offs.len() {
            self.offs.push(off);
        } else {
            self.offs[s] = off;
        }
        let h = self.hasher.hash_one(id);
        let (offs, arena, hasher) = (&self.offs, &self.arena, &self.hasher);
        self.by_id
            .insert_unique(h, slot, |&x| hasher.hash_one(id_at(offs, arena, x)));
        self.maybe_compact();
    }

    /// Replaces the filter of an occupied slot; false if the slot is free.
    pub fn set_filter(&mut self, slot: u32, filter: &str) -> bool {
        let Some(r) = self.get(slot) else {
            return false;
        };
        let (sparse_indices, sparse_values) = r.sparse();
        let (id, meta, norm) = (r.id.to_string(), r.meta.to_vec(), r.norm);
        self.put(
            slot,
            &id,
            &meta,
            filter,
            norm,
            &sparse_indices,
            &sparse_values,
        );
        true
    }

    /// Empties a slot (its id is forgotten). No-op on a free slot.
    pub fn clear(&mut self, slot: u32) {
        let Some(off) = self.offs.get(slot as usize) else {
            return;
        };
        if off == EMPTY {
            return;
        }
        let (r, len) = decode(&self.arena, off);
        let h = self.hasher.hash_one(r.id);
        if let Ok(e) = self.by_id.find_entry(h, |&s| s == slot) {
            e.remove();
        }
        self.offs[slot as usize] = EMPTY;
        self.garbage += len;
    }

    /// Appends an empty slot (checkpoint loading of a free slot).
    pub fn push_empty(&mut self) {
        self.offs.push(EMPTY);
    }

    fn maybe_compact(&mut self) {
        if self.garbage < MIN_GARBAGE || self.garbage * 2 < self.arena.len() {
            return;
        }
        let mut fresh = Vec::with_capacity(self.arena.len() - self.garbage);
        for s in 0..self.offs.len() {
            let o = self.offs[s];
            if o == EMPTY {
                continue;
            }
            let (_, len) = decode(&self.arena, o);
            self.offs[s] = fresh.len() as u64;
            fresh.extend_from_slice(&self.arena[o as usize..o as usize + len]);
        }
        self.arena = fresh;
        self.garbage = 0;
    }

    /// Makes room for `ids` more ids in the id table at once (a loader that knows the count
    /// avoids rehashing through every doubling).
    pub fn reserve_ids(&mut self, ids: usize) {
        let (offs, arena, hasher) = (&self.offs, &self.arena, &self.hasher);
        self.by_id
            .reserve(ids, |&x| hasher.hash_one(id_at(offs, arena, x)));
    }

    /// Gives back the arena's spare capacity (after a load: growth by doubling left up to
    /// half of it unused).
    pub fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
    }

    /// Heap bytes held (for memory reports).
    pub fn heap_bytes(&self) -> usize {
        self.offs.heap_bytes()
            + self.arena.capacity()
            + self.by_id.capacity() * (std::mem::size_of::<u32>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_find_replace_clear_and_compact() {
        let mut t = SlotTable::default();
        for i in 0..20_000u32 {
            let id = format!("id-{i}");
            t.put(i, &id, b"m", "{\"a\":1}", i as f32, &[i], &[0.5]);
        }
        assert_eq!(t.live(), 20_000);
        assert_eq!(t.find("id-123"), Some(123));
        let r = t.get(123).unwrap();
        assert_eq!(
            (r.id, r.meta, r.filter, r.norm),
            ("id-123", &b"m"[..], "{\"a\":1}", 123.0)
        );
        assert_eq!(r.sparse(), (vec![123], vec![0.5]));
        // Rewrite every slot many times: garbage must be compacted, lookups stay right.
        for round in 0..40 {
            for i in 0..20_000u32 {
                assert!(t.set_filter(i, &format!("{{\"r\":{round}}}")));
            }
        }
        assert!(
            t.heap_bytes() < 8 << 20,
            "arena compacted: {}",
            t.heap_bytes()
        );
        assert_eq!(t.get(7).unwrap().filter, "{\"r\":39}");
        assert_eq!(t.find("id-19999"), Some(19_999));
        t.clear(5);
        assert_eq!(t.find("id-5"), None);
        assert!(t.get(5).is_none());
        assert!(!t.set_filter(5, "{}"));
        t.put(5, "other", b"", "{}", 1.0, &[], &[]);
        assert_eq!(t.find("other"), Some(5));
        assert_eq!(t.live(), 20_000);
        assert_eq!(t.ids().count(), 20_000);
        assert_eq!(t.to_data(5).id.as_deref(), Some("other"));
        assert_eq!(t.to_data(99_999), SlotData::default());
    }

    #[test]
    fn long_fields_round_trip() {
        let mut t = SlotTable::default();
        let meta = vec![7u8; 100_000];
        let filter = format!("{{\"k\":\"{}\"}}", "x".repeat(300));
        t.put(0, "é-id", &meta, &filter, -2.5, &[], &[]);
        let d = t.to_data(0);
        assert_eq!((d.meta, d.filter, d.norm), (meta, filter, -2.5));
    }
}
