//! Index behaviour: writes, search quality, filters, checkpoints and log replay.
#![allow(clippy::unwrap_used, clippy::needless_range_loop)] // tests unwrap: a failure is the assertion

use cairn_core::checkpoint::{CheckpointEncoder, read_checkpoint};
use cairn_core::record::read_log;
use cairn_core::rng::SplitMix64;
use cairn_core::{
    Filter, Index, IndexError, IndexParams, Precision, Record, SearchRequest, SpaceType, UpsertItem,
};
use serde_json::json;

fn item(id: &str, v: Vec<f32>, filter: serde_json::Value) -> UpsertItem {
    UpsertItem {
        id: id.into(),
        vector: v,
        meta: id.as_bytes().to_vec(),
        filter: filter.to_string(),
        norm: 1.0,
        sparse_indices: vec![],
        sparse_values: vec![],
    }
}

fn write(ix: &mut Index, items: Vec<UpsertItem>) -> Record {
    let r = ix.prepare_upsert(items).expect("valid");
    ix.apply(&r);
    r
}

/// Clustered gaussian data: realistic neighbourhoods, unlike uniform noise.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = SplitMix64::new(seed);
    let centers: Vec<Vec<f32>> = (0..32)
        .map(|_| (0..dim).map(|_| r.gaussian()).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centers[r.below(32) as usize];
            c.iter().map(|x| x + 0.35 * r.gaussian()).collect()
        })
        .collect()
}

fn brute(data: &[Vec<f32>], q: &[f32], k: usize, space: SpaceType) -> Vec<usize> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-10);
    let mut d: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let dot: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
            let s = match space {
                SpaceType::L2 => v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
                SpaceType::Ip => -dot,
                SpaceType::Cosine => -dot / (norm(v) * norm(q)),
            };
            (s, i)
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0));
    d.into_iter().take(k).map(|x| x.1).collect()
}

#[test]
fn upsert_replace_delete_reuse() {
    let mut ix =
        Index::new(IndexParams::new(4, SpaceType::L2).with_precision(Precision::Float32)).unwrap();
    write(
        &mut ix,
        vec![
            item("a", vec![1.0, 0.0, 0.0, 0.0], json!({"c": "x"})),
            item("b", vec![0.0, 1.0, 0.0, 0.0], json!({})),
        ],
    );
    assert_eq!(ix.len(), 2);
    let got = ix.get("a").unwrap();
    assert_eq!(got.vector, vec![1.0, 0.0, 0.0, 0.0]);
    assert_eq!(got.meta, b"a");
    // replace: vector, meta and filter all change
    let mut a2 = item("a", vec![0.0, 0.0, 2.0, 0.0], json!({"c": "y"}));
    a2.meta = b"new".to_vec();
    write(&mut ix, vec![a2]);
    assert_eq!(ix.len(), 2);
    let got = ix.get("a").unwrap();
    assert_eq!(got.vector, vec![0.0, 0.0, 2.0, 0.0]);
    assert_eq!(got.meta, b"new");
    assert_eq!(got.filter, json!({"c": "y"}).to_string());
    let f = Filter::parse(&json!([{"c": {"$eq": "x"}}])).unwrap();
    assert_eq!(ix.count_matching(&f), 0);
    // delete then reuse the slot
    let r = ix.prepare_delete(vec!["b".into()]).unwrap();
    assert_eq!(ix.apply(&r), 1);
    assert!(ix.get("b").is_none());
    assert_eq!(
        ix.prepare_delete(vec!["b".into()]),
        Err(IndexError::NotFound("b".into()))
    );
    write(
        &mut ix,
        vec![item("c", vec![0.0, 0.0, 0.0, 3.0], json!({}))],
    );
    assert_eq!(ix.len(), 2);
    let hits = ix
        .search(&SearchRequest::new(vec![0.0, 0.0, 0.0, 3.0], 1))
        .unwrap();
    assert_eq!(hits[0].id, "c");
    assert!(
        (hits[0].similarity - 1.0).abs() < 1e-6,
        "l2 similarity is 1 - d²"
    );
    let hits = ix
        .search(&SearchRequest::new(vec![0.0, 0.0, 0.0, 3.0], 5))
        .unwrap();
    assert_eq!(hits.len(), 2, "deleted vectors never come back");
}

