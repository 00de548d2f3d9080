"""Backup figures against the real server on 127.0.0.1:

* archive throughput of a backup versus GNU `tar -cf` (+ sync) of the same files;
* write latency (p50 / p99 / max) while a backup of a 1,000,000-vector index runs, versus none;
* restore time versus index size.

Run through `bash tests/bench/run.sh --backup [--vectors N]`.
"""
import argparse
import re
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import msgpack
import numpy as np
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="cairn-bkbench-", dir=os.environ.get("CAIRN_BENCH_DIR"))
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="cairn-bkbench-", suffix=".log")
        self.proc = subprocess.Popen([os.path.join(ROOT, "target", "release", "cairn"), "serve", "--data-dir", self.data,
                                      "--port", str(self.port)], stdout=self.log, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "NO_COLOR": "1"})
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        self.s = requests.Session()
        for _ in range(200):
            try:
                if self.s.get(self.url + "/health", timeout=0.2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def phases(self, backup_name):
        """The job's own timing of its phases, from the server's completion log line (logged
        just after the job is marked completed, so it may take a moment to appear)."""
        for _ in range(100):
            with open(self.log.name, errors="replace") as f:
                for line in f:
                    if "job completed" in line and "kind=Backup" in line and f"backup={backup_name} " in line:
                        return dict(re.findall(r"(\w+_ms)=(\w+)", line))
            time.sleep(0.01)
        return {}

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.data, ignore_errors=True)

    def post(self, path, **kw):
        r = self.s.post(self.url + path, **kw)
        if r.status_code >= 300:
            raise RuntimeError(f"{path}: {r.status_code} {r.text}")
        return r

    def fill(self, name, n, dim, seed=0):
        self.post("/index/create", json={"index_name": name, "dim": dim, "space_type": "l2", "precision": "float32", "M": 8, "ef_con": 64})
        rng = np.random.default_rng(seed)
        t = time.perf_counter()
        for i in range(0, n, 5000):
            vecs = rng.normal(size=(min(5000, n - i), dim)).astype(np.float32)
            rows = [[f"{i + j}", b"", "{}", 1.0, v.tolist()] for j, v in enumerate(vecs)]
            self.post(f"/index/{name}/vector/insert", data=msgpack.packb(rows, use_single_float=True),
                      headers={"Content-Type": "application/msgpack"})
        return time.perf_counter() - t

    def backup(self, index, name):
        t = time.perf_counter()
        job = self.post(f"/index/{index}/backup", json={"name": name}).json()["job_id"]
        while True:
            j = self.s.get(f"{self.url}/backups/jobs/{job}").json()
            if j["status"] != "in_progress":
                return time.perf_counter() - t, j
            time.sleep(0.005)


def writer(srv, index, dim, stop, lat):
    s = requests.Session()
    rng = np.random.default_rng(99)
    i = 0
    while not stop.is_set():
        v = rng.normal(size=dim).astype(np.float32).tolist()
        t = time.perf_counter()
        r = s.post(f"{srv.url}/index/{index}/vector/insert", json=[{"id": f"w{i}", "vector": v}])
        lat.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
        i += 1


def pct(xs, p):
    return float(np.percentile(np.array(xs) * 1000, p)) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=32)
    args = ap.parse_args()
    srv = Server()
    try:
        print(f"filling an index with {args.vectors:,} x {args.dim} vectors (float32, M=8) ...", flush=True)
        fill = srv.fill("big", args.vectors, args.dim)
        print(f"  {fill:.1f} s ({args.vectors / fill:,.0f} vectors/s over HTTP, msgpack, fsync per batch)\n")

        # write latency with no backup
        stop, base_lat = threading.Event(), []
        th = threading.Thread(target=writer, args=(srv, "big", args.dim, stop, base_lat))
        th.start()
        time.sleep(5)
        stop.set()
        th.join()

        # write latency while a backup runs
        stop, bk_lat = threading.Event(), []
        th = threading.Thread(target=writer, args=(srv, "big", args.dim, stop, bk_lat))
        th.start()
        time.sleep(0.5)
        n_before = len(bk_lat)
        wall, job = srv.backup("big", "big1")
        n_during = len(bk_lat) - n_before
        during = bk_lat[n_before:n_before + n_during]
        stop.set()
        th.join()
        assert job["status"] == "completed", job
        size = job["archive_size"]
        # The same backup with no concurrent writes: the conditions tar runs in.
        idle_wall, idle_job = srv.backup("big", "big2")
        assert idle_job["status"] == "completed", idle_job

        # GNU tar of the same files, then sync
        files = sorted(glob.glob(os.path.join(srv.data, "indexes", "big", "*.bin")))
        out = os.path.join(srv.data, "gnu.tar")
        t = time.perf_counter()
        subprocess.run(["tar", "-cf", out, *files], check=True, stderr=subprocess.DEVNULL)
        subprocess.run(["sync", out], check=True)
        tar_s = time.perf_counter() - t
        tar_size = os.path.getsize(out)
        os.remove(out)

        isize = idle_job["archive_size"]
        print("| backup | bytes | seconds | MiB/s |")
        print("|---|---|---|---|")
        print(f"| CairnDB job, no concurrent writes (submit → completed: log digest, verified stream, fsync) | {isize:,} | {idle_wall:.2f} | {isize / idle_wall / 2**20:,.0f} |")
        print(f"| GNU tar -cf + sync, same files, no concurrent writes | {tar_size:,} | {tar_s:.2f} | {tar_size / tar_s / 2**20:,.0f} |")
        print(f"| CairnDB job while a writer inserts (below) | {size:,} | {wall:.2f} | {size / wall / 2**20:,.0f} |")
        print(f"\nthroughput ratio CairnDB / tar, same conditions: {(isize / idle_wall) / (tar_size / tar_s):.2f}")
        for label, name in [("no writes", "big2"), ("with a writer", "big1")]:
            ph = srv.phases(name)
            print(f"job time, {label} (server log): {ph.get('total_ms', '?')} ms on its thread, of which reads {ph.get('read_ms', '?')} ms, "
                  f"writes {ph.get('write_ms', '?')} ms, syncs {ph.get('sync_ms', '?')} ms (the rest: SHA-256 and the step machine)")
        print()
        print("| writes | count | p50 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|")
        print(f"| no backup | {len(base_lat)} | {pct(base_lat, 50):.2f} | {pct(base_lat, 99):.2f} | {max(base_lat) * 1000:.2f} |")
        print(f"| during the backup | {len(during)} | {pct(during, 50):.2f} | {pct(during, 99):.2f} | {max(during) * 1000 if during else float('nan'):.2f} |")
        print(f"\nwrite pause recorded by the job (the cut): {job['write_pause_us']} µs")
        if during:
            print(f"p99 ratio during / without: {pct(during, 99) / pct(base_lat, 99):.2f}; max ratio: {max(during) / max(base_lat):.2f}\n")

        # restore time versus index size
        print("| vectors | archive bytes | restore s |")
        print("|---|---|---|")
        for n in [10_000, 100_000]:
            srv.fill(f"s{n}", n, args.dim, seed=n)
            _, j = srv.backup(f"s{n}", f"b{n}")
            t = time.perf_counter()
            srv.post(f"/backups/b{n}/restore", json={"target_index_name": f"r{n}"})
            print(f"| {n:,} | {j['archive_size']:,} | {time.perf_counter() - t:.2f} |")
        t = time.perf_counter()
        srv.post("/backups/big1/restore", json={"target_index_name": "rbig"})
        print(f"| {job['vector_count']:,} | {size:,} | {time.perf_counter() - t:.2f} |")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
