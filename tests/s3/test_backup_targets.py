"""Backups to object storage against a real S3 server (SeaweedFS on 127.0.0.1, no mocks):
server A backs up to the bucket, server B — its own data directory, sharing only the bucket —
lists and restores it with identical search results; the store stopped mid-upload fails the
job with a clear error and lists nothing, and the same backup succeeds once it is back; wrong
credentials fail the job with the store's refusal; an upload a crash (or a store down for
the abort) leaves open is aborted at the next start."""
import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import msgpack
import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from cairn_server import serve  # noqa: E402
from seaweedfs import SeaweedFS  # noqa: E402

DIM = 32


@pytest.fixture(scope="module")
def s3():
    store = SeaweedFS().start()
    yield store
    store.close()


def vectors(n, seed):
    r = random.Random(seed)
    return [[r.uniform(-1, 1) for _ in range(DIM)] for _ in range(n)]


def fill(base, index, n, seed=1, batch=1000):
    r = requests.post(f"{base}/v1/index/create", json={"index_name": index, "dim": DIM, "space_type": "l2",
                                                        "precision": "float32"})
    assert r.status_code == 200, r.text
    vs = vectors(n, seed)
    for i in range(0, n, batch):
        body = [{"id": f"v{j}", "vector": vs[j], "meta": f"m{j}"} for j in range(i, min(n, i + batch))]
        r = requests.post(f"{base}/v1/index/{index}/vector/insert", json=body)
        assert r.status_code == 200, r.text
    return vs


