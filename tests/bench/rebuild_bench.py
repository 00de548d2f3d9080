"""Graph rebuild on minilm-50k (50,000 x 384, cosine, float32) through the HTTP API: how long
`POST /index/{n}/rebuild` takes in the background, and what it does to search and write
latency while it runs, against the same load without it. For scale, hnswlib builds the same
graph (same M / ef_construction, one thread — the rebuild runs on one) in the same run.

    bash tests/bench/run.sh --rebuild [--seconds 8]

Load during both phases: one client thread searching (k=10, ef=64, the held-out queries) and
one upserting single vectors (random directions, new ids), back to back. The rebuild thread
runs at nice +10.
"""

import argparse, json, os, shutil, signal, sys, tempfile, threading, time, urllib.request

import hnswlib
import msgpack
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from restart import DATA, free_port, fvecs_np, load  # noqa: E402

M0, EF0 = 16, 200  # as loaded (restart.load)
M1, EF1 = 24, 200  # rebuilt


def post(base, path, body, ct="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = urllib.request.Request(base + path, data=data, method="POST", headers={"content-type": ct})
    with urllib.request.urlopen(r, timeout=600) as resp:
        return resp.status, resp.read()


def get(base, path):
    with urllib.request.urlopen(base + path, timeout=600) as resp:
        return json.loads(resp.read())


def pct(xs, p):
    return float(np.percentile(np.array(xs) * 1000, p)) if xs else float("nan")


class Load:
    """A searching thread and a writing thread, timing every request, until stopped."""

    def __init__(self, base, queries, base_vecs, id0):
        self.base, self.queries, self.vecs, self.id = base, queries, base_vecs, id0
        self.stop = threading.Event()
        self.search_s, self.write_s = [], []

    def searcher(self):
        i = 0
        while not self.stop.is_set():
            q = self.queries[i % len(self.queries)].tolist()
            t0 = time.perf_counter()
            post(self.base, "/index/minilm/search", {"k": 10, "ef": 64, "vector": q})
            self.search_s.append(time.perf_counter() - t0)
            i += 1

    def writer(self):
        # Random directions: far from the real sentences, so recall is measured on those alone.
        rng = np.random.default_rng(self.id)
        while not self.stop.is_set():
            v = rng.normal(0, 1, 384).astype(np.float32)
            row = [[f"w{self.id}", b"", "{}", 1.0, v.tolist()]]
            t0 = time.perf_counter()
            post(self.base, "/index/minilm/vector/insert",
                 msgpack.packb(row, use_bin_type=True, use_single_float=True), "application/msgpack")
            self.write_s.append(time.perf_counter() - t0)
            self.id += 1

    def run(self, until):
        ts = [threading.Thread(target=self.searcher), threading.Thread(target=self.writer)]
        for t in ts:
            t.start()
        until()
        self.stop.set()
        for t in ts:
            t.join()


def recall(base, queries, gt):
    hit = 0
    for q, want in zip(queries, gt):
        _, body = post(base, "/index/minilm/search", {"k": 10, "ef": 64, "vector": q.tolist()})
        got = {int(h[1]) for h in msgpack.unpackb(body, raw=False) if str(h[1]).isdigit()}
        hit += len(got & set(want[:10].tolist()))
    return hit / (10 * len(queries))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/cairn")
    ap.add_argument("--seconds", type=float, default=8.0)
    a = ap.parse_args()
    vecs = fvecs_np(os.path.join(DATA, "base.fvecs"))
    queries = fvecs_np(os.path.join(DATA, "queries.fvecs"))
    gt = np.fromfile(os.path.join(DATA, "groundtruth.ivecs"), dtype=np.int32)
    gt = gt.reshape(-1, gt[0] + 1)[:, 1:]

    t0 = time.time()
    p = hnswlib.Index(space="cosine", dim=384)
    p.init_index(max_elements=len(vecs), M=M1, ef_construction=EF1, random_seed=100)
    p.set_num_threads(1)
    p.add_items(vecs)
    hnsw_s = time.time() - t0

    data = tempfile.mkdtemp(prefix="cairn-rebuild-")
    port = free_port()
    srv = None
    try:
        srv, base, load_s = load(a.bin, data, port, vecs)
        recall_before = recall(base, queries[:300], gt[:300])
        idle = Load(base, queries, vecs, 0)
        idle.run(lambda: time.sleep(a.seconds))

        during = Load(base, queries, vecs, 1_000_000)
        status = {}

        def rebuild():
            nonlocal status
            t = time.time()
            code, _ = post(base, "/index/minilm/rebuild", {"M": M1, "ef_con": EF1})
            assert code == 202, code
            while True:
                status = get(base, "/index/minilm/rebuild/status")
                if status["status"] != "in_progress":
                    break
                time.sleep(0.05)
            status["seconds"] = time.time() - t

        during.run(rebuild)
        assert status["status"] == "completed", status
        info = get(base, "/index/minilm/info")
        assert (info["M"], info["ef_con"]) == (M1, EF1), info
        recall_after = recall(base, queries[:300], gt[:300])
        rb = status["seconds"]
        n = status["total_vectors"]
        print(f"\nRebuild of minilm-50k (+{len(idle.write_s)} vectors written before it), "
              f"M {M0}→{M1}, ef_con {EF0}→{EF1}, 2 cores, one client searching and one writing throughout\n")
        print("| | seconds | vectors/s | ratio to hnswlib build (1 thread) |")
        print("|---|---|---|---|")
        print(f"| CairnDB rebuild (background, under load) | {rb:.1f} | {n / rb:,.0f} | {rb / hnsw_s:.2f} |")
        print(f"| hnswlib build, same M/ef_con, 1 thread, no load | {hnsw_s:.1f} | {len(vecs) / hnsw_s:,.0f} | 1.00 |")
        print(f"| (CairnDB initial load over HTTP, for reference) | {load_s:.1f} | {len(vecs) / load_s:,.0f} | |")
        print("\n| latency ms | without rebuild | during rebuild | ratio |")
        print("|---|---|---|---|")
        for what, x, y in [("search", idle.search_s, during.search_s), ("write (1 vector)", idle.write_s, during.write_s)]:
            for p_ in (50, 99):
                print(f"| {what} p{p_} | {pct(x, p_):.2f} | {pct(y, p_):.2f} | {pct(y, p_) / pct(x, p_):.2f} |")
        print(f"| searches / writes completed | {len(idle.search_s)} / {len(idle.write_s)} in {a.seconds:.0f} s "
              f"| {len(during.search_s)} / {len(during.write_s)} in {rb:.1f} s | |")
        print(f"\nrecall@10 (ef 64, 300 queries): {recall_before:.4f} before, {recall_after:.4f} after")
    finally:
        if srv:
            srv.send_signal(signal.SIGTERM)
            srv.wait(timeout=600)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
