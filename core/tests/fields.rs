//! A collection's further dense fields (Endee v2): a second `vector` field and a
//! `multi_vector` field beside the index's own vectors — written, searched (against brute
//! force), checkpointed, replayed after a crash — and late-interaction recall on real data:
//! minilm-50k's sentences grouped four to an object (12,500 objects of four 384-d vectors),
//! queried with pairs of held-out sentences, against brute-force MaxSim.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use cairn_core::checkpoint::{CheckpointEncoder, read_checkpoint};
use cairn_core::params::{ExtraFieldSpec, FieldNames, Pooling};
use cairn_core::record::FieldsItem;
use cairn_core::rng::SplitMix64;
use cairn_core::{
    Database, Index, IndexParams, MemStorage, Precision, SearchRequest, SpaceType, UpsertItem,
};

fn spec(name: &str, dim: usize, pooling: Option<Pooling>) -> ExtraFieldSpec {
    ExtraFieldSpec {
        name: name.into(),
        dim,
        space: SpaceType::Cosine,
        precision: Precision::Float32,
        m: 16,
        ef_construction: 100,
        pooling,
    }
}

fn params(extra: Vec<ExtraFieldSpec>, dim: usize) -> IndexParams {
    let mut p = IndexParams::new(dim, SpaceType::Cosine).with_precision(Precision::Float32);
    p.fields = Some(FieldNames {
        vector: Some("a".into()),
        sparse: None,
        extra,
    });
    p
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_sim(q: &[Vec<f32>], doc: &[Vec<f32>]) -> f32 {
    q.iter()
        .map(|x| doc.iter().map(|d| dot(x, d)).fold(f32::MIN, f32::max))
        .sum()
}

fn object(id: usize, a: Vec<f32>) -> FieldsItem {
    FieldsItem {
        item: UpsertItem {
            id: id.to_string(),
            vector: a,
            meta: vec![],
            filter: format!("{{\"g\":{}}}", id % 2),
            norm: 1.0,
            sparse_indices: vec![],
            sparse_values: vec![],
        },
        extra: vec![],
    }
}

fn gauss(r: &mut SplitMix64, d: usize) -> Vec<f32> {
    (0..d).map(|_| r.gaussian()).collect()
}

#[test]
fn further_fields_search_exactly_checkpoint_and_replay() {
    further_fields_scenario(Precision::Float32, Precision::Float32, 0.95);
}

/// Endee's default precision (int8) on a second vector field and a multi_vector field: the
/// vector field ranks by its int8 codes, the multi_vector field links int8 pooled vectors and
/// scores with its float32 members.
#[test]
fn int8_further_fields_search_checkpoint_and_replay() {
    further_fields_scenario(Precision::Int8, Precision::Int8, 0.9);
}

/// The scenario for field `b` (a vector field) stored as `pb` and field `m` (multi_vector)
/// as `pm`; `b` must find `min_b` of the exact top 10.
fn further_fields_scenario(pb: Precision, pm: Precision, min_b: f64) {
    let (mut b, mut m) = (spec("b", 6, None), spec("m", 5, Some(Pooling::Mean)));
    (b.precision, m.precision) = (pb, pm);
    let p = params(vec![b, m], 8);
    let mut r = SplitMix64::new(3);
    let objs: Vec<FieldsItem> = (0..3000)
        .map(|i| {
            let mut o = object(i, gauss(&mut r, 8));
            let n = 1 + (i % 4);
            o.extra = vec![
                vec![gauss(&mut r, 6)],
                (0..n).map(|_| gauss(&mut r, 5)).collect(),
            ];
            o
        })
        .collect();
    let mut db = Database::open(MemStorage::new(), 1, "test").unwrap();
    db.create_index("c", p.clone(), 1).unwrap();
    // Written in batches through the log, with a checkpoint in the middle.
    for (k, chunk) in objs.chunks(500).enumerate() {
        db.write_fields("c", chunk.to_vec()).unwrap();
        if k == 2 {
            db.checkpoint("c").unwrap();
        }
    }
    // Refused: a plain upsert, a missing field, a wrong dimension, too many vectors.
    let plain = db.upsert("c", vec![objs[0].item.clone()]);
    assert!(plain.unwrap_err().to_string().contains("every field"));
    let mut missing = objs[0].clone();
    missing.extra.pop();
    assert!(db.write_fields("c", vec![missing]).is_err());
    let mut wrong = objs[0].clone();
    wrong.extra[0][0].pop();
    assert!(db.write_fields("c", vec![wrong]).is_err());
    let mut many = objs[0].clone();
    many.extra[1] = vec![vec![0.1; 5]; 2000];
    assert!(db.write_fields("c", vec![many]).is_err());

    // Field "b" against brute force; field "m" against brute-force MaxSim.
    let queries: Vec<(Vec<f32>, Vec<Vec<f32>>)> = (0..50)
        .map(|_| (gauss(&mut r, 6), (0..2).map(|_| gauss(&mut r, 5)).collect()))
        .collect();
    let truth_b = |q: &[f32]| -> Vec<String> {
        let q = unit(q);
        let mut s: Vec<(f32, usize)> = objs
            .iter()
            .enumerate()
            .map(|(i, o)| (dot(&q, &unit(&o.extra[0][0])), i))
            .collect();
        s.sort_by(|a, b| b.0.total_cmp(&a.0));
        s[..10].iter().map(|x| x.1.to_string()).collect()
    };
    let truth_m = |q: &[Vec<f32>]| -> Vec<String> {
        let q: Vec<Vec<f32>> = q.iter().map(|x| unit(x)).collect();
        let mut s: Vec<(f32, usize)> = objs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let d: Vec<Vec<f32>> = o.extra[1].iter().map(|x| unit(x)).collect();
                (max_sim(&q, &d), i)
            })
            .collect();
        s.sort_by(|a, b| b.0.total_cmp(&a.0));
        s[..10].iter().map(|x| x.1.to_string()).collect()
    };
    let search = |db: &mut Database<MemStorage>, field: usize, q: &(Vec<f32>, Vec<Vec<f32>>)| {
        let mut req = SearchRequest::new(if field == 1 { q.0.clone() } else { vec![] }, 10);
        req.field = field;
        req.multi = if field == 2 { q.1.clone() } else { vec![] };
        req.ef = 200;
        db.search("c", &req)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect::<Vec<_>>()
    };
    let recall = |db: &mut Database<MemStorage>| {
        let (mut hb, mut hm) = (0, 0);
        for q in &queries {
            let (tb, tm) = (truth_b(&q.0), truth_m(&q.1));
            hb += search(db, 1, q).iter().filter(|id| tb.contains(id)).count();
            hm += search(db, 2, q).iter().filter(|id| tm.contains(id)).count();
        }
        (hb as f64 / 500.0, hm as f64 / 500.0)
    };
    let (rb, rm) = recall(&mut db);
    println!("further fields ({pb:?}, {pm:?}) recall@10: vector {rb:.3}, multi_vector {rm:.3}");
    assert!(rb >= min_b && rm >= 0.9, "{rb} {rm}");
    let got = db.get("c", "7").unwrap();
    assert_eq!(got.extra[1].len(), 4, "object 7 keeps its four vectors");
    // Rebuild the multi_vector field's graph (writes go on); its answers stay as good.
    let job = db
        .start_rebuild_field("c", 2, Some(24), Some(150), 3, [7; 6])
        .unwrap();
    db.write_fields("c", vec![objs[5].clone()]).unwrap();
    while db.running_jobs().contains(&job.job_id) {
        db.step(4, 1);
    }
    assert_eq!(
        db.job(&job.job_id).unwrap().status,
        cairn_core::JobStatus::Completed
    );
    let e = &db.index("c").unwrap().params().extra_fields()[1];
    assert_eq!((e.m, e.ef_construction), (24, 150));
    let (_, rm2) = recall(&mut db);
    assert!(rm2 >= 0.9, "{rm2} after rebuilding the multi_vector field");
    assert!(
        db.start_rebuild_field("c", 3, None, None, 5, [8; 6])
            .is_err(),
        "no field 3"
    );
    // A crash: checkpoint + log replay bring back the same answers (and the rebuilt params).
    let before: Vec<Vec<String>> = queries.iter().map(|q| search(&mut db, 2, q)).collect();
    let mut st = db.into_storage();
    st.crash();
    let mut db = Database::open(st, 6, "test").unwrap();
    let after: Vec<Vec<String>> = queries.iter().map(|q| search(&mut db, 2, q)).collect();
    assert_eq!(before, after);
    assert_eq!(db.index("c").unwrap().params().extra_fields()[1].m, 24);
    // A filter applies to further fields too.
    let mut req = SearchRequest::new(queries[0].0.clone(), 10);
    req.field = 1;
    req.filter = Some(cairn_core::Filter::parse_str(r#"[{"g":{"$eq":1}}]"#).unwrap());
    let hits = db.search("c", &req).unwrap();
    assert!(hits.len() == 10 && hits.iter().all(|h| h.id.parse::<usize>().unwrap() % 2 == 1));
    // The whole index through a checkpoint file round-trips.
    let ix: &Index = db.index("c").unwrap();
    let bytes = CheckpointEncoder::new(ix).to_vec().unwrap();
    let loaded = read_checkpoint(&bytes[..]).unwrap();
    assert_eq!(loaded.extra_field_names(), vec!["b", "m"]);
    assert_eq!(loaded.params().extra_fields()[0].precision, pb);
}

/// Endee 2.x rebuilds several dense fields in one request: one job, the fields one after the
/// other, each committed by its own checkpoint; its record says which field it is on.
#[test]
fn one_job_rebuilds_several_fields_and_a_crash_keeps_the_fields_it_committed() {
    use cairn_core::control::rebuild::FieldRebuild;
    let p = params(
        vec![spec("b", 6, None), spec("m", 5, Some(Pooling::Max))],
        8,
    );
    let mut r = SplitMix64::new(11);
    let objs: Vec<FieldsItem> = (0..1500)
        .map(|i| {
            let mut o = object(i, gauss(&mut r, 8));
            o.extra = vec![vec![gauss(&mut r, 6)], vec![gauss(&mut r, 5); 2]];
            o
        })
        .collect();
    let mut db = Database::open(MemStorage::new(), 1, "test").unwrap();
    db.create_index("c", p, 1).unwrap();
    db.write_fields("c", objs.clone()).unwrap();
    let f = |field, m| FieldRebuild {
        field,
        m: Some(m),
        ef_con: None,
    };
    // Refused whole: a field named twice, a field that is not there.
    assert!(
        db.start_rebuild_fields("c", &[f(1, 20), f(1, 24)], 2, [1; 6])
            .is_err()
    );
    assert!(
        db.start_rebuild_fields("c", &[f(0, 20), f(3, 24)], 2, [1; 6])
            .is_err()
    );
    assert!(db.running_jobs().is_empty());
    let job = db
        .start_rebuild_fields("c", &[f(0, 20), f(2, 24), f(1, 12)], 3, [2; 6])
        .unwrap();
    assert_eq!(
        (job.rebuild_fields_total(), job.rebuild_fields_done),
        (3, 0)
    );
    let mut seen_fields = std::collections::BTreeSet::new();
    while db.running_jobs().contains(&job.job_id) {
        let j = db.job(&job.job_id).unwrap();
        seen_fields.insert(j.rebuild.unwrap().field);
        assert!(j.bytes_done <= j.bytes_total.max(j.bytes_done));
        db.step(4, 1);
    }
    let j = db.job(&job.job_id).unwrap();
    assert_eq!(j.status, cairn_core::JobStatus::Completed);
    assert_eq!(j.rebuild_fields_done, 3);
    assert_eq!(
        seen_fields,
        [0, 1, 2].into(),
        "its record named each field in turn"
    );
    let ms = |db: &Database<MemStorage>| {
        let p = db.index("c").unwrap().params();
        (p.m, p.extra_fields()[0].m, p.extra_fields()[1].m)
    };
    assert_eq!(ms(&db), (20, 12, 24));

    // A second job; a crash after its first field's checkpoint keeps that field rebuilt and
    // the other as it was.
    let job = db
        .start_rebuild_fields("c", &[f(1, 32), f(2, 8)], 10, [3; 6])
        .unwrap();
    while db.job(&job.job_id).unwrap().rebuild_fields_done == 0 {
        db.step(11, 1);
    }
    let mut st = db.into_storage();
    st.crash();
    let db = Database::open(st, 12, "test").unwrap();
    assert_eq!(ms(&db), (20, 32, 24));
    let j = db.job(&job.job_id).unwrap();
    assert_eq!(j.status, cairn_core::JobStatus::Failed, "interrupted");
}

fn fvecs(path: &str) -> Vec<Vec<f32>> {
    let b = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= b.len() {
        let d = u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        i += 4;
        out.push(
            b[i..i + 4 * d]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
        i += 4 * d;
    }
    out
}

#[test]
fn late_interaction_recall_on_minilm_sentences() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/minilm-50k");
    let base = fvecs(&format!("{dir}/base.fvecs"));
    let queries = fvecs(&format!("{dir}/queries.fvecs"));
    // An object is four consecutive sentences (its first as the field-"a" vector too); a
    // query is two consecutive held-out sentences.
    let groups: Vec<&[Vec<f32>]> = base.chunks(4).collect();
    let mut spec_m = spec("m", 384, Some(Pooling::Mean));
    spec_m.ef_construction = 200;
    let mut ix = Index::new(params(vec![spec_m], 384)).unwrap();
    for (c, chunk) in groups.chunks(500).enumerate() {
        let items = chunk
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let mut o = object(c * 500 + i, g[0].clone());
                o.extra = vec![g.to_vec()];
                o
            })
            .collect();
        let rec = ix.prepare_upsert_fields(items).unwrap();
        ix.apply(&rec);
    }
    let qs: Vec<Vec<Vec<f32>>> = queries.chunks(2).take(200).map(<[_]>::to_vec).collect();
    let mut hit = 0;
    let mut searching = std::time::Duration::ZERO;
    for q in &qs {
        let mut truth: Vec<(f32, usize)> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (max_sim(q, g), i))
            .collect();
        truth.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<String> = truth[..10].iter().map(|x| x.1.to_string()).collect();
        let mut req = SearchRequest::new(vec![], 10);
        req.field = 1;
        req.multi = q.clone();
        req.ef = 128; // the client's default ef_search; the field widens it (MULTI_BEAM)
        let t0 = std::time::Instant::now();
        let hits = ix.search(&req).unwrap();
        searching += t0.elapsed();
        hit += hits.iter().filter(|h| want.contains(&h.id)).count();
    }
    let recall = hit as f64 / (qs.len() * 10) as f64;
    println!(
        "multi_vector recall@10 (minilm, 12,500 objects of 4 sentences, queries of 2, mean pooling, ef 128): {recall:.3}, {:.2} ms a query",
        searching.as_secs_f64() * 1000.0 / qs.len() as f64
    );
    assert!(recall >= 0.95, "{recall}");
}

