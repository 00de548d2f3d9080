"""The OpenAPI document against the running server: schemathesis (PyPI) generates requests for
every operation from `/api/v1/openapi.json` — valid and invalid bodies, parameters, and
stateful sequences — and checks that no answer is a 5xx and that every status, content type
and JSON body is one the document declares. An index and a collection exist first, so the
routes that name one reach real data, not only 404s.
Run by the test command in its own virtualenv (`tests/.venv-api`).
"""
import json
import os
import re
import subprocess
import sys

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from cairn_server import serve  # noqa: E402

TOKEN = "openapi-token"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def seed(base):
    h = {"Authorization": TOKEN}
    r = requests.post(base + "/v1/index/create", headers=h,
                      json={"index_name": "docs", "dim": 4, "space_type": "cosine", "precision": "float32"})
    assert r.status_code == 200, r.text
    items = [{"id": f"v{i}", "vector": [i, 1, 0, 1], "meta": {"i": i}, "filter": {"g": i % 2}} for i in range(50)]
    assert requests.post(base + "/v1/index/docs/vector/insert", headers=h, json=items).status_code == 200
    r = requests.post(base + "/v1/index/docs/backup", headers=h, json={"name": "nightly"})
    assert r.status_code == 202, r.text
    r = requests.post(base + "/v2/collection", headers=h, json={"name": "col", "fields": [
        {"name": "e", "type": "vector", "params": {"dimension": 4, "precision": "float32"}},
        {"name": "kw", "type": "sparse", "sparse_model": "default"}]})
    assert r.status_code == 200, r.text


def test_the_document_describes_every_route_and_every_answer(tmp_path):
    with serve("--auth-token", TOKEN) as (base, _):
        doc = requests.get(base + "/v1/openapi.json").json()  # no token needed
        assert doc["openapi"].startswith("3.1")
        ops = [(m, p) for p, item in doc["paths"].items() for m in item]
        assert len(ops) >= 70, len(ops)
        assert len({item[m]["operationId"] for p, item in doc["paths"].items() for m in item}) == len(ops)
        seed(base)
        # Names that exist, so generated requests reach them (schemathesis varies the rest).
        (tmp_path / "schemathesis.toml").write_text(
            '[parameters]\n"path.name" = "docs"\n"path.c" = "col"\n"path.b" = "nightly"\n')
        out = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "schemathesis"), "run", base + "/v1/openapi.json",
             "-H", f"Authorization: {TOKEN}", "-c", CHECKS, "--max-examples", "25", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=900)
        text = out.stdout + out.stderr
        summary = [l for l in text.splitlines() if re.search(r"\d+ generated", l)]
        print("\n".join(l for l in text.splitlines() if "Seed:" in l or "generated" in l or "Tested:" in l))
        assert out.returncode == 0 and summary and "failed" not in summary[-1], text[-6000:]
        # The server is still whole: its seeded index answers.
        r = requests.get(base + "/v1/health")
        assert r.status_code == 200
