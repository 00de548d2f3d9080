//! Builds a CairnDB index from an fvecs data set (default `shared/data/minilm-50k`) and prints
//! build time, memory, and queries/s and recall@10 for each `ef`, on one and two threads.
//!
//! ```text
//! cargo run --release -p cairn-bench --bin minilm -- [--data DIR] [--space cosine|l2|ip]
//!     [--precision float32,int8,...] [--m 16] [--efc 200] [--ef 16,32,48,64,96,128,256]
//!     [--limit N] [--json] [--graph FILE]
//! ```
//! `DIR` holds `base.fvecs`, `queries.fvecs` and `groundtruth.ivecs` (ANN-benchmarks layout).
//! With `--json` each measurement is one JSON line (used by `tests/bench/peers.py`).
//! With `--graph FILE` the index is loaded from that checkpoint if it exists, else built and
//! saved there: A/B runs of search changes then measure the very same graph, quickly.
//! An int8 index is measured as the server holds it after a checkpoint: written to a checkpoint
//! file (the `--graph` one, else a temporary file), reopened from it, and searched re-ranking
//! with float32 originals read from that file; its memory is what the reopened index holds.

use cairn_core::checkpoint::{CheckpointEncoder, read_checkpoint};
use cairn_core::originals::{CheckpointBytes, NoCheckpoint};
use cairn_core::{Index, IndexParams, Precision, SearchRequest, SpaceType};
use cairn_native::pread::PreadFile;
use std::time::Instant;
use vecs::read_vecs;

mod insert;
mod vecs;

/// The server's allocator and sealed-block hook (huge pages for full vector blocks), so these
/// numbers are the server's.
#[global_allocator]
static ALLOC: cairn_native::hugepage_alloc::HugePageAlloc =
    cairn_native::hugepage_alloc::HugePageAlloc;

struct Args {
    data: String,
    space: SpaceType,
    precisions: Vec<Precision>,
    m: usize,
    efc: usize,
    efs: Vec<usize>,
    limit: usize,
    json: bool,
    graph: Option<String>,
    /// Internal: measure the index in this checkpoint file (a child process; see `main`).
    reopen: Option<String>,
    /// Internal: the build time the parent measured, reported by the child.
    build_s: f64,
}

