"""The official Python client `endee==2.2.0` (`/api/v2`), unchanged, against a real `cairn serve`.

Its documented flows on one server that also speaks `/api/v1`: a collection with a vector and a
sparse field, upsert, search each field and fused with `endee.rerank`, filters, get / delete /
delete-by-filter / update filters, graph links, rebuild + status, shrink, backup + status,
download (`?token=`), upload, restore + status; a `/api/v1` index seen as a collection;
databases and tokens (root administers, a database token sees only its database, read-only
tokens, deactivation, deletion); several dense fields and a multi_vector field; dense recall on
real embeddings; and what is not built yet refused with a clear 400.
Run by the test command in its own virtualenv (`tests/.venv-v2`).
"""
import os
import sys
import random
import time

import pytest
import requests
from endee import Endee, rerank
from endee.exceptions import (APIException, AuthenticationException, ConflictException,
                              ForbiddenException, NotFoundException)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from cairn_server import serve  # noqa: E402
TOKEN = "v2-conformance-token"
DATA = {}


@pytest.fixture(scope="module")
def server():
    with serve("--auth-token", TOKEN) as (base, data):
        DATA["dir"] = data
        yield base


@pytest.fixture
def client(server):
    c = Endee(token=TOKEN)
    c.set_base_url(server + "/v2")
    return c


def vecs(n, dim, seed=1):
    r = random.Random(seed)
    return [[r.uniform(-1, 1) for _ in range(dim)] for _ in range(n)]


