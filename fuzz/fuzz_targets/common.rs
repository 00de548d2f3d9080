//! Shared by the fuzz targets: a small live index to run decoded requests against, and
//! re-framing so mutations reach the decoders behind a CRC.
#![allow(dead_code)]

use cairn_core::record::{Record, UpsertItem};
use cairn_core::{Index, IndexParams, Precision, SpaceType};

/// One index built once per fuzzing process, for targets that only read (search, filter,
/// prepare): building an index per input would dominate their time.
pub fn shared() -> &'static Index {
    static IX: std::sync::OnceLock<Index> = std::sync::OnceLock::new();
    IX.get_or_init(|| small_index(Precision::Int8))
}

/// A hybrid v2 collection's params: vector field `e` (4-d), sparse field `k`, and a 3-d
/// `multi_vector` field `m`.
pub fn collection_params() -> IndexParams {
    let mut p = IndexParams::new(4, SpaceType::Cosine);
    p.sparse_model = cairn_core::sparse::SparseModel::Bm25;
    p.fields = Some(cairn_core::params::FieldNames {
        vector: Some("e".into()),
        sparse: Some("k".into()),
        extra: vec![cairn_core::params::ExtraFieldSpec {
            name: "m".into(),
            dim: 3,
            space: SpaceType::Cosine,
            precision: Precision::Float32,
            m: 4,
            ef_construction: 16,
            pooling: Some(cairn_core::params::Pooling::Max),
        }],
    });
    p
}

/// A 4-d index of 24 vectors with filters, in the given precision (small: most targets build
/// one per input).
pub fn small_index(precision: Precision) -> Index {
    let p = IndexParams::new(4, SpaceType::Cosine).with_precision(precision);
    let mut ix = Index::new(p).expect("params");
    let items = (0..24)
        .map(|i| UpsertItem {
            id: format!("v{i}"),
            vector: (0..4)
                .map(|d| ((i * 7 + d * 3) % 11) as f32 - 5.0)
                .collect(),
            meta: vec![],
            filter: format!(
                "{{\"g\":{},\"tag\":\"t{}\",\"ok\":{}}}",
                i % 5,
                i % 3,
                i % 2 == 0
            ),
            norm: 1.0,
            sparse_indices: vec![],
            sparse_values: vec![],
        })
        .collect();
    ix.apply(&Record::Upsert(items));
    ix.apply(&Record::Delete(vec!["v3".into(), "v10".into()]));
    ix
}

/// Reads `data` as frames (`[len u32][crc u32][payload]`) and rewrites every CRC to match its
/// payload, so the fuzzer's mutations get past the checksum into the payload decoders.
pub fn reframe(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut at = 0;
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let end = (at + 8).saturating_add(len).min(data.len());
        cairn_core::record::frame_into(&data[at + 8..end], &mut out);
        at = end;
    }
    out
}

/// Exercises a loaded index the way a server would next: search, insert, delete, checkpoint.
pub fn use_index(ix: &mut Index) {
    let dim = ix.params().dim;
    let mut req = cairn_core::SearchRequest::new(vec![0.5; dim], 5);
    let _ = ix.search(&req);
    req.ef = 3;
    let _ = ix.search(&req);
    let item = UpsertItem {
        id: "fuzz-new".into(),
        vector: vec![0.25; dim],
        meta: vec![],
        filter: "{}".into(),
        norm: 1.0,
        sparse_indices: vec![],
        sparse_values: vec![],
    };
    if let Ok(rec) = ix.prepare_upsert(vec![item]) {
        ix.apply(&rec);
    }
    let _ = ix.search(&req);
    let first = ix.ids().next().map(String::from);
    if let Some(id) = first {
        ix.apply(&Record::Delete(vec![id]));
    }
    let _ = cairn_core::checkpoint::CheckpointEncoder::new(ix).to_vec();
}
