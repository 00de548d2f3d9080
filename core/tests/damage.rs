//! Damage on disk, told apart: a torn tail (a crash mid-append) is cut; corruption in the
//! middle of a log or a checkpoint whose graph-wide state lies is refused loudly.
#![allow(clippy::unwrap_used)]

use cairn_core::checkpoint::{CheckpointEncoder, CheckpointError, read_checkpoint};
use cairn_core::record::{FrameError, Record, UpsertItem, read_log};
use cairn_core::{Index, IndexParams, SearchRequest, SpaceType};

fn item(i: usize) -> UpsertItem {
    UpsertItem {
        id: format!("v{i}"),
        vector: (0..8).map(|d| ((i * 13 + d * 5) % 17) as f32).collect(),
        meta: vec![],
        filter: "{}".into(),
        norm: 1.0,
        sparse_indices: vec![],
        sparse_values: vec![],
    }
}

fn log_of(n: usize) -> (Vec<Record>, Vec<u8>) {
    let recs: Vec<Record> = (0..n).map(|i| Record::Upsert(vec![item(i)])).collect();
    let bytes = recs.iter().flat_map(Record::encode).collect();
    (recs, bytes)
}

#[test]
fn a_bad_frame_with_records_after_it_is_corruption_not_a_torn_tail() {
    let (recs, bytes) = log_of(6);
    // A flipped byte in the second record, four valid records after it.
    let first = recs[0].encode().len();
    let mut bad = bytes.clone();
    bad[first + 12] ^= 1;
    match read_log(&bad[..]) {
        Err(FrameError::Corrupt { offset, trailing }) => {
            assert_eq!(offset as usize, first);
            assert!(trailing as usize > 4 * first);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // A flipped length field in the middle is corruption too.
    let mut bad = bytes.clone();
    bad[first] ^= 0x04;
    assert!(matches!(
        read_log(&bad[..]),
        Err(FrameError::Corrupt { .. })
    ));
    // Zeros after the last whole record (space a crash allocated but never wrote): torn.
    let mut zeros = bytes.clone();
    zeros.extend_from_slice(&[0; 4096]);
    let (r, valid, torn) = read_log(&zeros[..]).unwrap();
    assert_eq!((r.len(), valid as usize, torn), (6, bytes.len(), true));
    // A last record cut short or flipped: torn, the others kept.
    let (r, _, torn) = read_log(&bytes[..bytes.len() - 3]).unwrap();
    assert_eq!((r.len(), torn), (5, true));
}

fn small_index() -> Index {
    let mut ix = Index::new(IndexParams::new(8, SpaceType::L2)).unwrap();
    for i in 0..300 {
        ix.apply(&Record::Upsert(vec![item(i)]));
    }
    ix.apply(&Record::Delete(vec!["v3".into(), "v9".into()]));
    ix
}

/// The checkpoint with its header frame rewritten by `f` (an rmp array: format, version,
/// params, slots, free, graph [entry, max_level, rng], originals).
fn with_header(bytes: &[u8], f: impl FnOnce(&mut Vec<rmpv::Value>)) -> Vec<u8> {
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let mut h = match rmpv::decode::read_value(&mut &bytes[8..8 + len]).unwrap() {
        rmpv::Value::Array(a) => a,
        other => panic!("{other}"),
    };
    f(&mut h);
    let mut payload = Vec::new();
    rmpv::encode::write_value(&mut payload, &rmpv::Value::Array(h)).unwrap();
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&bytes[8 + len..]);
    out
}

fn graph(h: &mut [rmpv::Value], i: usize, v: rmpv::Value) {
    if let rmpv::Value::Array(g) = &mut h[5] {
        g[i] = v;
    }
}

#[test]
fn a_checkpoint_whose_graph_or_free_list_lies_is_refused() {
    let ix = small_index();
    let bytes = CheckpointEncoder::new(&ix).to_vec().unwrap();
    let ok = read_checkpoint(&bytes[..]).unwrap();
    assert_eq!(
        ok.search(&SearchRequest::new(vec![1.0; 8], 5))
            .unwrap()
            .len(),
        5
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("entry", with_header(&bytes, |h| graph(h, 0, 300u32.into()))),
        (
            "no entry",
            with_header(&bytes, |h| graph(h, 0, rmpv::Value::Nil)),
        ),
        ("level", with_header(&bytes, |h| graph(h, 1, 20u32.into()))),
        (
            "free twice",
            with_header(&bytes, |h| {
                h[4] = rmpv::Value::Array(vec![3u32.into(), 9u32.into(), 3u32.into()])
            }),
        ),
        (
            "free live",
            with_header(&bytes, |h| h[4] = rmpv::Value::Array(vec![5u32.into()])),
        ),
    ];
    for (what, b) in cases {
        match read_checkpoint(&b[..]) {
            Err(CheckpointError::Corrupt(m)) => println!("{what}: refused ({m})"),
            Err(e) => panic!("{what}: {e}"),
            Ok(_) => panic!("{what}: loaded"),
        }
    }
}

#[test]
fn data_written_under_older_limits_still_loads_but_new_writes_keep_the_limits() {
    let mut ix = Index::new(IndexParams::new(8, SpaceType::L2)).unwrap();
    let mut long = item(1);
    long.id = "i".repeat(5000);
    long.meta = vec![7; 300 << 10];
    long.filter = format!("{{\"tags\":[\"{}\"]}}", "t".repeat(400));
    // An earlier version accepted it: the record applies and replays, the checkpoint loads.
    let rec = Record::Upsert(vec![long.clone()]);
    assert!(ix.check_record(&rec).is_ok());
    ix.apply(&rec);
    let bytes = CheckpointEncoder::new(&ix).to_vec().unwrap();
    let loaded = read_checkpoint(&bytes[..]).unwrap();
    assert_eq!(loaded.len(), 1);
    let mut replayed = Index::new(IndexParams::new(8, SpaceType::L2)).unwrap();
    let scan = replayed.replay(&rec.encode()[..]).unwrap();
    assert_eq!((scan.records, scan.upserted, replayed.len()), (1, 1, 1));
    // A new write of the same is refused.
    assert!(ix.prepare_upsert(vec![long]).is_err());
}