/// Collections of only sparse and `multi_vector` fields (no `vector` field): created,
/// written and searched through the v2 decoders as the server calls them, checkpointed and
/// replayed after a crash; the missing dense field is refused wherever a request names it.
#[test]
fn collections_without_a_vector_field() {
    use cairn_core::wire_v2::{collection_json, decode_create_collection, decode_objects};
    let create = |fields: &str| {
        decode_create_collection(format!(r#"{{"name":"x","fields":{fields}}}"#).as_bytes())
    };
    let (_, sparse_only) =
        create(r#"[{"name":"kw","type":"sparse","sparse_model":"default"}]"#).unwrap();
    let (_, multi_only) = create(
        r#"[{"name":"tok","type":"multi_vector","params":{"dimension":5,"space_type":"cosine","pooling":"mean"}},
            {"name":"kw","type":"sparse","sparse_model":"endee_bm25"}]"#,
    )
    .unwrap();
    assert_eq!((sparse_only.dim, sparse_only.vector_field()), (0, None));
    let shown = collection_json("x", &multi_only, 0, 0);
    let kinds: Vec<&str> = shown["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["multi_vector", "sparse"],
        "no vector field is shown"
    );
    assert!(create("[]").is_err(), "a collection needs a field");

    let mut r = SplitMix64::new(11);
    let n = 600;
    // Each object: 1..=3 token vectors and a few sparse terms (term t of object i: i % 7 + t).
    let objects: Vec<(Vec<Vec<f32>>, Vec<u32>)> = (0..n)
        .map(|i| {
            let toks = (0..1 + i % 3).map(|_| gauss(&mut r, 5)).collect();
            let terms = (0..3).map(|t| (i % 7 + t * 10) as u32).collect();
            (toks, terms)
        })
        .collect();
    let batch = |multi: bool, range: std::ops::Range<usize>| -> Vec<u8> {
        let objs: Vec<_> = range
            .map(|i| {
                let (toks, terms) = &objects[i];
                let vals = vec![1.0f32; terms.len()];
                let multi_map: std::collections::BTreeMap<&str, &Vec<Vec<f32>>> = if multi {
                    [("tok", toks)].into()
                } else {
                    Default::default()
                };
                let empty: std::collections::BTreeMap<&str, Vec<f32>> = Default::default();
                (
                    i.to_string(),
                    serde_bytes::ByteBuf::new(),
                    "",
                    empty,
                    std::collections::BTreeMap::from([("kw", (terms, vals))]),
                    multi_map,
                )
            })
            .collect();
        rmp_serde::to_vec(&(objs,)).unwrap()
    };
    let mut db = Database::open(MemStorage::new(), 1, "test").unwrap();
    db.create_index("s", sparse_only.clone(), 1).unwrap();
    db.create_index("m", multi_only.clone(), 1).unwrap();
    for (k, (lo, hi)) in [(0, 300), (300, n)].into_iter().enumerate() {
        let s = decode_objects(&batch(false, lo..hi), &sparse_only).unwrap();
        db.upsert("s", s.into_iter().map(|f| f.item).collect())
            .unwrap();
        let m = decode_objects(&batch(true, lo..hi), &multi_only).unwrap();
        db.write_fields("m", m).unwrap();
        if k == 0 {
            db.checkpoint("s").unwrap();
            db.checkpoint("m").unwrap();
        }
    }
    // A dense value for a field the collection lacks is refused.
    let bad = rmp_serde::to_vec(&(vec![(
        "1",
        serde_bytes::ByteBuf::new(),
        "",
        std::collections::BTreeMap::from([("v", vec![1.0f32, 0.0])]),
    )],))
    .unwrap();
    let e = decode_objects(&bad, &sparse_only).unwrap_err();
    assert!(e.0.contains("\"v\" is not a vector field"), "{}", e.0);

    let sparse_search = |db: &mut Database<MemStorage>, ix: &str| {
        let mut req = SearchRequest::new(vec![], 10);
        (req.sparse_indices, req.sparse_values) = (vec![3, 13], vec![1.0, 1.0]);
        let mut ids: Vec<usize> = db
            .search(ix, &req)
            .unwrap()
            .into_iter()
            .map(|h| h.id.parse().unwrap())
            .collect();
        ids.sort();
        ids
    };
    // Terms 3 and 13 are carried by the objects with i % 7 == 3 (and only those score 2).
    let hits = sparse_search(&mut db, "s");
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|i| i % 7 == 3), "{hits:?}");
    // A dense query on a collection without a vector field is refused; a rebuild of it too.
    let dense = db.search("s", &SearchRequest::new(vec![1.0, 0.0], 10));
    assert!(dense.is_err());
    assert!(
        db.start_rebuild_field("s", 0, None, None, 2, [1; 6])
            .is_err()
    );
    // The multi_vector field: late interaction against brute force.
    let q: Vec<Vec<f32>> = (0..2).map(|_| gauss(&mut r, 5)).collect();
    let truth = {
        let qn: Vec<Vec<f32>> = q.iter().map(|x| unit(x)).collect();
        let mut s: Vec<(f32, usize)> = objects
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let d: Vec<Vec<f32>> = o.0.iter().map(|x| unit(x)).collect();
                (max_sim(&qn, &d), i)
            })
            .collect();
        s.sort_by(|a, b| b.0.total_cmp(&a.0));
        s[..10].iter().map(|x| x.1.to_string()).collect::<Vec<_>>()
    };
    let multi_search = |db: &mut Database<MemStorage>| {
        let mut req = SearchRequest::new(vec![], 10);
        req.field = 1;
        req.multi = q.clone();
        req.ef = 200;
        db.search("m", &req)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect::<Vec<_>>()
    };
    let got = multi_search(&mut db);
    let hit = got.iter().filter(|id| truth.contains(id)).count();
    assert!(hit >= 9, "multi_vector-only recall {hit}/10");
    let job = db
        .start_rebuild_field("m", 1, Some(20), None, 3, [2; 6])
        .unwrap();
    while db.running_jobs().contains(&job.job_id) {
        db.step(4, 1);
    }
    assert_eq!(
        db.job(&job.job_id).unwrap().status,
        cairn_core::JobStatus::Completed
    );
    // A crash: checkpoints + log replay answer the same.
    let (before_s, before_m) = (sparse_search(&mut db, "s"), multi_search(&mut db));
    let mut st = db.into_storage();
    st.crash();
    let mut db = Database::open(st, 6, "test").unwrap();
    assert_eq!(sparse_search(&mut db, "s"), before_s);
    assert_eq!(multi_search(&mut db), before_m);
    assert_eq!(db.get("m", "5").unwrap().extra[0].len(), 3);
}
