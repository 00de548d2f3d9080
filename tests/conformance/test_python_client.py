"""The official Python client `endee==0.1.27`, unchanged, against a real `cairn serve`.

Starts the release binary on a free port on 127.0.0.1 with a fresh data directory and runs the
client's documented flows: create, list, describe, upsert, query with and without filters, get,
delete, delete by filter, update filters, delete index.
"""
import os
import sys
import random
import time

import pytest
import requests
from endee import Endee
from endee.exceptions import NotFoundException, ConflictException, APIException

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from cairn_server import serve  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with serve() as (base, _):
        yield base + "/v1"


@pytest.fixture
def client(server):
    c = Endee()
    c.set_base_url(server)
    return c


def vecs(n, dim, seed=1):
    r = random.Random(seed)
    return [[r.uniform(-1, 1) for _ in range(dim)] for _ in range(n)]


@pytest.mark.parametrize("precision", ["float32", "int8", "float16", "int16"])
def test_documented_flow(client, precision):
    name = f"docs_{precision}"
    client.create_index(name=name, dimension=16, space_type="cosine", precision=precision)
    names = [i["name"] for i in client.list_indexes()["indexes"]]
    assert name in names
    index = client.get_index(name)
    assert index.dimension == 16 and index.space_type == "cosine" and index.count == 0
    data = vecs(300, 16)
    index.upsert([
        {"id": f"v{i}", "vector": v, "meta": {"title": f"doc {i}"},
         "filter": {"group": "even" if i % 2 == 0 else "odd", "n": i}}
        for i, v in enumerate(data)
    ])
    assert index._refresh_metadata()["count"] == 300  # get_index is lru-cached by the client
    res = index.query(vector=data[10], top_k=5)
    assert len(res) == 5
    assert res[0]["id"] == "v10"
    assert res[0]["meta"] == {"title": "doc 10"}
    assert res[0]["similarity"] > 0.97
    res = index.query(vector=data[10], top_k=10, filter=[{"group": {"$eq": "odd"}}])
    assert len(res) == 10 and all(r["filter"]["group"] == "odd" for r in res)
    res = index.query(vector=data[3], top_k=10, filter=[{"n": {"$range": [0, 20]}}, {"group": {"$in": ["odd"]}}],
                      include_vectors=True)
    assert {r["id"] for r in res} <= {f"v{i}" for i in range(1, 21, 2)}
    assert len(res[0]["vector"]) == 16
    got = index.get_vector("v7")
    assert got["id"] == "v7" and got["meta"] == {"title": "doc 7"} and got["filter"]["n"] == 7
    assert len(got["vector"]) == 16
    index.delete_vector("v7")
    with pytest.raises(NotFoundException):
        index.get_vector("v7")
    out = index.delete_with_filter([{"group": {"$eq": "even"}}])
    assert "150 vectors deleted" in out
    assert index._refresh_metadata()["count"] == 149
    assert "1 filters updated" in index.update_filters([{"id": "v9", "filter": {"group": "nine"}}])
    res = index.query(vector=data[9], top_k=3, filter=[{"group": {"$eq": "nine"}}])
    assert [r["id"] for r in res] == ["v9"]
    client.delete_index(name)
    assert name not in [i["name"] for i in client.list_indexes()["indexes"]]


def test_errors_surface_as_client_exceptions(client):
    client.create_index(name="errs", dimension=4, space_type="l2", precision="float32")
    with pytest.raises(ConflictException):
        client.create_index(name="errs", dimension=4, space_type="l2", precision="float32")
    with pytest.raises(NotFoundException):
        client.get_index("no_such_index")
    index = client.get_index("errs")
    with pytest.raises(APIException):
        index.query(vector=[0, 0, 0, 1], top_k=3, filter=[{"a": {"$gt": 1}}])
    index.upsert([{"id": "a", "vector": [1, 2, 3, 4]}])
    res = index.query(vector=[1, 2, 3, 4], top_k=1)
    assert res[0]["id"] == "a" and abs(res[0]["distance"]) < 1e-5, "l2: distance shown is squared L2"
    client.delete_index("errs")