#[test]
fn invalid_writes_change_nothing() {
    let mut ix = Index::new(IndexParams::new(3, SpaceType::Cosine)).unwrap();
    write(&mut ix, vec![item("a", vec![1.0, 2.0, 3.0], json!({}))]);
    let bad = [
        (vec![item("x", vec![1.0, 2.0], json!({}))], "dimension 2"),
        (vec![item("x", vec![1.0, f32::NAN, 3.0], json!({}))], "NaN"),
        (
            vec![item("x", vec![1.0, f32::INFINITY, 3.0], json!({}))],
            "NaN",
        ),
        (vec![item("", vec![1.0, 2.0, 3.0], json!({}))], "empty"),
        (vec![], "no vectors"),
        (
            vec![item("x", vec![1.0, 2.0, 3.0], json!([1]))],
            "JSON object",
        ),
    ];
    for (items, want) in bad {
        // a good item first: the whole batch must still be refused
        let mut batch = vec![item("good", vec![1.0, 1.0, 1.0], json!({}))];
        let empty = items.is_empty();
        batch.extend(items);
        let batch = if empty { vec![] } else { batch };
        let e = ix.prepare_upsert(batch).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
    let mut sparse = item("s", vec![1.0, 1.0, 1.0], json!({}));
    sparse.sparse_indices = vec![1];
    sparse.sparse_values = vec![0.5];
    assert!(
        ix.prepare_upsert(vec![sparse])
            .unwrap_err()
            .to_string()
            .contains("dense-only")
    );
    assert_eq!(ix.len(), 1);
    assert!(ix.get("good").is_none());
    // search errors
    assert!(ix.search(&SearchRequest::new(vec![1.0, 2.0], 1)).is_err());
    assert!(
        ix.search(&SearchRequest::new(vec![1.0, 2.0, 3.0], 0))
            .is_err()
    );
    assert!(
        ix.search(&SearchRequest::new(vec![1.0, 2.0, 3.0], 4097))
            .is_err()
    );
    assert!(
        ix.search(&SearchRequest::new(vec![1.0, f32::NAN, 3.0], 1))
            .is_err()
    );
}

#[test]
fn filters_update_and_delete_by_filter() {
    let mut ix =
        Index::new(IndexParams::new(2, SpaceType::Ip).with_precision(Precision::Float32)).unwrap();
    let items = (0..100)
        .map(|i| {
            item(
                &format!("v{i}"),
                vec![i as f32, 1.0],
                json!({"parity": if i % 2 == 0 {"even"} else {"odd"}, "n": i}),
            )
        })
        .collect();
    write(&mut ix, items);
    let even = Filter::parse(&json!([{"parity": {"$eq": "even"}}])).unwrap();
    let mut req = SearchRequest::new(vec![1.0, 0.0], 10);
    req.filter = Some(even.clone());
    let hits = ix.search(&req).unwrap();
    assert_eq!(hits.len(), 10);
    assert_eq!(hits[0].id, "v98", "ip: largest first");
    assert!(hits.iter().all(|h| h.filter.contains("even")));
    let r = ix
        .prepare_update_filters(vec![
            ("v98".into(), json!({"parity": "odd"}).to_string()),
            ("nope".into(), "{}".into()),
        ])
        .unwrap();
    assert_eq!(ix.apply(&r), 1);
    assert_eq!(ix.search(&req).unwrap()[0].id, "v96");
    let r = ix
        .prepare_delete_by_filter(&Filter::parse(&json!([{"n": {"$range": [0, 49]}}])).unwrap())
        .unwrap();
    assert_eq!(ix.apply(&r), 50);
    assert_eq!(ix.len(), 50);
    assert_eq!(ix.count_matching(&even), 24);
}

#[test]
fn filtered_hnsw_returns_k_whenever_k_match() {
    let data = clustered(6000, 16, 3);
    let mut ix =
        Index::new(IndexParams::new(16, SpaceType::L2).with_precision(Precision::Float32)).unwrap();
    let items = data
        .iter()
        .enumerate()
        .map(|(i, v)| item(&i.to_string(), v.clone(), json!({"bucket": i % 7})))
        .collect();
    write(&mut ix, items);
    for b in 0..7 {
        let mut req = SearchRequest::new(data[b].clone(), 50);
        req.filter = Some(Filter::parse(&json!([{"bucket": {"$eq": b}}])).unwrap());
        req.prefilter_threshold = Some(1); // force the in-graph filtered path
        let hits = ix.search(&req).unwrap();
        assert_eq!(hits.len(), 50);
        assert!(hits.iter().all(|h| h.id.parse::<usize>().unwrap() % 7 == b));
    }
}

fn recall_of(precision: Precision, space: SpaceType) -> f64 {
    let (n, dim, nq, k) = (5000, 48, 100, 10);
    let data = clustered(n + nq, dim, 11);
    let (base, queries) = data.split_at(n);
    let mut ix = Index::new(IndexParams::new(dim, space).with_precision(precision)).unwrap();
    for chunk in base.chunks(500).enumerate() {
        let items = chunk
            .1
            .iter()
            .enumerate()
            .map(|(i, v)| item(&(chunk.0 * 500 + i).to_string(), v.clone(), json!({})))
            .collect();
        write(&mut ix, items);
    }
    let mut hit = 0;
    for q in queries {
        let truth = brute(base, q, k, space);
        let got = ix.search(&SearchRequest::new(q.clone(), k)).unwrap();
        hit += got
            .iter()
            .filter(|h| truth.contains(&h.id.parse::<usize>().unwrap()))
            .count();
    }
    hit as f64 / (nq * k) as f64
}

#[test]
fn recall_against_brute_force_per_precision() {
    for space in [SpaceType::Cosine, SpaceType::L2] {
        for p in Precision::ALL {
            let r = recall_of(p, space);
            println!("recall@10 {:>8} {:>6}: {r:.3}", p.as_str(), space.as_str());
            let floor = match p {
                // Sign bits shortlist, float32 originals re-rank the beam.
                Precision::Binary => 0.85,
                _ => 0.95,
            };
            assert!(r >= floor, "{p:?} {space:?} recall {r}");
        }
    }
}

fn build_random(precision: Precision, n: usize) -> (Index, Vec<Record>) {
    let data = clustered(n, 24, 5);
    let mut ix =
        Index::new(IndexParams::new(24, SpaceType::Cosine).with_precision(precision)).unwrap();
    let mut log = Vec::new();
    let mut r = SplitMix64::new(9);
    for (i, v) in data.iter().enumerate() {
        let id = format!("{}", r.below(n as u64 * 3 / 4));
        log.push(write(
            &mut ix,
            vec![item(&id, v.clone(), json!({"g": i % 5}))],
        ));
        if i % 10 == 0 {
            let rec = ix.prepare_delete(vec![format!("{}", r.below(n as u64))]);
            if let Ok(rec) = rec {
                ix.apply(&rec);
                log.push(rec);
            }
        }
    }
    (ix, log)
}

/// Same hits from `a` and `b`; each searched with the checkpoint bytes it was loaded from
/// (empty for an index never checkpointed), where int8 reads its originals.
fn same_results((a, mut ca): (&Index, &[u8]), (b, mut cb): (&Index, &[u8])) {
    assert_eq!(a.len(), b.len());
    let data = clustered(40, 24, 77);
    for q in data {
        let mut req = SearchRequest::new(q, 20);
        let hits = |ix: &Index, c: &mut &[u8], req: &SearchRequest| ix.search_with(req, c).unwrap();
        assert_eq!(hits(a, &mut ca, &req), hits(b, &mut cb, &req));
        req.filter = Some(Filter::parse(&json!([{"g": {"$in": [1, 3]}}])).unwrap());
        assert_eq!(hits(a, &mut ca, &req), hits(b, &mut cb, &req));
    }
}

#[test]
fn checkpoint_and_replay_reproduce_the_index() {
    for p in Precision::ALL {
        let (ix, log) = build_random(p, 3000);
        let bytes = CheckpointEncoder::new(&ix).to_vec().unwrap();
        let loaded = read_checkpoint(&bytes[..]).unwrap();
        same_results((&ix, &[]), (&loaded, &bytes));
        // replay of the whole log into an empty index
        let mut framed = Vec::new();
        for r in &log {
            framed.extend(r.encode());
        }
        let (records, len, torn) = read_log(&framed[..]).unwrap();
        assert_eq!((len as usize, torn), (framed.len(), false));
        let mut replayed = Index::new(ix.params().clone()).unwrap();
        records.iter().for_each(|r| {
            replayed.apply(r);
        });
        same_results((&ix, &[]), (&replayed, &[]));
        // checkpoint half way + the rest of the log
        let half = log.len() / 2;
        let mut part = Index::new(ix.params().clone()).unwrap();
        log[..half].iter().for_each(|r| {
            part.apply(r);
        });
        let part_bytes = CheckpointEncoder::new(&part).to_vec().unwrap();
        let mut resumed = read_checkpoint(&part_bytes[..]).unwrap();
        log[half..].iter().for_each(|r| {
            resumed.apply(r);
        });
        same_results((&ix, &[]), (&resumed, &part_bytes));
    }
}

#[test]
fn checkpoint_truncated_or_flipped_is_refused() {
    let (ix, _) = build_random(Precision::Int8, 1200);
    let bytes = CheckpointEncoder::new(&ix).to_vec().unwrap();
    for cut in [0, 5, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        assert!(read_checkpoint(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 0x40;
    assert!(read_checkpoint(&flipped[..]).is_err());
}

#[test]
fn torn_log_tail_at_every_offset_keeps_exactly_the_prefix() {
    let (_, log) = build_random(Precision::Float32, 60);
    let mut framed = Vec::new();
    for r in &log {
        framed.extend(r.encode());
    }
    let last = log.last().unwrap().encode();
    let prefix = framed.len() - last.len();
    for cut in prefix..framed.len() {
        let (records, len, torn) = read_log(&framed[..cut]).unwrap();
        assert_eq!(records.len(), log.len() - 1, "cut {cut}");
        assert_eq!(len as usize, prefix);
        assert_eq!(torn, cut != prefix);
        assert_eq!(&records[..], &log[..log.len() - 1]);
    }
    // a flipped byte inside the last record is also a torn tail
    let mut bad = framed.clone();
    let n = bad.len();
    bad[n - 2] ^= 1;
    let (records, len, torn) = read_log(&bad[..]).unwrap();
    assert_eq!(
        (records.len(), len as usize, torn),
        (log.len() - 1, prefix, true)
    );
}

/// recall@10 of `search` over 100 held-out queries against brute force on 5,000 vectors.
fn recall_with(
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    space: SpaceType,
    ef: usize,
    mut search: impl FnMut(&SearchRequest) -> Vec<cairn_core::SearchHit>,
) -> f64 {
    let mut hit = 0;
    for q in queries {
        let truth = brute(base, q, 10, space);
        let mut req = SearchRequest::new(q.clone(), 10);
        req.ef = ef;
        hit += search(&req)
            .iter()
            .filter(|h| truth.contains(&h.id.parse::<usize>().unwrap()))
            .count();
    }
    hit as f64 / (queries.len() * 10) as f64
}

#[test]
fn int8_and_binary_rerank_with_checkpointed_originals() {
    for space in [SpaceType::Cosine, SpaceType::L2] {
        let data = clustered(5100, 48, 21);
        let (base, queries) = data.split_at(5000);
        let build = |p: Precision| {
            let mut ix = Index::new(IndexParams::new(48, space).with_precision(p)).unwrap();
            for (c, chunk) in base.chunks(500).enumerate() {
                let items = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, v)| item(&(c * 500 + i).to_string(), v.clone(), json!({})))
                    .collect();
                write(&mut ix, items);
            }
            ix
        };
        let f32ix = build(Precision::Float32);
        // int8 re-ranked must match float32 at the same beam; binary, whose 48 sign bits
        // only shortlist, must come close with a wider beam, where its codes alone find a
        // fraction.
        for (p, ef, max_loss) in [(Precision::Int8, 48, 0.01), (Precision::Binary, 128, 0.1)] {
            let f32_recall = recall_with(base, queries, space, 48, |r| f32ix.search(r).unwrap());
            let ix = build(p);
            assert!(ix.has_originals());
            let bytes = CheckpointEncoder::new(&ix).to_vec().unwrap();
            let loaded = read_checkpoint(&bytes[..]).unwrap();
            // Without the checkpoint file the loaded index can only rank by its codes.
            let codes_only = recall_with(base, queries, space, ef, |r| loaded.search(r).unwrap());
            let reranked = recall_with(base, queries, space, ef, |r| {
                loaded.search_with(r, &mut &bytes[..]).unwrap()
            });
            let in_memory = recall_with(base, queries, space, ef, |r| ix.search(r).unwrap());
            println!(
                "recall@10 {space:?}: float32 {f32_recall:.3}, {p:?} codes {codes_only:.3}, re-ranked {reranked:.3}"
            );
            assert!(
                reranked >= f32_recall - max_loss,
                "{p:?} {reranked} vs {f32_recall}"
            );
            assert!(reranked > codes_only, "{p:?} {reranked} vs {codes_only}");
            assert_eq!(reranked, in_memory, "same originals, memory or file");
            // Hits carry exact float32 similarities: a stored vector finds itself at 1.
            let mut req = SearchRequest::new(base[7].clone(), 3);
            req.ef = ef;
            let hits = loaded.search_with(&req, &mut &bytes[..]).unwrap();
            assert_eq!(hits[0].id, "7");
            assert!((hits[0].similarity - 1.0).abs() < 1e-5, "{:?}", hits[0]);
            // Read back, a vector is its float32 original (as a float32 index stores it), in
            // a search hit too; without the file, its codes decoded.
            let want = f32ix.get("7").unwrap().vector;
            let got = loaded.get_with("7", &mut &bytes[..]).unwrap().unwrap();
            assert_eq!(got.vector, want);
            assert_eq!(
                ix.get("7").unwrap().vector,
                want,
                "never checkpointed: in memory"
            );
            assert_ne!(loaded.get("7").unwrap().vector, want, "codes only");
            req.include_vectors = true;
            let hits = loaded.search_with(&req, &mut &bytes[..]).unwrap();
            assert_eq!(hits[0].vector, want);
            // A checkpoint file cut short fails the search with an error, never a wrong answer.
            let short = &bytes[..bytes.len() / 2];
            assert!(matches!(
                loaded.search_with(&req, &mut { short }),
                Err(IndexError::Io(_))
            ));
        }
    }
}

#[test]
fn a_log_replayed_with_deferred_links_answers_at_once_and_links_later() {
    // 2,500 vectors checkpointed, then a log of 3,000 more with deletes and updates.
    let dim = 16;
    let data = clustered(5500, dim, 21);
    let p = IndexParams::new(dim, SpaceType::L2).with_precision(Precision::Float32);
    let mut ix = Index::new(p).unwrap();
    // Vector i is "v{i}" in filter group i % 3.
    let batch = |from: usize, c: &[Vec<f32>]| -> Vec<UpsertItem> {
        c.iter()
            .enumerate()
            .map(|(i, v)| {
                item(
                    &format!("v{}", from + i),
                    v.clone(),
                    json!({"g": (from + i) % 3}),
                )
            })
            .collect()
    };
    for (n, c) in data[..2500].chunks(500).enumerate() {
        write(&mut ix, batch(n * 500, c));
    }
    let ckpt = CheckpointEncoder::new(&ix).to_vec().unwrap();
    let mut log = Vec::new();
    for (n, c) in data[2500..].chunks(500).enumerate() {
        let from = 2500 + n * 500;
        log.extend(write(&mut ix, batch(from, c)).encode());
        // Deletes reach both the checkpointed part and the logged part.
        let gone: Vec<String> = (0..40)
            .map(|i| format!("v{}", from - 1000 + i * 7))
            .collect();
        let r = ix.prepare_delete(gone).unwrap();
        ix.apply(&r);
        log.extend(r.encode());
    }
    let mut deferred = read_checkpoint(&ckpt[..]).unwrap();
    let scan = deferred.replay_deferred(&log[..]).unwrap();
    assert!(!scan.torn);
    assert_eq!(deferred.len(), ix.len());
    assert!(
        deferred.pending_links() > 2000,
        "{}",
        deferred.pending_links()
    );
    // A checkpoint of a half-linked index is refused: its graph would lose those vectors.
    assert!(CheckpointEncoder::new(&deferred).to_vec().is_err());

    let live: Vec<usize> = (0..data.len())
        .filter(|&i| ix.get(&format!("v{i}")).is_some())
        .collect();
    let live_data: Vec<Vec<f32>> = live.iter().map(|&i| data[i].clone()).collect();
    let mut r = SplitMix64::new(5);
    let (mut hit_pending, mut hit_linked, mut total) = (0, 0, 0);
    for _ in 0..50 {
        let qi = r.below(data.len() as u64) as usize;
        let q: Vec<f32> = data[qi].iter().map(|x| x + 0.05 * r.gaussian()).collect();
        let want: Vec<String> = brute(&live_data, &q, 10, SpaceType::L2)
            .into_iter()
            .map(|j| format!("v{}", live[j]))
            .collect();
        let mut req = SearchRequest::new(q.clone(), 10);
        req.ef = 128;
        let ids = |ix: &Index, req: &SearchRequest| -> Vec<String> {
            ix.search(req).unwrap().into_iter().map(|h| h.id).collect()
        };
        let got = ids(&deferred, &req);
        hit_pending += got.iter().filter(|id| want.contains(id)).count();
        total += want.len();
        // Filtered searches see pending vectors too, and only the matching ones.
        req.filter = Some(Filter::parse(&json!([{"g": {"$eq": 1}}])).unwrap());
        for id in ids(&deferred, &req) {
            let n: usize = id[1..].parse().unwrap();
            assert_eq!(n % 3, 1, "{id} does not match the filter");
        }
        req.filter = None;
        hit_linked += ids(&ix, &req).iter().filter(|id| want.contains(id)).count();
    }
    let recall_pending = hit_pending as f64 / total as f64;
    let recall_linked = hit_linked as f64 / total as f64;
    assert!(
        recall_pending >= 0.95,
        "recall with pending links {recall_pending}"
    );
    assert!(
        recall_pending + 0.02 >= recall_linked,
        "{recall_pending} vs {recall_linked}"
    );

    // Linked a few at a time, the index ends whole and checkpoints again.
    while deferred.link_pending(256) > 0 {}
    assert_eq!(deferred.pending_links(), 0);
    assert!(CheckpointEncoder::new(&deferred).to_vec().is_ok());
    let q = data[4000].clone();
    let top = deferred.search(&SearchRequest::new(q, 1)).unwrap();
    let want = if ix.get("v4000").is_some() {
        "v4000"
    } else {
        top[0].id.as_str()
    };
    assert_eq!(top[0].id, want);
}
