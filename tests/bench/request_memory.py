"""Peak memory of one request, against its body size: JSON and msgpack inserts at 1, 8 and 64 MiB
and a backup upload, on the real server (release binary).

    tests/.venv/bin/python tests/bench/request_memory.py [--bin target/release/cairn] [--sizes 1,8,64]

For each request the server's peak RSS is reset (/proc/PID/clear_refs "5"), the request is sent,
and the growth of VmHWM over the RSS before it is divided by the body size. The growth includes
what the request leaves behind on purpose (the inserted vectors and their graph: printed as
"kept"), so "peak − kept" is what decoding and applying the request cost on top.
"""

import argparse, json, os, random, shutil, socket, struct, subprocess, sys, tempfile, time, urllib.request

import msgpack


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def call(base, method, path, body=None, ct="application/json"):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    r = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": ct})
    with urllib.request.urlopen(r, timeout=600) as resp:
        return resp.status, resp.read()


def vectors(n, dim, seed):
    rnd = random.Random(seed)
    return [[rnd.uniform(-1, 1) for _ in range(dim)] for _ in range(n)]


def json_body(target, dim, tag, short=False):
    # Size the batch to the target from one vector's JSON. `short`: one-decimal values ("0.3",
    # 4 bytes a number), the case where a parse tree costs the most per body byte.
    def vecs(n, seed):
        vs = vectors(n, dim, seed)
        return [[round(x, 1) for x in v] for v in vs] if short else vs
    probe = json.dumps([{"id": f"{tag}-0", "vector": vecs(1, 0)[0]}]).encode()
    n = max(1, target // len(probe))
    vs = vecs(n, hash(tag) & 0xFFFF)
    return json.dumps([{"id": f"{tag}-{i}", "vector": v} for i, v in enumerate(vs)]).encode(), n


def msgpack_body(target, dim, tag):
    # Endee's clients send [id, meta, filter, norm, vector] rows with float32 values.
    per = 5 * dim + 40
    n = max(1, target // per)
    vs = vectors(n, dim, hash(tag) & 0xFFFF)
    rows = [[f"{tag}-{i}", b"", "{}", 1.0, [struct.unpack("f", struct.pack("f", x))[0] for x in v]] for i, v in enumerate(vs)]
    return msgpack.packb(rows, use_bin_type=True, use_single_float=True), n


def measure(pid, send):
    before = status(pid, "VmRSS")
    reset_peak(pid)
    t0 = time.time()
    send()
    secs = time.time() - t0
    peak = status(pid, "VmHWM")
    after = status(pid, "VmRSS")
    return peak - before, after - before, secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("CAIRN_BIN", "target/release/cairn"))
    ap.add_argument("--sizes", default="1,8,64")
    ap.add_argument("--dim", type=int, default=384)
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="cairn-reqmem-")
    port = free_port()
    srv = subprocess.Popen([a.bin, "serve", "--data-dir", data, "--port", str(port), "--max-body-mib", "256"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(200):
            try:
                call(base, "GET", "/health")
                break
            except OSError:
                time.sleep(0.05)
        MiB = 1 << 20
        print(f"| request | body MiB | vectors | peak RSS growth MiB | kept MiB | peak ÷ body | (peak − kept) ÷ body | s |")
        print("|---|---|---|---|---|---|---|---|")
        for fmt in ["json", "json-short", "msgpack"]:
            for size in [int(x) for x in a.sizes.split(",")]:
                name = f"{fmt.replace('-', '')}{size}"
                call(base, "POST", "/index/create", {"index_name": name, "dim": a.dim, "space_type": "cosine", "precision": "float32"})
                if fmt == "msgpack":
                    body, n = msgpack_body(size * MiB, a.dim, name)
                else:
                    body, n = json_body(size * MiB, a.dim, name, short=fmt == "json-short")
                ct = "application/msgpack" if fmt == "msgpack" else "application/json"
                peak, kept, secs = measure(srv.pid, lambda: call(base, "POST", f"/index/{name}/vector/insert", body, ct))
                print(f"| insert {fmt} | {len(body) / MiB:.1f} | {n} | {peak / MiB:.1f} | {kept / MiB:.1f} | "
                      f"{peak / len(body):.2f} | {(peak - kept) / len(body):.2f} | {secs:.1f} |")
        # An upload of the largest msgpack index's backup.
        big = f"msgpack{a.sizes.split(',')[-1]}"
        _, r = call(base, "POST", f"/index/{big}/backup", {"name": "mem"})
        job = json.loads(r)["job_id"]
        while json.loads(call(base, "GET", f"/backups/jobs/{job}")[1])["status"] == "in_progress":
            time.sleep(0.1)
        _, tar = call(base, "GET", "/backups/mem/download")
        peak, kept, secs = measure(srv.pid, lambda: call(base, "POST", "/backups/upload?name=copy", tar, "application/x-tar"))
        print(f"| upload (validated as an index) | {len(tar) / MiB:.1f} | – | {peak / MiB:.1f} | {kept / MiB:.1f} | "
              f"{peak / len(tar):.2f} | {(peak - kept) / len(tar):.2f} | {secs:.1f} |")
    finally:
        srv.terminate()
        srv.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