def wait(status_fn, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        s = status_fn()
        if s["status"] not in ("running", "in_progress"):
            return s
        time.sleep(0.02)
    raise AssertionError(f"job did not finish: {s}")


def test_collection_flow(client, tmp_path):
    client.create_collection("docs", fields=[
        {"name": "embedding", "type": "vector",
         "params": {"dimension": 16, "space_type": "cosine", "precision": "float32", "M": 12}},
        {"name": "keywords", "type": "sparse", "sparse_model": "endee_bm25"},
    ])
    assert "docs" in [c["name"] for c in client.list_collections()]
    col = client.get_collection("docs")
    info = col.describe()
    assert [f["name"] for f in info["fields"]] == ["embedding", "keywords"]
    assert info["fields"][0]["params"]["M"] == 12
    data = vecs(300, 16, seed=3)
    objs = [{"id": f"o{i}", "meta": {"i": i}, "filter": {"g": i % 3, "tag": "even" if i % 2 == 0 else "odd"},
             "fields": {"embedding": [x * 5 for x in v],
                        "keywords": {"indices": [i, 1000 + i // 10], "values": [1.0, 0.5]}}}
            for i, v in enumerate(data)]
    assert col.upsert(objs[:200])["upserted"] == 200
    assert col.upsert(objs[200:])["upserted"] == 100

    res = col.search(fields={"embedding": {"query": data[42], "limit": 5},
                             "keywords": {"query": {"indices": [42], "values": [1.0]}, "limit": 5}})
    dense, sparse = res["results"]["embedding"], res["results"]["keywords"]
    assert dense[0]["id"] == "o42" and dense[0]["meta"] == {"i": 42}
    assert sparse[0]["id"] == "o42" and sparse[0]["filter"] == {"g": 0, "tag": "even"}
    fused = rerank(res, limit=3)["results"]
    assert fused[0]["id"] == "o42"

    filtered = col.search(fields={"embedding": {"query": data[42], "limit": 10}},
                          filter=[{"tag": {"$eq": "odd"}}], prefilter_cardinality_threshold=1000)
    hits = filtered["results"]["embedding"]
    assert hits and all(h["filter"]["tag"] == "odd" for h in hits)

    got = col.get_objects(["o7", "missing", "o8"])
    assert [o["id"] for o in got] == ["o7", "o8"]
    assert got[0]["meta"] == {"i": 7}
    # The client multiplies the stored unit vector by the norm it kept in meta.
    assert got[0]["vectors"]["embedding"] == pytest.approx([x * 5 for x in data[7]], rel=1e-4, abs=1e-5)
    assert got[0]["sparses"]["keywords"] == {"indices": [7, 1000], "values": [1.0, 0.5]}

    links = col.get_neighbors_by_id("o7", "embedding")
    assert links["id"] == "o7" and links["links"] and all(l.startswith("o") for l in links["links"])

    assert col.update_filters([{"id": "o1", "filter": {"g": 9, "tag": "moved"}}])["updated"] == 1
    assert col.search(fields={"embedding": {"query": data[1], "limit": 3}},
                      filter=[{"g": {"$eq": 9}}])["results"]["embedding"][0]["id"] == "o1"
    assert col.delete_object("o2") == {"deleted": "o2"}
    with pytest.raises(NotFoundException):
        col.delete_object("o2")
    assert col.delete_by_filter([{"g": {"$eq": 2}}])["deleted"] == 99  # o2 is gone already
    assert client.get_collection("docs").describe()["count"] == 200

    # Rebuild the vector field with new parameters; poll the database's rebuild status.
    started = col.rebuild([{"field": "embedding", "M": 20, "ef_con": 100}, {"field": "keywords"}])
    assert started["status"] == "in_progress" and started["fields_total"] == 1
    done = wait(col.rebuild_status)
    assert done["status"] == "completed" and done["percent_complete"] == 100.0
    assert done["field"] == "embedding" and done["new_config"] == {"M": 20, "ef_con": 100}
    assert client.get_collection("docs").describe()["fields"][0]["params"]["M"] == 20

    # Overwrites leave superseded records in the log; shrink folds them into a checkpoint.
    col.upsert([o for o in objs[:100] if o["id"] not in ("o2",) and o["filter"]["g"] != 2])
    shrunk = col.shrink()
    assert shrunk["status"] == "ok" and shrunk["reclaimed_bytes"] > 0

    # Backup, status, download with ?token=, upload under a new name, restore, status.
    assert col.create_backup("snap") == {"backup_name": "snap", "status": "in_progress",
                                         "job_id": client.backup_status()["job_id"]}
    assert wait(client.backup_status)["status"] == "completed"
    assert "snap" in client.list_backups()
    assert client.backup_info("snap")["vector_count"] == 200
    path = client.download_backup("snap", str(tmp_path))
    assert os.path.getsize(path) > 0
    client.upload_backup(path, "snap_copy")
    assert sorted(client.list_backups()) == ["snap", "snap_copy"]
    client.restore_backup("snap_copy", "docs_restored")
    assert wait(client.restore_status)["status"] == "completed"
    restored = client.get_collection("docs_restored")
    assert [f["name"] for f in restored.describe()["fields"]] == ["embedding", "keywords"]
    assert restored.search(fields={"embedding": {"query": data[42], "limit": 1}})["results"]["embedding"][0]["id"] == "o42"
    client.delete_backup("snap_copy")
    assert client.list_backups() == ["snap"]

    with pytest.raises(ConflictException):
        client.create_collection("docs", fields=[{"name": "e", "type": "vector", "params": {"dimension": 4}}])
    client.delete_collection("docs_restored")
    client.delete_collection("docs")
    with pytest.raises(NotFoundException):
        client.get_collection("docs")


def test_a_v1_index_is_a_collection(client, server):
    h = {"Authorization": TOKEN}
    r = requests.post(server + "/v1/index/create", headers=h,
                      json={"index_name": "legacy", "dim": 8, "space_type": "l2", "precision": "float32",
                            "sparse_model": "default"})
    assert r.status_code == 200, r.text
    r = requests.post(server + "/v1/index/legacy/vector/insert", headers=h,
                      json=[{"id": "a", "vector": [1, 0, 0, 0, 0, 0, 0, 0], "sparse_indices": [3], "sparse_values": [1.0]},
                            {"id": "b", "vector": [0, 1, 0, 0, 0, 0, 0, 0], "sparse_indices": [4], "sparse_values": [1.0]}])
    assert r.status_code == 200, r.text
    col = client.get_collection("legacy")
    assert [(f["name"], f["type"]) for f in col.describe()["fields"]] == [("dense", "vector"), ("sparse", "sparse")]
    res = col.search(fields={"dense": {"query": [0, 1, 0, 0, 0, 0, 0, 0], "limit": 1},
                             "sparse": {"query": {"indices": [3], "values": [1.0]}, "limit": 1}})
    assert res["results"]["dense"][0]["id"] == "b" and res["results"]["sparse"][0]["id"] == "a"
    # Objects written through v2 are vectors through v1.
    col.upsert([{"id": "c", "fields": {"dense": [0, 0, 1, 0, 0, 0, 0, 0], "sparse": {"indices": [5], "values": [2.0]}}}])
    r = requests.post(server + "/v1/index/legacy/vector/get", headers=h, json={"id": "c"})
    assert r.status_code == 200
    client.delete_collection("legacy")


def test_several_dense_fields_and_multi_vector(client):
    """A second vector field and a multi_vector field (late interaction) beside the first."""
    client.create_collection("multi", fields=[
        {"name": "body", "type": "vector", "params": {"dimension": 8, "space_type": "cosine", "precision": "float32"}},
        {"name": "title", "type": "vector", "params": {"dimension": 4, "space_type": "cosine", "precision": "float16"}},
        {"name": "colbert", "type": "multi_vector",
         "params": {"dimension": 6, "space_type": "cosine", "precision": "float32", "pooling": "max"}},
        {"name": "kw", "type": "sparse", "sparse_model": "default"},
    ])
    col = client.get_collection("multi")
    assert [(f["name"], f["type"]) for f in col.describe()["fields"]] == [
        ("body", "vector"), ("title", "vector"), ("colbert", "multi_vector"), ("kw", "sparse")]
    r = random.Random(5)
    g = lambda d: [r.gauss(0, 1) for _ in range(d)]
    objs = [{"id": f"m{i}", "meta": {"i": i}, "filter": {"g": i % 2},
             "fields": {"body": g(8), "title": g(4), "colbert": [g(6) for _ in range(1 + i % 3)],
                        "kw": {"indices": [i], "values": [1.0]}}} for i in range(200)]
    assert col.upsert(objs)["upserted"] == 200
    o = objs[17]["fields"]
    res = col.search(fields={"body": {"query": o["body"], "limit": 3}, "title": {"query": o["title"], "limit": 3},
                             "colbert": {"query": o["colbert"], "limit": 3}, "kw": {"query": {"indices": [17], "values": [1.0]}}})
    assert all(res["results"][f][0]["id"] == "m17" for f in ("body", "title", "colbert", "kw")), res
    assert rerank(res, limit=1)["results"][0]["id"] == "m17"
    got = col.get_objects(["m17"])[0]
    assert got["vectors"]["title"] == pytest.approx(o["title"], rel=1e-2, abs=1e-2)  # float16
    assert len(got["multi_vectors"]["colbert"]) == len(o["colbert"])
    assert got["multi_vectors"]["colbert"][0] == pytest.approx(o["colbert"][0], rel=1e-4, abs=1e-5)
    assert col.get_neighbors_by_id("m17", "colbert")["links"]
    with pytest.raises(APIException, match="missing a value"):
        col.upsert([{"id": "x", "fields": {"body": g(8), "title": g(4)}}])
    # Rebuild a further field's graph; the database's rebuild status names it.
    col.rebuild([{"field": "title", "M": 8, "ef_con": 40}])
    done = wait(col.rebuild_status)
    assert (done["status"], done["field"]) == ("completed", "title")
    title = [f for f in client.get_collection("multi").describe()["fields"] if f["name"] == "title"][0]
    assert (title["params"]["M"], title["params"]["ef_con"]) == (8, 40)
    assert col.search(fields={"title": {"query": o["title"], "limit": 1}})["results"]["title"][0]["id"] == "m17"
    # Several dense fields in one request, as the client documents: one job, field after field.
    started = col.rebuild([{"field": "body", "M": 20, "ef_con": 200}, {"field": "colbert", "M": 12, "ef_con": 120},
                           {"field": "kw"}])
    assert (started["status"], started["fields_total"]) == ("in_progress", 2)
    done = wait(col.rebuild_status)
    assert (done["status"], done["fields_done"], done["fields_total"], done["field"]) == ("completed", 2, 2, "colbert")
    assert done["new_config"] == {"M": 12, "ef_con": 120}
    params = {f["name"]: f.get("params", {}) for f in client.get_collection("multi").describe()["fields"]}
    assert (params["body"]["M"], params["body"]["ef_con"], params["colbert"]["M"]) == (20, 200, 12)
    assert col.search(fields={"colbert": {"query": o["colbert"], "limit": 1}})["results"]["colbert"][0]["id"] == "m17"
    with pytest.raises(APIException, match="named twice"):
        col.rebuild([{"field": "title", "M": 8}, {"field": "title", "M": 12}])
    client.delete_collection("multi")


def test_the_documented_field_examples_with_int8_fields(client):
    """The client's own examples: int8 on every dense field (multi_vector with pooling_method)."""
    from endee.schema import CollectionFieldConfig, CollectionFieldParams
    colbert = CollectionFieldConfig(name="multivec", type="multi_vector", pooling_method="average_pooling",
                                    params=CollectionFieldParams(dimension=16, space_type="cosine", precision="int8"))
    client.create_collection("docs8", fields=[
        {"name": "dense", "type": "vector", "params": {"dimension": 16, "space_type": "cosine", "precision": "int8"}},
        {"name": "second", "type": "vector", "params": {"dimension": 8, "space_type": "cosine", "precision": "int8e"}},
        colbert.to_dict(),
        {"name": "keywords", "type": "sparse", "sparse_model": "default"},
    ])
    col = client.get_collection("docs8")
    kinds = {f["name"]: (f["type"], f["params"].get("precision")) for f in col.describe()["fields"] if "params" in f}
    assert kinds == {"dense": ("vector", "int8"), "second": ("vector", "int8"), "multivec": ("multi_vector", "int8")}
    r = random.Random(8)
    g = lambda d: [r.gauss(0, 1) for _ in range(d)]
    objs = [{"id": f"d{i}", "fields": {"dense": g(16), "second": g(8), "multivec": [g(16) for _ in range(1 + i % 4)],
                                       "keywords": {"indices": [i], "values": [1.0]}}} for i in range(300)]
    col.upsert(objs)
    o = objs[123]["fields"]
    res = col.search(fields={"dense": {"query": o["dense"], "limit": 1}, "second": {"query": o["second"], "limit": 1},
                             "multivec": {"query": o["multivec"], "limit": 1}})
    assert all(res["results"][f][0]["id"] == "d123" for f in ("dense", "second", "multivec")), res
    got = col.get_objects(["d123"])[0]
    assert got["vectors"]["second"] == pytest.approx(o["second"], rel=0.05, abs=0.05)  # int8 codes, decoded
    with pytest.raises(APIException, match="precision"):
        client.create_collection("bin2", fields=[
            {"name": "a", "type": "vector", "params": {"dimension": 8}},
            {"name": "b", "type": "vector", "params": {"dimension": 8, "precision": "binary"}}])
    client.delete_collection("docs8")


def test_collections_without_a_vector_field(client):
    """Only sparse, or only multi_vector + sparse: written, searched, fused, rebuilt."""
    client.create_collection("kw_only", fields=[{"name": "kw", "type": "sparse", "sparse_model": "endee_bm25"}])
    client.create_collection("late", fields=[
        {"name": "colbert", "type": "multi_vector",
         "params": {"dimension": 8, "space_type": "cosine", "precision": "float32", "pooling": "mean"}},
        {"name": "kw", "type": "sparse", "sparse_model": "default"}])
    kw_only, late = client.get_collection("kw_only"), client.get_collection("late")
    assert [f["name"] for f in kw_only.describe()["fields"]] == ["kw"]
    assert [f["type"] for f in late.describe()["fields"]] == ["multi_vector", "sparse"]
    r = random.Random(9)
    g = lambda d: [r.gauss(0, 1) for _ in range(d)]
    kw_only.upsert([{"id": f"k{i}", "filter": {"g": i % 2}, "fields": {"kw": {"indices": [i % 10, 100 + i], "values": [1.0, 0.5]}}}
                    for i in range(100)])
    res = kw_only.search(fields={"kw": {"query": {"indices": [3], "values": [1.0]}, "limit": 20}})
    assert sorted(h["id"] for h in res["results"]["kw"]) == sorted(f"k{i}" for i in range(3, 100, 10))
    docs = {f"l{i}": [g(8) for _ in range(1 + i % 3)] for i in range(150)}
    late.upsert([{"id": k, "fields": {"colbert": v, "kw": {"indices": [int(k[1:])], "values": [1.0]}}}
                 for k, v in docs.items()])
    res = late.search(fields={"colbert": {"query": docs["l42"], "limit": 3}, "kw": {"query": {"indices": [42], "values": [1.0]}}})
    assert res["results"]["colbert"][0]["id"] == "l42" and res["results"]["kw"][0]["id"] == "l42"
    assert rerank(res, limit=1)["results"][0]["id"] == "l42"
    assert len(late.get_objects(["l41"])[0]["multi_vectors"]["colbert"]) == 3
    with pytest.raises(APIException, match="not a field"):  # no dense field to query
        client._call("POST", "/collection/kw_only/search", json={"fields": [{"dense": {"query": g(4)}}]})
    late.rebuild([{"field": "colbert", "M": 8}])
    assert wait(late.rebuild_status)["status"] == "completed"
    assert late.search(fields={"colbert": {"query": docs["l7"], "limit": 1}})["results"]["colbert"][0]["id"] == "l7"
    client.delete_collection("kw_only")
    client.delete_collection("late")


def test_what_is_not_built_yet_is_refused_clearly(client):
    with pytest.raises(APIException, match="sparse field"):
        client.create_collection("two_sparse", fields=[
            {"name": "a", "type": "sparse", "sparse_model": "default"},
            {"name": "b", "type": "sparse", "sparse_model": "endee_bm25"}])
    with pytest.raises(APIException, match="dimension"):
        client.create_collection("nodim", fields=[{"name": "a", "type": "vector", "params": {}}])
    client.create_collection("one", fields=[{"name": "e", "type": "vector",
                                             "params": {"dimension": 4, "precision": "float32"}}])
    col = client.get_collection("one")
    with pytest.raises(ValueError):  # the client itself checks field names it knows
        col.upsert([{"id": "x", "fields": {"nope": [1, 2, 3, 4]}}])
    with pytest.raises(APIException, match="missing a value"):
        col.upsert([{"id": "x", "meta": {"a": 1}}])
    assert client.get_collection("one").describe()["count"] == 0
    client.delete_collection("one")


def test_token_in_query_only_for_downloads(client, server):
    assert requests.get(server + "/v2/collection").status_code == 401
    assert requests.get(server + "/v2/collection", params={"token": TOKEN}).status_code == 401
    assert requests.get(server + "/v2/backup/none/download", params={"token": "wrong"}).status_code == 401
    assert requests.get(server + "/v2/backup/none/download", params={"token": TOKEN}).status_code == 404


def as_token(server, token):
    c = Endee(token=token)
    c.set_base_url(server + "/v2")
    return c


def test_databases_and_tokens_isolate(client, server, tmp_path):
    fields = [{"name": "e", "type": "vector", "params": {"dimension": 4, "precision": "float32"}}]
    alice_tok = client.create_database("alice")
    bob_tok = client.create_database("bob", db_type="starter")
    assert alice_tok.startswith("alice:") and len(alice_tok) > 30
    assert {d["db_name"]: d["db_type"] for d in client.list_databases()} == {"alice": "enterprise", "bob": "starter"}
    with pytest.raises(ConflictException):
        client.create_database("alice")
    alice, bob = as_token(server, alice_tok), as_token(server, bob_tok)

    alice.create_collection("notes", fields=fields)
    col = alice.get_collection("notes")
    col.upsert([{"id": "n1", "meta": {"who": "alice"}, "fields": {"e": [1, 0, 0, 0]}}])
    # Bob's token names only Bob's database: Alice's collection does not exist for him.
    assert bob.list_collections() == []
    with pytest.raises(NotFoundException):
        bob.get_collection("notes")
    bob.create_collection("notes", fields=fields)  # the same name, his own
    assert bob.get_collection("notes").search(fields={"e": {"query": [1, 0, 0, 0]}})["results"]["e"] == []
    assert "notes" not in [c["name"] for c in client.list_collections()]
    assert client.list_db_collections("alice") == ["notes"]
    grouped = {g["db_name"]: g["collections"] for g in client.list_all_collections()}
    assert grouped["alice"] == ["notes"] and grouped["bob"] == ["notes"]
    # A database token is for /api/v2 only; admin routes need the root token.
    r = requests.get(server + "/v1/index/list", headers={"Authorization": alice_tok})
    assert r.status_code == 403
    with pytest.raises(ForbiddenException):
        alice.list_databases()
    with pytest.raises(ForbiddenException):
        bob.get_database("alice")
    assert alice.get_database("alice")["collections"] == 1

    # Backups and their status are per database; the root token fetches one with db=.
    col.create_backup("ab")
    assert wait(alice.backup_status)["status"] == "completed"
    assert alice.list_backups() == ["ab"] and bob.list_backups() == []
    assert bob.backup_status()["status"] == "idle"
    path = client.download_backup("ab", str(tmp_path), db_name="alice")
    assert os.path.getsize(path) > 0

    # A read-only token reads and is refused writes; self-service tokens come and go.
    ro = as_token(server, client.create_token("alice", "reader", token_type="r"))
    assert ro.get_collection("notes").search(fields={"e": {"query": [1, 0, 0, 0]}})["results"]["e"][0]["id"] == "n1"
    with pytest.raises(ForbiddenException):
        ro.get_collection("notes").upsert([{"id": "x", "fields": {"e": [0, 1, 0, 0]}}])
    assert sorted(t["name"] for t in client.list_tokens("alice")) == ["default", "reader"]
    ci_tok = alice.create_my_token("ci")
    ci = as_token(server, ci_tok)
    assert [c["name"] for c in ci.list_collections()] == ["notes"]
    alice.delete_my_token("ci")
    with pytest.raises(AuthenticationException):
        ci.list_collections()
    # Secrets are shown once and stored only as digests.
    stored = open(os.path.join(DATA["dir"], "tenants.json")).read()
    assert alice_tok.split(":")[1] not in stored and "reader" in stored

    # Deactivated: refused, data kept; activated again: back.
    client.deactivate_database("alice")
    with pytest.raises(ForbiddenException):
        alice.list_collections()
    client.activate_database("alice")
    assert [c["name"] for c in alice.list_collections()] == ["notes"]
    client.set_database_type("alice", "pro")
    assert client.get_database("alice")["db_type"] == "pro"

    # Deleting a database deletes its collections and archives; its tokens stop working.
    client.delete_database("alice")
    with pytest.raises(AuthenticationException):
        alice.list_collections()
    assert "alice" not in [d["db_name"] for d in client.list_databases()]
    assert not [b for b in os.listdir(os.path.join(DATA["dir"], "backups")) if b.startswith("alice.")]
    client.delete_db_collection("bob", "notes")
    assert bob.list_collections() == []
    client.delete_database("bob")


def test_deleting_a_database_whose_collection_is_busy_deletes_nothing():
    """A backup paced to 1 MiB/s keeps one collection busy: deleting its database is 409 and
    every collection is still there; once the backup is done the delete goes through."""
    with serve("--auth-token", TOKEN, "--backup-max-mib-per-s", "1") as (base, _):
        root = as_token(base, TOKEN)
        carol = as_token(base, root.create_database("carol"))
        fields = [{"name": "e", "type": "vector", "params": {"dimension": 4, "precision": "float32"}}]
        for name in ("a", "m", "z"):
            carol.create_collection(name, fields=fields)
            carol.get_collection(name).upsert([{"id": "x", "fields": {"e": [1, 0, 0, 0]}}])
        big = carol.get_collection("z")
        for b in range(3):  # 3 MiB of meta that does not compress: seconds of a paced backup
            big.upsert([{"id": f"m{b}-{i}", "meta": {"pad": os.urandom(24 << 10).hex()}, "fields": {"e": [0, 1, 0, 0]}}
                        for i in range(32)])
        big.create_backup("slow")
        with pytest.raises(ConflictException, match="slow|busy|in use|job"):
            root.delete_database("carol")
        assert carol.backup_status()["status"] == "running", "the 409 was the running backup's"
        assert sorted(root.list_db_collections("carol")) == ["a", "m", "z"]
        assert carol.list_collections(), "the database is still there and its token works"
        assert wait(carol.backup_status)["status"] == "completed"
        root.delete_database("carol")
        assert "carol" not in [d["db_name"] for d in root.list_databases()]


def test_hostile_v2_bodies_are_refused_and_change_nothing(client, server):
    import msgpack
    client.create_collection("guard", fields=[{"name": "e", "type": "vector",
                                               "params": {"dimension": 4, "precision": "float32"}}])
    col = client.get_collection("guard")
    col.upsert([{"id": "keep", "fields": {"e": [1, 0, 0, 0]}}])
    h = {"Authorization": TOKEN, "Content-Type": "application/msgpack"}
    url = server + "/v2/collection/guard"
    bad_bodies = [
        b"\xc1\xff garbage",
        msgpack.packb([[["x", b"", "", {"nope": [1, 0, 0, 0]}, {}, {}]]]),
        msgpack.packb([[["x", b"", "", {"e": [1, 0, 0, 0]}, {}, {"e": [[1, 0, 0, 0]]}]]]),
        msgpack.packb([[["x", b"", "", {"e": [1, 0]}, {}, {}]]]),          # wrong dimension
        msgpack.packb([[["x", b"", "", {"e": [float("nan"), 0, 0, 0]}, {}, {}]]]),
        msgpack.packb([[["ok1", b"", "", {"e": [0, 1, 0, 0]}, {}, {}], ["x", b"", "", {}, {}, {}]]]),
    ]
    for body in bad_bodies:
        r = requests.post(url + "/objects", headers=h, data=body)
        assert r.status_code == 400 and "error" in r.json(), (body, r.status_code, r.text)
    assert client.get_collection("guard").describe()["count"] == 1, "a refused batch stores nothing"
    jh = {"Authorization": TOKEN}
    for body in [{"fields": [{"e": {"query": [1, 0, 0, 0], "ef_search": 5000}}]},
                 {"fields": [{"e": {"query": [[1, 0, 0, 0], [0, 1, 0, 0]]}}]},
                 {"fields": []}, {"fields": [{"e": {"query": [1, 0, 0, 0]}}], "filter": "[{"}]:
        r = requests.post(url + "/search", headers=jh, json=body)
        assert r.status_code == 400 and "error" in r.json(), (body, r.text)
    for name in ["a.b", "..", "x" * 49]:
        r = requests.post(server + "/v2/collection", headers=jh,
                          json={"name": name, "fields": [{"name": "e", "type": "vector", "params": {"dimension": 4}}]})
        assert r.status_code == 400, (name, r.text)
    assert requests.get(server + "/v2/collection/a.b", headers=jh).status_code == 400
    client.delete_collection("guard")


def fvecs(path, n):
    import numpy as np
    raw = np.fromfile(path, dtype=np.int32)
    d = raw[0]
    return raw.reshape(-1, d + 1)[:n, 1:].view(np.float32).copy()


def test_dense_recall_through_v2_on_real_embeddings(client):
    """10,000 minilm-50k sentence embeddings through the 2.2.0 client; 200 held-out queries;
    recall@10 against brute force (cosine) computed here."""
    import numpy as np
    data = os.path.join(ROOT, "..", "shared", "data", "minilm-50k")
    base, queries = fvecs(os.path.join(data, "base.fvecs"), 10_000), fvecs(os.path.join(data, "queries.fvecs"), 200)
    client.create_collection("minilm", fields=[{"name": "e", "type": "vector", "params": {
        "dimension": 384, "space_type": "cosine", "precision": "float32", "M": 16, "ef_con": 200}}])
    col = client.get_collection("minilm")
    for c in range(0, len(base), 1000):
        col.upsert([{"id": str(i), "fields": {"e": base[i].tolist()}} for i in range(c, c + 1000)])
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    truth = np.argsort(-(queries @ unit.T), axis=1)[:, :10]
    hit = 0
    for q, want in zip(queries, truth):
        got = col.search(fields={"e": {"query": q.tolist(), "limit": 10, "ef_search": 128}})["results"]["e"]
        hit += len({int(h["id"]) for h in got} & set(want.tolist()))
    recall = hit / (10 * len(queries))
    print(f"v2 dense recall@10 (minilm 10k, ef 128): {recall:.4f}")
    assert recall >= 0.97, recall
    client.delete_collection("minilm")
