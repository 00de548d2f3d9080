//! The server under concurrent clients, on minilm-50k (50,000 × 384, cosine, float32, M 16,
//! ef_construction 200). A compiled load generator — this binary: one OS thread and one
//! keep-alive HTTP/1.1 connection per client — against a real `cairn serve` on 127.0.0.1, beside
//! the same work done in-process by the core in the same run. Not a test: it prints numbers.
//!
//! - Inserts: batches of 1,000 vectors (Endee's JSON body) from 4 connections → vectors/s, beside
//!   the in-process build rate (one thread, batches of 1,000 through the same prepare/apply).
//! - Searches: Endee's JSON query, msgpack answer, `ef` the smallest of the grid whose in-process
//!   recall@10 reaches 0.95 (and 0.99), from 1, 8 and 64 connections for a fixed time each → q/s,
//!   p50 / p99 latency, beside the in-process q/s on two threads at that `ef` (the same inserts in
//!   the same order build the same graph: the seed is fixed).
//!
//!   cargo run --release -p cairn-bench --bin load -- [DATA_DIR] [--seconds S]
//!
//! Needs the release server binary (`CAIRN_BIN`, default `target/release/cairn`).

use cairn_core::{Index, IndexParams, Precision, SearchRequest, SpaceType};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use vecs::read_vecs;

mod insert;
mod vecs;

/// The server's allocator, so the in-process figures are the server's.
#[global_allocator]
static ALLOC: cairn_native::hugepage_alloc::HugePageAlloc =
    cairn_native::hugepage_alloc::HugePageAlloc;

const M: usize = 16;
const EF_CON: usize = 200;
const BATCH: usize = 1000;
const EFS: [usize; 7] = [16, 24, 32, 48, 64, 96, 128];

/// A `cairn serve` on a fresh data directory, killed and removed on drop.
struct Server {
    child: Child,
    dir: std::path::PathBuf,
    base: String,
}

