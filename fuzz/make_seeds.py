"""Writes the seed corpus in fuzz/corpus/ from a real server: python fuzz/make_seeds.py http://127.0.0.1:PORT DATA_DIR
(run from the repository root against a fresh `cairn serve --data-dir DATA_DIR --port PORT`; needs msgpack)."""
import json, os, urllib.request, msgpack, time, tarfile, io
import sys
B = sys.argv[1] + "/api/v1"  # a fresh `cairn serve` on 127.0.0.1
DATA = sys.argv[2]          # its --data-dir
def req(method, path, body=None, ct="application/json"):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    r = urllib.request.Request(B + path, data=data, method=method, headers={"content-type": ct})
    with urllib.request.urlopen(r) as resp:
        return resp.read()
C = "fuzz/corpus"
def seed(target, name, data):
    os.makedirs(f"{C}/{target}", exist_ok=True)
    open(f"{C}/{target}/{name}", "wb").write(data if isinstance(data, bytes) else data.encode())
req("POST", "/index/create", {"index_name": "s", "dim": 4, "space_type": "cosine", "precision": "int8"})
js = [{"id": f"v{i}", "vector": [i * 0.1, 1, -0.5, 2], "meta": {"t": "x"}, "filter": {"g": i % 3, "tag": ["a", "b"], "ok": True}} for i in range(30)]
seed("insert_json", "batch", json.dumps(js))
seed("insert_json", "one", json.dumps({"id": 7, "vector": [1, 2, 3, 4], "filter": "{\"a\":1}", "norm": 2.0, "sparse_indices": [1], "sparse_values": [0.5]}))
req("POST", "/index/s/vector/insert", js)
rows = [[f"m{i}", b"meta", json.dumps({"g": i}), 1.0, [0.5, i, 1.0, -1.0]] for i in range(10)]
mp = msgpack.packb(rows, use_bin_type=True)
seed("insert_msgpack", "rows", mp)
seed("insert_msgpack", "sparse", msgpack.packb([["h", None, "{}", None, [1, 2, 3, 4], [3, 9], [0.5, 0.25]]], use_bin_type=True))
req("POST", "/index/s/vector/insert", mp, "application/msgpack")
seed("search_body", "filtered", json.dumps({"k": 5, "vector": [1, 0, 0, 0], "ef": 32, "include_vectors": True, "filter": [{"g": {"$in": [1, 2]}}, {"ok": {"$eq": True}}], "filter_params": {"prefilter_threshold": 3}}))
seed("search_body", "delete", json.dumps({"filter": "[{\"g\":{\"$range\":[0,1]}}]"}))
seed("search_body", "updates", json.dumps({"updates": [{"id": "v1", "filter": {"g": 9}}, {"id": 3, "filter": "{\"x\":\"y\"}"}]}))
seed("filter", "all_ops", json.dumps([{"g": {"$in": [1, 2]}}, {"tag": {"$eq": "t1"}}, {"g": {"$range": [0, 3]}}, {"ok": {"$eq": False}}]))
seed("filter", "stored", json.dumps({"g": 1, "tags": ["a", "b"], "ok": True, "n": 1.5}))
r = json.loads(req("POST", "/index/s/backup", {"name": "seed"}))
time.sleep(1)
tar = req("GET", "/backups/seed/download")
seed("archive", "backup", tar)
tf = tarfile.open(fileobj=io.BytesIO(tar))
ck = tf.extractfile("index/checkpoint.bin").read()
lg = tf.extractfile("index/log.bin").read()
seed("log_frames", "log", lg)
req("POST", "/backups/seed/restore", {"target_index_name": "r"})
r = json.loads(req("POST", "/index/r/backup", {"name": "seed2"}))
time.sleep(1)
tar2 = req("GET", "/backups/seed2/download")
tf2 = tarfile.open(fileobj=io.BytesIO(tar2))
ck2 = tf2.extractfile("index/checkpoint.bin").read()
seed("checkpoint", "int8_with_data", ck2)
seed("checkpoint", "empty", ck)
seed("archive", "restored_backup", tar2)
seed("jobs_file", "jobs", open(f"{DATA}/jobs.json", "rb").read())
print("ok", len(ck2), len(lg), len(tar))
