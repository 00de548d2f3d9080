//! Sparse and hybrid search on a real corpus: the 50,000 sentences of minilm-50k tokenised
//! into BM25 term vectors. Sparse results equal a brute-force dot product (and BM25 with the
//! server's IDF); hybrid results are the weighted reciprocal-rank fusion of the two rankings;
//! updates, deletes, a checkpoint and a replay keep the postings exact.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use cairn_core::checkpoint::{CheckpointEncoder, read_checkpoint};
use cairn_core::sparse::SparseModel;
use cairn_core::{Filter, Index, IndexParams, Precision, SearchRequest, SpaceType, UpsertItem};
use std::collections::HashMap;

// The client side: tokens and BM25 weights, shared with the sparse benchmark.
#[path = "../../tests/bench/src/bm25_tokens.rs"]
mod bm25_tokens;
use bm25_tokens::{bm25_doc, tokens};

/// The corpus: one sentence per line (50,000 documents, then 1,000 held-out queries).
fn corpus() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/minilm-50k/texts.txt"
    );
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (the team's shared data set)"))
        .lines()
        .map(String::from)
        .collect()
}

fn item(i: usize, sparse: (Vec<u32>, Vec<f32>)) -> UpsertItem {
    UpsertItem {
        id: format!("d{i}"),
        vector: (0..4)
            .map(|d| ((i * 7 + d * 13) % 17) as f32 - 8.0)
            .collect(),
        meta: vec![],
        filter: format!("{{\"g\":{}}}", i % 5),
        norm: 1.0,
        sparse_indices: sparse.0,
        sparse_values: sparse.1,
    }
}

