"""Scheduled backups against a real S3 server (SeaweedFS on 127.0.0.1): runs every period,
incremental between full ones, retention keeps the newest and every base they need; a
schedule is restart-safe — not run again early after a restart, run once at start when a
period was missed while the server was down."""
import json
import os
import sys
import time

import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from cairn_server import serve  # noqa: E402
from seaweedfs import SeaweedFS  # noqa: E402
from test_backup_targets import fill  # noqa: E402


@pytest.fixture(scope="module")
def s3():
    store = SeaweedFS().start()
    yield store
    store.close()


def listed(base, target):
    return requests.get(f"{base}/v1/backups", params={"target": target}).json()


def wait_for(cond, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("condition not met")


def test_a_schedule_runs_each_period_and_retention_keeps_whole_chains(s3, tmp_path):
    target = s3.target("s3", "sched")
    spec = "index=docs every=1s keep=2 target=s3 full_every=2"
    with serve("--backup-target", target, "--backup-schedule", spec, env=s3.env(), log=tmp_path / "a.log") as (a, _):
        fill(a, "docs", 2000)
        # Runs keep coming: wait for five started runs.
        seen = set()

        def five():
            [st] = requests.get(f"{a}/v1/backups/schedules").json()["schedules"]
            if st["last_job"]:
                seen.add(st["last_job"])
            return len(seen) >= 5
        wait_for(five)
        [st] = requests.get(f"{a}/v1/backups/schedules").json()["schedules"]
        assert (st["id"], st["keep"], st["full_every"]) == ("docs@s3", 2, 2)
        time.sleep(1.5)
        names = listed(a, "s3")
        assert all(n.startswith("docs-sched-") for n in names)
        # keep=2, chains of two (full, incremental): 2 to 3 archives (a kept incremental
        # keeps its full base).
        assert 2 <= len(names) <= 3, names
        recs = {t["name"]: t for t in requests.get(f"{a}/v1/backups/targets").json()["targets"]}["s3"]["backups"]
        by_name = {r["name"]: r for r in recs}
        for r in recs:
            assert r.get("base") is None or r["base"] in by_name, (r, names)
        # The newest restores (its chain is complete).
        r = requests.post(f"{a}/v1/backups/{names[-1]}/restore",
                          json={"target_index_name": "copy", "target": "s3"})
        assert r.status_code == 201, r.text


def test_a_schedule_is_restart_safe(s3, tmp_path):
    data = str(tmp_path / "data")
    os.makedirs(data)
    spec = "index=docs every=1h keep=5"
    with serve("--backup-schedule", spec, data=data) as (a, _):
        fill(a, "docs", 100)
        # Never ran: it runs at start (as soon as the index exists).
        wait_for(lambda: len(requests.get(f"{a}/v1/backups").json()) == 1)
    with serve("--backup-schedule", spec, data=data) as (a, _):
        time.sleep(2)
        assert len(requests.get(f"{a}/v1/backups").json()) == 1, "not due yet: no second run"
        [st] = requests.get(f"{a}/v1/backups/schedules").json()["schedules"]
        assert st["next_run"] - st["last_run"] == 3_600_000
    # The server was down for three periods: one run at start, not three.
    path = os.path.join(data, "schedules.json")
    state = json.load(open(path))
    state["last_run"]["docs@local"] -= 3 * 3_600_000
    json.dump(state, open(path, "w"))
    with serve("--backup-schedule", spec, data=data) as (a, _):
        wait_for(lambda: len(requests.get(f"{a}/v1/backups").json()) == 2)
        time.sleep(2)
        assert len(requests.get(f"{a}/v1/backups").json()) == 2


def test_a_schedule_naming_an_unknown_target_stops_the_server_with_a_reason(tmp_path):
    with pytest.raises(RuntimeError):
        with serve("--backup-schedule", "index=docs every=1h target=nope", log=tmp_path / "x.log"):
            pass
    assert "no --backup-target named \"nope\"" in open(tmp_path / "x.log").read()