@pytest.mark.parametrize("sparse_model", ["default", "endee_bm25"])
def test_hybrid_flow(client, sparse_model):
    """Dense + sparse in one index: dense-only, sparse-only and fused queries, with a filter."""
    name = f"hybrid_{sparse_model}"
    client.create_index(name=name, dimension=8, space_type="cosine", precision="float32",
                        sparse_model=sparse_model)
    index = client.get_index(name)
    assert index.is_hybrid and index.sparse_model == sparse_model
    data = vecs(200, 8, seed=7)
    # Document i holds terms i, i+1000 (shared by ten documents) and 5000 (shared by all).
    index.upsert([
        {"id": f"h{i}", "vector": v, "meta": {"i": i}, "filter": {"g": i % 2},
         "sparse_indices": [i, 1000 + i // 10, 5000], "sparse_values": [2.0, 1.0, 0.1]}
        for i, v in enumerate(data)
    ])
    dense = index.query(vector=data[42], top_k=3)
    assert dense[0]["id"] == "h42"
    sparse = index.query(sparse_indices=[17], sparse_values=[1.0], top_k=3)
    assert [r["id"] for r in sparse] == ["h17"]
    sparse = index.query(sparse_indices=[1003], sparse_values=[1.0], top_k=20)
    assert {r["id"] for r in sparse} == {f"h{i}" for i in range(30, 40)}
    # Fused: the dense winner for data[42] and the sparse winner for term 17 both rank high.
    both = index.query(vector=data[42], sparse_indices=[17], sparse_values=[1.0], top_k=5)
    assert {"h42", "h17"} <= {r["id"] for r in both[:2]}
    only_dense = index.query(vector=data[42], sparse_indices=[17], sparse_values=[1.0], top_k=1,
                             dense_rrf_weight=1.0)
    assert only_dense[0]["id"] == "h42"
    filtered = index.query(vector=data[42], sparse_indices=[1004], sparse_values=[1.0], top_k=10,
                           filter=[{"g": {"$eq": 1}}])
    assert filtered and all(r["filter"]["g"] == 1 for r in filtered)
    got = index.get_vector("h17")
    assert got["sparse_indices"] == [17, 1001, 5000]
    assert got["sparse_values"] == pytest.approx([2.0, 1.0, 0.1], rel=1e-6)  # float32 on the wire
    # Rebuild with new graph parameters, poll to the end; the server's describe says so.
    started = index.rebuild(M=24, ef_con=200)
    assert started["status"] == "in_progress"
    assert started["previous_config"] == {"M": 16, "ef_con": 128}
    assert started["new_config"] == {"M": 24, "ef_con": 200}
    assert started["total_vectors"] == 200
    status = wait_rebuild(index)
    assert status["vectors_processed"] == status["total_vectors"] == 200
    info = client.get_index(name).describe()
    assert (info["M"], info["ef_con"]) == (24, 200)
    assert index.query(vector=data[42], sparse_indices=[17], sparse_values=[1.0],
                       top_k=2)[0]["id"] in {"h42", "h17"}
    # A dense-only index refuses a sparse query with a clear error.
    client.create_index(name=f"{name}_dense", dimension=8, space_type="cosine", precision="float32")
    with pytest.raises(Exception):
        client.get_index(f"{name}_dense").query(sparse_indices=[1], sparse_values=[1.0], top_k=1)
    client.delete_index(f"{name}_dense")
    client.delete_index(name)


def wait_rebuild(index, timeout=60):
    """Polls `rebuild_status()` until the rebuild ends; returns the last status."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        status = index.rebuild_status()
        assert status["status"] in ("in_progress", "completed"), status
        assert 0.0 <= status["percent_complete"] <= 100.0
        if status["status"] == "completed":
            assert status["percent_complete"] == 100.0
            return status
        time.sleep(0.02)
    raise AssertionError(f"rebuild did not finish: {status}")


def test_rebuild_while_writes_and_searches_go_on(client):
    """A rebuild runs in the background: searches and writes during it, the writes are in the
    rebuilt graph, bad parameters and unknown indexes get the client's exceptions, one rebuild
    per index, no delete while it runs, cancel leaves the old graph."""
    name = "rebuild_live"
    client.create_index(name=name, dimension=32, space_type="l2", precision="float32",
                        M=8, ef_con=64)
    index = client.get_index(name)
    assert index.rebuild_status()["status"] == "idle"
    data = vecs(4000, 32, seed=11)
    for c in range(0, 4000, 1000):
        index.upsert([{"id": f"r{i}", "vector": data[i]} for i in range(c, c + 1000)])
    index.rebuild(M=32, ef_con=400)
    during = vecs(50, 32, seed=12)
    for i, v in enumerate(during):
        index.upsert([{"id": f"d{i}", "vector": v}])
        assert index.query(vector=data[i], top_k=1)[0]["id"] == f"r{i}"
    wait_rebuild(index)
    fresh = client.get_index(name)
    assert (fresh.M, fresh.ef_con) == (32, 400)
    for i, v in enumerate(during):
        assert index.query(vector=v, top_k=1, ef=64)[0]["id"] == f"d{i}"
    with pytest.raises(APIException):
        index.rebuild(M=600, ef_con=128)
    # A slow rebuild: a second one is refused, so is deleting the index; cancel stops it and
    # leaves the graph as it was.
    slow = index.rebuild(M=64, ef_con=2000)
    with pytest.raises(ConflictException):
        index.rebuild(M=48, ef_con=100)
    with pytest.raises(ConflictException):
        client.delete_index(name)
    jobs = requests.get(index.url + "/backups/jobs").json()["jobs"]
    assert any(j["job_id"] == slow["job_id"] and j["kind"] == "rebuild" for j in jobs)
    cancelled = requests.delete(index.url + f"/backups/jobs/{slow['job_id']}").json()
    assert cancelled["state"] in ("cancelling", "cancelled"), cancelled
    status = index.rebuild_status()
    for _ in range(200):
        if status["status"] != "in_progress":
            break
        time.sleep(0.02)
        status = index.rebuild_status()
    assert (status["status"], status["state"], status["error"]) == ("failed", "cancelled", "cancelled")
    fresh = client.get_index(name)
    assert (fresh.M, fresh.ef_con) == (32, 400)
    client.delete_index(name)
    with pytest.raises(NotFoundException):
        index.rebuild_status()
