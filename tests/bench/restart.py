"""Start-to-first-query after a restart, on minilm-50k (50,000 x 384, cosine, float32, M=16,
ef_construction=200), through the HTTP API: after a clean stop (SIGTERM) and after kill -9.

    tests/bench/.venv/bin/python tests/bench/restart.py [--bin target/release/cairn] [--n 50000]

--n above 50,000 adds noisy copies of the real vectors (bash tests/bench/run.sh --restart --n 100000).

"first query" = the first POST /index/minilm/search answered 200, polled every 10 ms from the
moment the process is spawned.
"""

import argparse, json, os, shutil, signal, socket, struct, subprocess, sys, tempfile, time, urllib.error, urllib.request

import msgpack
import numpy as np

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "minilm-50k")


def fvecs(path, n):
    out = []
    with open(path, "rb") as f:
        while len(out) < n:
            h = f.read(4)
            if not h:
                break
            d = struct.unpack("<i", h)[0]
            out.append(list(struct.unpack(f"<{d}f", f.read(4 * d))))
    return out


def fvecs_np(path):
    raw = np.fromfile(path, dtype=np.int32)
    d = raw[0]
    return raw.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def call(base, path, body, ct="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = urllib.request.Request(base + path, data=data, method="POST", headers={"content-type": ct})
    with urllib.request.urlopen(r, timeout=600) as resp:
        return resp.status


def start(bin_, data, port):
    return subprocess.Popen([bin_, "serve", "--data-dir", data, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def first_query(base, q):
    while True:
        try:
            if call(base, "/index/minilm/search", {"k": 10, "vector": q}) == 200:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.01)


def load(bin_, data, port, vecs):
    srv = start(bin_, data, port)
    base = f"http://127.0.0.1:{port}/api/v1"
    for _ in range(500):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except OSError:
            time.sleep(0.02)
    call(base, "/index/create", {"index_name": "minilm", "dim": 384, "space_type": "cosine",
                                 "precision": "float32", "M": 16, "ef_con": 200})
    t0 = time.time()
    for i in range(0, len(vecs), 1000):
        rows = [[str(i + j), b"", "{}", 1.0, v] for j, v in enumerate(vecs[i:i + 1000].tolist())]
        call(base, "/index/minilm/vector/insert", msgpack.packb(rows, use_bin_type=True, use_single_float=True),
             "application/msgpack")
    return srv, base, time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/cairn")
    ap.add_argument("--n", type=int, default=50000)
    a = ap.parse_args()
    vecs = fvecs_np(os.path.join(DATA, "base.fvecs"))[: a.n]
    # Past the 50,000 real vectors: copies of them with small noise (same distribution of
    # neighbourhoods, distinct points), deterministic.
    if a.n > len(vecs):
        rng = np.random.default_rng(7)
        reps = -(-a.n // len(vecs))
        big = np.tile(vecs, (reps, 1))[: a.n]
        big[len(vecs):] += rng.normal(0, 0.01, size=(a.n - len(vecs), vecs.shape[1])).astype(np.float32)
        vecs = big
    q = fvecs(os.path.join(DATA, "queries.fvecs"), 1)[0]
    print(f"| stop | vectors | load s (HTTP, msgpack batches of 1,000) | stop s | start to first query s |")
    print("|---|---|---|---|---|")
    for how in ["SIGTERM", "kill -9"]:
        data = tempfile.mkdtemp(prefix="cairn-restart-")
        port = free_port()
        try:
            srv, base, secs = load(a.bin, data, port, vecs)
            t0 = time.time()
            if how == "SIGTERM":
                srv.send_signal(signal.SIGTERM)
            else:
                srv.kill()
            srv.wait(timeout=600)
            stop = time.time() - t0
            t0 = time.time()
            srv = start(a.bin, data, port)
            first_query(f"http://127.0.0.1:{port}/api/v1", q)
            print(f"| {how} | {len(vecs)} | {secs:.1f} | {stop:.2f} | {time.time() - t0:.2f} |", flush=True)
            srv.terminate()
            srv.wait(timeout=600)
        finally:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