/// Brute force over every live document: (id, score), best first.
fn brute(
    docs: &HashMap<String, (Vec<u32>, Vec<f32>)>,
    q: &[u32],
    idf: &dyn Fn(u32) -> f32,
    k: usize,
) -> Vec<(String, f32)> {
    let mut out: Vec<(String, f32)> = docs
        .iter()
        .filter_map(|(id, (t, w))| {
            let s: f32 = q
                .iter()
                .map(|qt| t.binary_search(qt).map(|i| w[i] * idf(*qt)).unwrap_or(0.0))
                .sum();
            (s != 0.0).then(|| (id.clone(), s))
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

/// One document's true score.
fn brute_one(
    docs: &HashMap<String, (Vec<u32>, Vec<f32>)>,
    id: &str,
    q: &[u32],
    idf: &dyn Fn(u32) -> f32,
) -> f32 {
    let (t, w) = &docs[id];
    q.iter()
        .map(|qt| t.binary_search(qt).map(|i| w[i] * idf(*qt)).unwrap_or(0.0))
        .sum()
}

fn sparse_query(q: &[u32], k: usize) -> SearchRequest {
    let mut req = SearchRequest::new(vec![], k);
    let mut terms = q.to_vec();
    terms.sort_unstable();
    terms.dedup();
    req.sparse_values = vec![1.0; terms.len()];
    req.sparse_indices = terms;
    req
}

/// Exact: the scores equal the best possible ones position by position, and every returned
/// id truly scores what it was returned with (ties at the cut may pick different ids).
fn same_ranking(
    got: &[(String, f32)],
    want: &[(String, f32)],
    true_score: &dyn Fn(&str) -> f32,
    what: &str,
) {
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(close(g.1, w.1), "{what} #{i}: {g:?} vs {w:?}");
        assert!(
            close(true_score(&g.0), g.1),
            "{what} #{i}: {g:?} scores {}",
            true_score(&g.0)
        );
    }
}

#[test]
fn sparse_search_is_exact_on_a_real_corpus_for_both_models() {
    let texts = corpus();
    let (docs_text, queries) = texts.split_at(50_000);
    let toks: Vec<Vec<u32>> = docs_text.iter().map(|t| tokens(t)).collect();
    let avgdl = toks.iter().map(|t| t.len()).sum::<usize>() as f32 / toks.len() as f32;
    for model in [SparseModel::Default, SparseModel::Bm25] {
        let mut p = IndexParams::new(4, SpaceType::L2).with_precision(Precision::Float32);
        p.sparse_model = model;
        let mut ix = Index::new(p).unwrap();
        let mut docs: HashMap<String, (Vec<u32>, Vec<f32>)> = HashMap::new();
        for chunk in (0..toks.len()).collect::<Vec<_>>().chunks(5000) {
            let items: Vec<UpsertItem> = chunk
                .iter()
                .map(|&i| item(i, bm25_doc(&toks[i], avgdl)))
                .collect();
            for it in &items {
                docs.insert(
                    it.id.clone(),
                    (it.sparse_indices.clone(), it.sparse_values.clone()),
                );
            }
            let r = ix.prepare_upsert(items).unwrap();
            ix.apply(&r);
        }
        // Updates and deletes must leave the postings exact.
        let upd: Vec<UpsertItem> = (0..500)
            .map(|i| item(i, bm25_doc(&toks[i + 1000], avgdl)))
            .collect();
        for it in &upd {
            docs.insert(
                it.id.clone(),
                (it.sparse_indices.clone(), it.sparse_values.clone()),
            );
        }
        let r = ix.prepare_upsert(upd).unwrap();
        ix.apply(&r);
        let gone: Vec<String> = (2000..2500).map(|i| format!("d{i}")).collect();
        for id in &gone {
            docs.remove(id);
        }
        let r = ix.prepare_delete(gone).unwrap();
        ix.apply(&r);
        // ... and so must a checkpoint reload (postings are rebuilt from the stored parts).
        let bytes = CheckpointEncoder::new(&ix).to_vec().unwrap();
        let reloaded = read_checkpoint(&bytes[..]).unwrap();

        let n = docs.len() as f64;
        let mut df: HashMap<u32, f64> = HashMap::new();
        for (t, _) in docs.values() {
            for x in t {
                *df.entry(*x).or_default() += 1.0;
            }
        }
        let idf = |t: u32| -> f32 {
            match model {
                SparseModel::Bm25 => {
                    let d = df.get(&t).copied().unwrap_or(0.0);
                    ((n - d + 0.5) / (d + 0.5)).ln_1p() as f32
                }
                _ => 1.0,
            }
        };
        for (qi, q) in queries.iter().take(200).enumerate() {
            let qt = tokens(q);
            let mut terms = qt.clone();
            terms.sort_unstable();
            terms.dedup();
            let want = brute(&docs, &terms, &idf, 10);
            for (name, index) in [("live", &ix), ("reloaded", &reloaded)] {
                let got: Vec<(String, f32)> = index
                    .search(&sparse_query(&qt, 10))
                    .unwrap()
                    .into_iter()
                    .map(|h| (h.id, h.similarity))
                    .collect();
                let score = |id: &str| brute_one(&docs, id, &terms, &idf);
                same_ranking(&got, &want, &score, &format!("{model:?} {name} query {qi}"));
            }
        }
        // A filter applies to sparse search as to dense.
        let mut req = sparse_query(&tokens(&queries[0]), 20);
        req.filter = Some(Filter::parse(&serde_json::json!([{"g": {"$eq": 3}}])).unwrap());
        let hits = ix.search(&req).unwrap();
        assert!(!hits.is_empty());
        assert!(hits.iter().all(|h| h.filter == "{\"g\":3}"), "{hits:?}");
    }
}

#[test]
fn hybrid_search_fuses_dense_and_sparse_by_weighted_reciprocal_rank() {
    let mut p = IndexParams::new(4, SpaceType::L2).with_precision(Precision::Float32);
    p.sparse_model = SparseModel::Default;
    let mut ix = Index::new(p).unwrap();
    // d0 is the dense winner, d1 the sparse winner, d2 second in both.
    let mk = |id: &str, v: [f32; 4], t: Vec<u32>, w: Vec<f32>| UpsertItem {
        id: id.into(),
        vector: v.to_vec(),
        meta: vec![],
        filter: "{}".into(),
        norm: 1.0,
        sparse_indices: t,
        sparse_values: w,
    };
    let items = vec![
        mk("d0", [0.0, 0.0, 0.0, 0.0], vec![1], vec![0.1]),
        mk("d1", [9.0, 9.0, 9.0, 9.0], vec![1], vec![5.0]),
        mk("d2", [1.0, 0.0, 0.0, 0.0], vec![1], vec![2.0]),
    ];
    let r = ix.prepare_upsert(items).unwrap();
    ix.apply(&r);
    let mut req = SearchRequest::new(vec![0.0; 4], 3);
    req.sparse_indices = vec![1];
    req.sparse_values = vec![1.0];
    let ids = |ix: &Index, req: &SearchRequest| -> Vec<(String, f32)> {
        ix.search(req)
            .unwrap()
            .into_iter()
            .map(|h| (h.id, h.similarity))
            .collect()
    };
    // Equal weights: d0 (1st dense, 3rd sparse) and d1 (3rd dense, 1st sparse) score
    // 1/61 + 1/63 each, ahead of d2 (2nd in both: 2/62).
    let got = ids(&ix, &req);
    let order: Vec<&str> = got.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(order, ["d0", "d1", "d2"], "{got:?}");
    assert!(
        (got[0].1 - (0.5 / 61.0 + 0.5 / 63.0)).abs() < 1e-6,
        "{got:?}"
    );
    assert!((got[2].1 - 1.0 / 62.0).abs() < 1e-6, "{got:?}");
    // All weight on dense: the dense order; all on sparse: the sparse order.
    req.dense_rrf_weight = 1.0;
    assert_eq!(ids(&ix, &req)[0].0, "d0");
    req.dense_rrf_weight = 0.0;
    assert_eq!(ids(&ix, &req)[0].0, "d1");
    // Sparse-only and dense-only still answer; a dense-only index refuses a sparse part.
    req.vector = vec![];
    assert_eq!(ids(&ix, &req)[0].0, "d1");
    let dense_only = Index::new(IndexParams::new(4, SpaceType::L2)).unwrap();
    let e = dense_only.search(&req).unwrap_err();
    assert!(e.to_string().contains("dense-only"), "{e}");
    let none = SearchRequest::new(vec![], 3);
    assert!(ix.search(&none).is_err());
}
