//! Builds a CairnDB index from `shared/data/minilm-50k` (50,000 × 384 real embeddings) per
//! precision and prints build time, queries/s and recall@10 at several `ef` values.
//!
//! `cargo run --release -p cairn-bench --bin minilm -- [DATA_DIR] [precisions...]`

use cairn_core::{Index, IndexParams, Precision, SearchRequest, SpaceType, UpsertItem};
use std::time::Instant;

fn read_vecs(path: &str, float: bool) -> Vec<Vec<f32>> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= b.len() {
        let d = u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        i += 4;
        let row = b[i..i + 4 * d]
            .chunks_exact(4)
            .map(|c| {
                let x = [c[0], c[1], c[2], c[3]];
                if float {
                    f32::from_le_bytes(x)
                } else {
                    i32::from_le_bytes(x) as f32
                }
            })
            .collect();
        out.push(row);
        i += 4 * d;
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .cloned()
        .unwrap_or_else(|| "../shared/data/minilm-50k".into());
    let precisions: Vec<Precision> = if args.len() > 1 {
        args[1..]
            .iter()
            .filter_map(|p| Precision::parse(p).ok())
            .collect()
    } else {
        vec![
            Precision::Float32,
            Precision::Float16,
            Precision::Int16,
            Precision::Int8,
            Precision::Binary,
        ]
    };
    let base = read_vecs(&format!("{dir}/base.fvecs"), true);
    let queries = read_vecs(&format!("{dir}/queries.fvecs"), true);
    let gt = read_vecs(&format!("{dir}/groundtruth.ivecs"), false);
    println!(
        "minilm-50k: {} base × {} dims, {} queries; kernels: {}",
        base.len(),
        base[0].len(),
        queries.len(),
        cairn_core::kernels::backend()
    );
    println!("M=16 ef_construction=200, one thread\n");
    println!("| precision | build s | index MiB | ef | q/s | recall@10 |");
    println!("|---|---|---|---|---|---|");
    for p in precisions {
        let params = IndexParams::new(384, SpaceType::Cosine)
            .with_precision(p)
            .with_hnsw(16, 200);
        let mut ix = Index::new(params).expect("params");
        let t = Instant::now();
        for (c, chunk) in base.chunks(1000).enumerate() {
            let items = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| UpsertItem {
                    id: (c * 1000 + i).to_string(),
                    vector: v.clone(),
                    meta: vec![],
                    filter: String::new(),
                    norm: 1.0,
                    sparse_indices: vec![],
                    sparse_values: vec![],
                })
                .collect();
            let rec = ix.prepare_upsert(items).expect("valid");
            ix.apply(&rec);
        }
        let build = t.elapsed().as_secs_f64();
        let mib = ix.heap_bytes() as f64 / (1 << 20) as f64;
        for ef in [16, 32, 48, 64, 96, 128, 256] {
            let t = Instant::now();
            let mut hit = 0usize;
            for (q, truth) in queries.iter().zip(&gt) {
                let mut req = SearchRequest::new(q.clone(), 10);
                req.ef = ef;
                let res = ix.search(&req).expect("search");
                let want: Vec<usize> = truth[..10].iter().map(|&x| x as usize).collect();
                hit += res
                    .iter()
                    .filter(|h| h.id.parse::<usize>().is_ok_and(|id| want.contains(&id)))
                    .count();
            }
            let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
            let recall = hit as f64 / (queries.len() * 10) as f64;
            println!(
                "| {} | {build:.1} | {mib:.0} | {ef} | {qps:.0} | {recall:.3} |",
                p.as_str()
            );
        }
    }
}