impl Server {
    fn start() -> Self {
        let bin = std::env::var("CAIRN_BIN").unwrap_or_else(|_| "target/release/cairn".into());
        let dir = std::env::temp_dir().join(format!("cairn-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut child = Command::new(&bin)
            .args(["serve", "--data-dir"])
            .arg(&dir)
            .args(["--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let base = format!("http://127.0.0.1:{port}/api/v1");
        let c = reqwest::blocking::Client::new();
        for _ in 0..200 {
            if c.get(format!("{base}/health"))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return Self { child, dir, base };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("server did not start");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One client: its own connection pool of one keep-alive connection.
fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()
        .expect("client")
}

fn items_json(base: &[Vec<f32>], from: usize) -> String {
    let items: Vec<serde_json::Value> = base
        .iter()
        .enumerate()
        .map(|(i, v)| serde_json::json!({"id": (from + i).to_string(), "vector": v}))
        .collect();
    serde_json::to_string(&items).expect("json")
}

/// The in-process build: one thread, batches of [`BATCH`]; returns the index and vectors/s.
fn build_in_process(base: &[Vec<f32>]) -> (Index, f64) {
    let params = IndexParams::new(base[0].len(), SpaceType::Cosine)
        .with_precision(Precision::Float32)
        .with_hnsw(M, EF_CON);
    let t = Instant::now();
    let ix = insert::build(base, params, BATCH);
    let rate = base.len() as f64 / t.elapsed().as_secs_f64();
    (ix, rate)
}

/// In-process q/s on `threads` threads over every query at `ef`, and recall@10.
fn in_process(
    ix: &Index,
    queries: &[Vec<f32>],
    gt: &[Vec<f32>],
    ef: usize,
    threads: usize,
) -> (f64, f64) {
    let chunk = queries.len().div_ceil(threads);
    let t = Instant::now();
    let hits: usize = std::thread::scope(|s| {
        let hs: Vec<_> = queries
            .chunks(chunk)
            .zip(gt.chunks(chunk))
            .map(|(qs, ts)| {
                s.spawn(move || {
                    let mut hit = 0;
                    for (q, truth) in qs.iter().zip(ts) {
                        let mut r = SearchRequest::new(q.clone(), 10);
                        r.ef = ef;
                        let res = ix.search(&r).expect("search");
                        hit += res
                            .iter()
                            .filter(|h| {
                                h.id.parse::<f32>()
                                    .is_ok_and(|id| truth[..10].contains(&id))
                            })
                            .count();
                    }
                    hit
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    (qps, hits as f64 / (queries.len() * 10) as f64)
}

/// `conns` clients searching for `secs` seconds: q/s and the p50 / p99 latency in ms.
fn http_searches(
    base: &str,
    queries: &[Vec<f32>],
    ef: usize,
    conns: usize,
    secs: f64,
) -> (f64, f64, f64) {
    let bodies: Vec<String> = queries
        .iter()
        .map(|q| serde_json::json!({"vector": q, "k": 10, "ef": ef}).to_string())
        .collect();
    let url = format!("{base}/index/m/search");
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t = Instant::now();
    let mut lat: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..conns)
            .map(|c| {
                let (bodies, url) = (&bodies, &url);
                s.spawn(move || {
                    let cl = client();
                    let mut out = Vec::new();
                    let mut i = c * 7919;
                    while Instant::now() < deadline {
                        let b = &bodies[i % bodies.len()];
                        i += 1;
                        let t = Instant::now();
                        let r = cl
                            .post(url.as_str())
                            .header("content-type", "application/json")
                            .body(b.clone())
                            .send()
                            .expect("search");
                        assert!(r.status().is_success(), "search {}", r.status());
                        let _ = r.bytes().expect("answer");
                        out.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    out
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("client"))
            .collect()
    });
    let wall = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    (lat.len() as f64 / wall, pct(0.50), pct(0.99))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data = args
        .iter()
        .find(|a| !a.starts_with("--") && a.parse::<f64>().is_err())
        .cloned()
        .unwrap_or_else(|| "../shared/data/minilm-50k".into());
    let secs: f64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(8.0);
    let base = read_vecs(&format!("{data}/base.fvecs"), true);
    let queries = read_vecs(&format!("{data}/queries.fvecs"), true);
    let gt = read_vecs(&format!("{data}/groundtruth.ivecs"), false);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "### The server under concurrent clients ({} × {}, cosine, float32, M {M}, ef_con {EF_CON}; {cores} cores, clients on the same machine)\n",
        base.len(),
        base[0].len()
    );

    // Inserts: the server from 4 connections, then the same build in-process.
    let server = Server::start();
    let c = client();
    let r = c
        .post(format!("{}/index/create", server.base))
        .json(
            &serde_json::json!({"index_name": "m", "dim": base[0].len(), "space_type": "cosine",
                                  "precision": "float32", "M": M, "ef_con": EF_CON}),
        )
        .send()
        .expect("create");
    assert!(r.status().is_success(), "create: {}", r.status());
    let batches: Vec<(usize, String)> = base
        .chunks(BATCH)
        .enumerate()
        .map(|(i, ch)| (i * BATCH, items_json(ch, i * BATCH)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let url = format!("{}/index/m/vector/insert", server.base);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let cl = client();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((_, body)) = batches.get(i) else {
                        break;
                    };
                    let r = cl
                        .post(url.as_str())
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .expect("insert");
                    assert!(r.status().is_success(), "insert {}", r.status());
                }
            });
        }
    });
    let http_rate = base.len() as f64 / t.elapsed().as_secs_f64();
    let (ix, local_rate) = build_in_process(&base);
    println!("| inserts (batches of {BATCH}) | vectors/s | ratio |\n|---|---|---|");
    println!("| in-process, one thread | {local_rate:.0} | 1.00 |");
    println!(
        "| HTTP, 4 connections (JSON) | {http_rate:.0} | {:.2} |\n",
        http_rate / local_rate
    );

    // Searches at the ef that reaches each recall in-process.
    for target in [0.95, 0.99] {
        let Some((ef, recall)) = EFS.iter().find_map(|&ef| {
            let (_, r) = in_process(&ix, &queries, &gt, ef, 1);
            (r >= target).then_some((ef, r))
        }) else {
            println!("(recall {target} not reached within ef {EFS:?})");
            continue;
        };
        let (local2, _) = (0..3)
            .map(|_| in_process(&ix, &queries, &gt, ef, 2))
            .fold((0.0f64, 0.0), |a, b| (a.0.max(b.0), b.1));
        println!("Recall@10 ≥ {target}: ef {ef} (in-process recall {recall:.3})\n");
        println!(
            "| searches | q/s | p50 ms | p99 ms | ratio to in-process 2 threads |\n|---|---|---|---|---|"
        );
        println!("| in-process, 2 threads | {local2:.0} | | | 1.00 |");
        for conns in [1, 8, 64] {
            let (qps, p50, p99) = http_searches(&server.base, &queries, ef, conns, secs);
            println!(
                "| HTTP, {conns} connection{} | {qps:.0} | {p50:.2} | {p99:.2} | {:.2} |",
                if conns == 1 { "" } else { "s" },
                qps / local2
            );
        }
        println!();
    }
    drop(server);
}