def wait_job(base, job, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = requests.get(f"{base}/v1/backups/jobs/{job}").json()
        if j["state"] not in ("queued", "running", "cancelling"):
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not end")


def linked(base, index, timeout=120):
    """Waits until every vector of a restored index has joined its graph (until then the
    unlinked ones are scanned exactly: right answers, but not the graph's)."""
    t0 = time.time()
    while requests.get(f"{base}/v1/index/{index}/info").json()["pending_links"] > 0:
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def answers(base, index, queries):
    """Each query's hits as (id, similarity to 5 significant digits), searched with a beam
    wide enough to be exact: a restored index links its log's vectors after it answers, in
    slot order rather than the writer's order, so its graph — and what a narrow beam happens
    to miss — may differ from the original's; the vectors, and so the exact answers, may not."""
    out = []
    for q in queries:
        r = requests.post(f"{base}/v1/index/{index}/search", json={"vector": q, "k": 5, "ef": 1024})
        assert r.status_code == 200, r.text
        out.append([(h[1], float(f"{h[0]:.5g}")) for h in msgpack.unpackb(r.content)])
    return out


def test_a_backup_on_server_a_restores_on_server_b_sharing_only_the_bucket(s3, tmp_path):
    target = s3.target("s3", "shared")
    with serve("--backup-target", target, env=s3.env(), log=tmp_path / "a.log") as (a, _), \
            serve("--backup-target", target, env=s3.env(), log=tmp_path / "b.log") as (b, _):
        fill(a, "docs", 5000)
        r = requests.post(f"{a}/v1/index/docs/backup", json={"name": "nightly", "target": "s3"})
        assert r.status_code == 202, r.text
        assert r.json()["target"] == "s3"
        job = wait_job(a, r.json()["job_id"])
        assert job["status"] == "completed", job
        assert job["target"] == "s3"
        # A write after the cut is not in the archive.
        requests.post(f"{a}/v1/index/docs/vector/insert", json=[{"id": "late", "vector": [0.5] * DIM}])
        # Not in the data directory's backups; listed on the target, by both servers.
        assert requests.get(f"{a}/v1/backups").json() == []
        assert requests.get(f"{a}/v1/backups", params={"target": "s3"}).json() == ["nightly"]
        targets = {t["name"]: t for t in requests.get(f"{b}/v1/backups/targets").json()["targets"]}
        assert targets["s3"]["location"].endswith("/shared")
        [rec] = targets["s3"]["backups"]
        assert (rec["name"], rec["index_name"], rec["vector_count"]) == ("nightly", "docs", 5000)
        assert rec["sha256"] == job["archive_sha256"]
        info = requests.get(f"{b}/v1/backups/nightly/info", params={"target": "s3"}).json()
        assert info["location"].endswith("/shared/nightly.tar") and info["vector_count"] == 5000
        # The same name on the same target is taken, even from the other server.
        again = requests.post(f"{b}/v1/index/docs/backup", json={"name": "nightly", "target": "s3"})
        assert again.status_code in (404, 409), again.text
        # B restores from the bucket (async) and answers exactly as A did at the cut.
        r = requests.post(f"{b}/v1/backups/nightly/restore",
                          json={"target_index_name": "docs", "target": "s3", "async": True})
        assert r.status_code == 202, r.text
        done = wait_job(b, r.json()["job_id"])
        assert done["status"] == "completed", done
        requests.delete(f"{a}/v1/index/docs/vector/late/delete")
        qs = vectors(20, 99)
        linked(b, "docs")
        assert answers(a, "docs", qs) == answers(b, "docs", qs)
        # Download from the target: the recorded digest.
        d = requests.get(f"{b}/v1/backups/nightly/download", params={"target": "s3"})
        assert d.status_code == 200
        assert hashlib.sha256(d.content).hexdigest() == job["archive_sha256"]
        # Delete on B: gone for A too.
        assert requests.delete(f"{b}/v1/backups/nightly", params={"target": "s3"}).status_code == 204
        assert requests.get(f"{a}/v1/backups", params={"target": "s3"}).json() == []
        # An unknown target is refused at submit.
        bad = requests.post(f"{a}/v1/index/docs/backup", json={"name": "x", "target": "nope"})
        assert bad.status_code == 400 and "nope" in bad.json()["error"]


def backup_12_mib_in(base):
    """Fills index "big" (150,000 vectors), starts its backup "b1" to target "s3" and returns
    its job id once 12 MiB are uploaded (the server paces backups at 8 MiB/s)."""
    fill(base, "big", 150_000, batch=5000)
    r = requests.post(f"{base}/v1/index/big/backup", json={"name": "b1", "target": "s3"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    while requests.get(f"{base}/v1/backups/jobs/{job_id}").json()["bytes_done"] < (12 << 20):
        time.sleep(0.05)
    return job_id


def test_the_store_stopped_mid_upload_fails_the_job_and_a_retry_succeeds(s3, tmp_path):
    target = s3.target("s3", "flaky")
    data = str(tmp_path / "data")
    os.makedirs(data)
    # Paced at 8 MiB/s so the upload is still going when the store stops.
    with serve("--backup-target", target, "--backup-max-mib-per-s", "8", env=s3.env(),
               log=tmp_path / "a.log", data=data) as (a, _):
        job_id = backup_12_mib_in(a)
        s3.stop()
        try:
            failed = wait_job(a, job_id)
            assert failed["status"] == "failed", failed
            assert "backup target \"s3\"" in failed["error"], failed["error"]
            # Writes went on meanwhile, untouched by the failure.
            ok = requests.post(f"{a}/v1/index/big/vector/insert", json=[{"id": "after", "vector": [0.1] * DIM}])
            assert ok.status_code == 200
        finally:
            s3.start()
        assert requests.get(f"{a}/v1/backups", params={"target": "s3"}).json() == []
        # The abort failed with the store: the upload is still open, its id in the job record.
        assert s3.multipart_uploads("flaky") == ["flaky/b1.tar"]
        retry = requests.post(f"{a}/v1/index/big/backup", json={"name": "b1", "target": "s3"})
        assert retry.status_code == 202, retry.text
        done = wait_job(a, retry.json()["job_id"], timeout=300)
        assert done["status"] == "completed", done
        assert requests.get(f"{a}/v1/backups", params={"target": "s3"}).json() == ["b1"]
    # The next start aborts what the failed job left open.
    with serve("--backup-target", target, env=s3.env(), log=tmp_path / "a2.log", data=data) as (a, _):
        wait_until(lambda: s3.multipart_uploads("flaky") == [], "the abandoned upload is aborted")
        assert requests.get(f"{a}/v1/backups", params={"target": "s3"}).json() == ["b1"]


def wait_until(cond, what, timeout=30):
    t0 = time.time()
    while not cond():
        assert time.time() - t0 < timeout, f"timed out: {what}"
        time.sleep(0.1)


def test_an_upload_a_crash_abandons_is_aborted_at_the_next_start(s3, tmp_path):
    target = s3.target("s3", "crashed")
    data = str(tmp_path / "data")
    os.makedirs(data)
    with serve("--backup-target", target, "--backup-max-mib-per-s", "8", env=s3.env(),
               log=tmp_path / "a.log", data=data) as (a, _):
        job_id = backup_12_mib_in(a)
        # The power goes: no abort, no cleanup.
        pid = int(subprocess.check_output(["pgrep", "-f", "--", f"--data-dir {data}"]).split()[0])
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    assert s3.multipart_uploads("crashed") == ["crashed/b1.tar"]
    with serve("--backup-target", target, env=s3.env(), log=tmp_path / "b.log", data=data) as (a, _):
        wait_until(lambda: s3.multipart_uploads("crashed") == [], "the abandoned upload is aborted")
        j = requests.get(f"{a}/v1/backups/jobs/{job_id}").json()
        assert (j["status"], j["error"]) == ("failed", "interrupted by restart"), j
        assert requests.get(f"{a}/v1/backups", params={"target": "s3"}).json() == []
        # The same backup now succeeds (once the index has loaded: its log replays at start).
        wait_until(lambda: requests.get(f"{a}/v1/index/big/info").status_code == 200, "the index loads")
        retry = requests.post(f"{a}/v1/index/big/backup", json={"name": "b1", "target": "s3"})
        assert retry.status_code == 202, retry.text
        assert wait_job(a, retry.json()["job_id"], timeout=300)["status"] == "completed"
        assert s3.multipart_uploads("crashed") == []


def test_wrong_credentials_fail_the_job_with_the_stores_refusal(s3, tmp_path):
    target = s3.target("s3", "denied")
    with serve("--backup-target", target, env=s3.env(secret="wrong-secret"), log=tmp_path / "a.log") as (a, _):
        fill(a, "docs", 100)
        r = requests.post(f"{a}/v1/index/docs/backup", json={"name": "b", "target": "s3"})
        # Refused at submit — the target's listing (checked for the name) is refused — as a
        # bad gateway naming the target and the store's answer; no job is left behind.
        assert r.status_code == 502, r.text
        msg = r.json()["error"]
        assert "backup target \"s3\"" in msg and "403" in msg, msg
        assert requests.get(f"{a}/v1/backups/jobs").json()["jobs"] == []
        t = {t["name"]: t for t in requests.get(f"{a}/v1/backups/targets").json()["targets"]}
        assert "error" in t["s3"]


def change(base, index, n, seed):
    """Rewrites n existing vectors (1 % of 20,000 when n = 200)."""
    vs = vectors(n, seed)
    body = [{"id": f"v{j * 7}", "vector": vs[j], "meta": f"changed{seed}"} for j in range(n)]
    assert requests.post(f"{base}/v1/index/{index}/vector/insert", json=body).status_code == 200


def backup(base, index, name, **extra):
    r = requests.post(f"{base}/v1/index/{index}/backup", json={"name": name, **extra})
    assert r.status_code == 202, r.text
    j = wait_job(base, r.json()["job_id"])
    assert j["status"] == "completed", j
    return j


def test_an_incremental_chain_of_three_restores_on_b_as_a_at_the_last_cut(s3, tmp_path):
    target = s3.target("s3", "chain")
    with serve("--backup-target", target, env=s3.env(), log=tmp_path / "a.log") as (a, _), \
            serve("--backup-target", target, env=s3.env(), log=tmp_path / "b.log") as (b, _):
        fill(a, "docs", 20_000, batch=5000)
        # Fold the log into a checkpoint first (v2's shrink), as the server would on its own
        # after the next write: the chain then starts on the generation it continues.
        assert requests.post(f"{a}/v2/collection/docs/shrink").status_code == 200
        full = backup(a, "docs", "c0", target="s3")
        sizes = [full["archive_size"]]
        for k in (1, 2, 3):
            change(a, "docs", 200, seed=k)
            j = backup(a, "docs", f"c{k}", target="s3", incremental_from=f"c{k - 1}")
            sizes.append(j["archive_size"])
        print(f"full {sizes[0]} B; incremental after 1 % changed: {sizes[1:]} B")
        assert all(s * 10 < sizes[0] for s in sizes[1:]), sizes
        # B restores the newest member: the chain is found through the bucket alone.
        r = requests.post(f"{b}/v1/backups/c3/restore", json={"target_index_name": "docs", "target": "s3", "async": True})
        assert r.status_code == 202, r.text
        assert wait_job(b, r.json()["job_id"])["status"] == "completed"
        qs = vectors(20, 7)
        linked(b, "docs")
        assert answers(a, "docs", qs) == answers(b, "docs", qs)
        # A base later members need stays unless the chain goes with it.
        d = requests.delete(f"{b}/v1/backups/c1", params={"target": "s3"})
        assert d.status_code == 409 and "c2" in d.json()["error"], d.text
        d = requests.delete(f"{b}/v1/backups/c1", params={"target": "s3", "chain": "true"})
        assert d.status_code == 204, d.text
        assert requests.get(f"{a}/v1/backups", params={"target": "s3"}).json() == ["c0"]
        # The same in the data directory: a local chain restores too.
        backup(a, "docs", "l0")
        change(a, "docs", 200, seed=9)
        backup(a, "docs", "l1", incremental_from="l0")
        r = requests.post(f"{a}/v1/backups/l1/restore", json={"target_index_name": "local_copy"})
        assert r.status_code == 201, r.text
        linked(a, "local_copy")
        assert answers(a, "docs", qs) == answers(a, "local_copy", qs)
        assert requests.delete(f"{a}/v1/backups/l0").status_code == 409
        # An incremental base on another target, or unknown: refused at submit.
        bad = requests.post(f"{a}/v1/index/docs/backup", json={"name": "x", "incremental_from": "nope"})
        assert bad.status_code == 404, bad.text


def test_backups_and_scratch_on_other_directories(s3, tmp_path):
    """--backup-dir and --temp-dir (another volume, as Qdrant's snapshots_path / temp_path):
    archives live there, not in the data directory; a restore from a target fetches into the
    temp dir and leaves nothing behind."""
    bdir, tdir = tmp_path / "archives", tmp_path / "scratch"
    with serve("--backup-target", s3.target("s3", "dirs"), "--backup-dir", str(bdir), "--temp-dir", str(tdir),
               env=s3.env()) as (a, data):
        fill(a, "docs", 1000)
        backup(a, "docs", "here")
        backup(a, "docs", "there", target="s3")
        assert (bdir / "here.tar").exists()
        assert not os.path.exists(os.path.join(data, "backups", "here.tar"))
        for name, extra in (("here", {}), ("there", {"target": "s3"})):
            r = requests.post(f"{a}/v1/backups/{name}/restore", json={"target_index_name": f"r_{name}", **extra})
            assert r.status_code == 201, r.text
        assert tdir.exists() and list(tdir.iterdir()) == []
        qs = vectors(5, 3)
        linked(a, "r_there")
        assert answers(a, "r_here", qs) == answers(a, "r_there", qs)


def test_the_v2_routes_back_up_to_list_and_restore_from_a_target(s3, tmp_path):
    target = s3.target("s3", "v2")
    with serve("--backup-target", target, env=s3.env(), log=tmp_path / "a.log") as (a, _):
        fill(a, "docs", 2000)
        v2 = a.replace("/api", "/api/v2")
        r = requests.post(f"{v2}/collection/docs/backup", json={"name": "snap", "target": "s3"})
        assert r.status_code == 202, r.text
        assert wait_job(a, r.json()["job_id"])["status"] == "completed"
        assert requests.get(f"{v2}/backup", params={"target": "s3"}).json() == ["snap"]
        assert requests.get(f"{v2}/backup").json() == [], "nothing in the data directory"
        info = requests.get(f"{v2}/backup/snap/info", params={"target": "s3"})
        assert info.status_code == 200 and info.json()["vector_count"] == 2000, info.text
        r = requests.post(f"{v2}/backup/snap/restore", json={"target_collection_name": "copy", "target": "s3"})
        assert r.status_code == 202, r.text
        assert wait_job(a, r.json()["job_id"])["status"] == "completed"
        linked(a, "copy")
        qs = vectors(5, seed=9)
        assert answers(a, "docs", qs) == answers(a, "copy", qs)
        dl = requests.get(f"{v2}/backup/snap/download", params={"target": "s3"})
        assert dl.status_code == 200, dl.text
        assert hashlib.sha256(dl.content).hexdigest() == info.json()["archive_sha256"]
        assert requests.delete(f"{v2}/backup/snap", params={"target": "s3"}).status_code == 200
        assert requests.get(f"{v2}/backup", params={"target": "s3"}).json() == []