fn parse_args() -> Args {
    let mut a = Args {
        data: "../shared/data/minilm-50k".into(),
        space: SpaceType::Cosine,
        precisions: vec![
            Precision::Float32,
            Precision::Float16,
            Precision::Int16,
            Precision::Int8,
            Precision::Binary,
        ],
        m: 16,
        efc: 200,
        efs: vec![16, 24, 32, 48, 64, 96, 128, 192, 256],
        limit: usize::MAX,
        json: false,
        graph: None,
        reopen: None,
        build_s: 0.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--data" => a.data = v(),
            "--space" => a.space = SpaceType::parse(&v()).expect("space"),
            "--precision" => {
                a.precisions = v()
                    .split(',')
                    .map(|p| Precision::parse(p).expect("precision"))
                    .collect()
            }
            "--m" => a.m = v().parse().expect("m"),
            "--efc" => a.efc = v().parse().expect("efc"),
            "--ef" => a.efs = v().split(',').map(|x| x.parse().expect("ef")).collect(),
            "--limit" => a.limit = v().parse().expect("limit"),
            "--json" => a.json = true,
            "--graph" => a.graph = Some(v()),
            "--reopen" => a.reopen = Some(v()),
            "--build-s" => a.build_s = v().parse().expect("build-s"),
            other if !other.starts_with("--") => a.data = other.into(),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn run_queries(
    ix: &Index,
    file: Option<&std::fs::File>,
    queries: &[Vec<f32>],
    gt: &[Vec<f32>],
    ef: usize,
    threads: usize,
) -> (f64, f64) {
    let chunk = queries.len().div_ceil(threads);
    let (hits, busy) = std::thread::scope(|s| {
        let hs: Vec<_> = queries
            .chunks(chunk)
            .zip(gt.chunks(chunk))
            .map(|(qs, ts)| {
                s.spawn(move || {
                    // Requests are built before, and recall scored after, the timed loop, as
                    // the peers' batch calls do.
                    let reqs: Vec<SearchRequest> = qs
                        .iter()
                        .map(|q| {
                            let mut r = SearchRequest::new(q.clone(), 10);
                            r.ef = ef;
                            r
                        })
                        .collect();
                    let mut src: Box<dyn CheckpointBytes> = match file {
                        Some(f) => Box::new(PreadFile(f)),
                        None => Box::new(NoCheckpoint),
                    };
                    let t = Instant::now();
                    let results: Vec<_> = reqs
                        .iter()
                        .map(|r| ix.search_with(r, &mut *src).expect("search"))
                        .collect();
                    let busy = t.elapsed();
                    let mut hit = 0usize;
                    for (res, truth) in results.iter().zip(ts) {
                        let want: Vec<usize> = truth[..10].iter().map(|&x| x as usize).collect();
                        hit += res
                            .iter()
                            .filter(|h| h.id.parse::<usize>().is_ok_and(|id| want.contains(&id)))
                            .count();
                    }
                    (hit, busy)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("thread"))
            .fold((0usize, std::time::Duration::ZERO), |(a, b), (h, t)| {
                (a + h, b.max(t))
            })
    });
    // The slowest thread's busy time is the wall time of the parallel search.
    let qps = queries.len() as f64 / busy.as_secs_f64();
    (qps, hits as f64 / (queries.len() * 10) as f64)
}

/// Vectors per insert call. Small, so the harness's own transient batch (which the allocator
/// keeps resident after it is freed) adds ~0.15 MiB, not ~1.5 MiB, to the measured RSS.
const BATCH: usize = 100;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    cairn_core::set_sealed_block_hook(cairn_native::hugepage_alloc::collapse_into_huge_pages);
    let a = parse_args();
    let mut base = read_vecs(&format!("{}/base.fvecs", a.data), true);
    base.truncate(a.limit);
    let queries = read_vecs(&format!("{}/queries.fvecs", a.data), true);
    let gt = read_vecs(&format!("{}/groundtruth.ivecs", a.data), false);
    let dim = base[0].len();
    if !a.json && a.reopen.is_none() {
        println!(
            "{}: {} base × {dim} dims, {} queries; kernels: {}",
            a.data,
            base.len(),
            queries.len(),
            cairn_core::kernels::backend()
        );
        println!(
            "M={} ef_construction={}, {}\n",
            a.m,
            a.efc,
            a.space.as_str()
        );
        println!("| precision | build s | index MiB | ef | q/s 1 thr | q/s 2 thr | recall@10 |");
        println!("|---|---|---|---|---|---|---|");
    }
    for p in &a.precisions {
        let params = IndexParams::new(dim, a.space)
            .with_precision(*p)
            .with_hnsw(a.m, a.efc);
        let rss0 = rss_kib();
        let t = Instant::now();
        if let Some(path) = &a.reopen {
            let f = std::fs::File::open(path).expect("checkpoint");
            let ix = read_checkpoint(std::io::BufReader::new(&f)).expect("reopen");
            let rss_mib = rss_kib().saturating_sub(rss0) as f64 / 1024.0;
            measure(&a, *p, &ix, Some(&f), a.build_s, rss_mib, &queries, &gt);
            continue;
        }
        let saved = a.graph.as_ref().map(|g| format!("{g}.{}", p.as_str()));
        let (ix, build) = match saved.as_ref().and_then(|f| std::fs::File::open(f).ok()) {
            Some(f) => (
                read_checkpoint(std::io::BufReader::new(f)).expect("saved graph"),
                t.elapsed().as_secs_f64(),
            ),
            None => {
                let ix = insert::build(&base, params, BATCH);
                let build = t.elapsed().as_secs_f64();
                if let Some(f) = &saved {
                    let bytes = CheckpointEncoder::new(&ix).to_vec().expect("encode");
                    std::fs::write(f, bytes).expect("save graph");
                }
                (ix, build)
            }
        };
        if ix.has_originals() {
            // Measured as a server holds it after a restart: a fresh process opens the
            // checkpoint (so nothing this process freed counts) and re-ranks from that file.
            let tmp = std::env::temp_dir().join(format!("cairn-bench-{}.ckpt", std::process::id()));
            let path = saved.clone().map_or(tmp.clone(), std::path::PathBuf::from);
            if !path.exists() {
                let bytes = CheckpointEncoder::new(&ix).to_vec().expect("encode");
                std::fs::write(&path, bytes).expect("write checkpoint");
            }
            drop(ix);
            let efs: Vec<String> = a.efs.iter().map(|e| e.to_string()).collect();
            let mut child = std::process::Command::new(std::env::current_exe().expect("exe"));
            child
                .args(["--data", &a.data, "--space", a.space.as_str()])
                .args(["--precision", p.as_str(), "--ef", &efs.join(",")])
                .args([
                    "--limit",
                    &a.limit.to_string(),
                    "--build-s",
                    &build.to_string(),
                ])
                .arg("--reopen")
                .arg(&path);
            if a.json {
                child.arg("--json");
            }
            let ok = child.status().expect("start child").success();
            let _ = std::fs::remove_file(&tmp);
            assert!(ok, "reopened measurement failed");
            continue;
        }
        let rss_mib = rss_kib().saturating_sub(rss0) as f64 / 1024.0;
        measure(&a, *p, &ix, None, build, rss_mib, &queries, &gt);
    }
}

/// Prints one row per `ef`: best-of-5 q/s on one and two threads, and recall@10.
#[allow(clippy::too_many_arguments)]
fn measure(
    a: &Args,
    p: Precision,
    ix: &Index,
    file: Option<&std::fs::File>,
    build: f64,
    rss_mib: f64,
    queries: &[Vec<f32>],
    gt: &[Vec<f32>],
) {
    let mib = ix.heap_bytes() as f64 / (1 << 20) as f64;
    for &ef in &a.efs {
        // Best of 5 passes (as tests/bench/peers.py times every peer): the pass least
        // disturbed by other work on a shared machine.
        let best = |threads| {
            (0..5)
                .map(|_| run_queries(ix, file, queries, gt, ef, threads))
                .fold((0f64, 0f64), |a, b| if b.0 > a.0 { b } else { a })
        };
        let (qps1, recall) = best(1);
        let (qps2, _) = best(2);
        if a.json {
            println!(
                "{{\"lib\":\"cairndb\",\"precision\":\"{}\",\"build_s\":{build:.3},\"index_mib\":{mib:.1},\"rss_mib\":{rss_mib:.1},\"ef\":{ef},\"qps1\":{qps1:.1},\"qps2\":{qps2:.1},\"recall\":{recall:.4}}}",
                p.as_str()
            );
        } else {
            println!(
                "| {} | {build:.1} | {mib:.0} | {ef} | {qps1:.0} | {qps2:.0} | {recall:.3} |",
                p.as_str()
            );
        }
    }
}
