"""Sparse (BM25) retrieval, CairnDB against bm25s, same machine, same run, same tokens.

The 50,000 minilm-50k sentences are the documents and the 1,000 held-out sentences the
queries, tokenised once (lower-cased alphanumeric words, hashed to ids exactly as the Rust side
does) and handed to both: bm25s (`method="lucene"`, k1 = 1.2, b = 0.75) and CairnDB's inverted
index with `endee_bm25` scoring (the same BM25: Lucene's IDF at query time, the client's term
weights). Top-10, one thread each; build time and queries/s, best of three rounds; agreement is
the share of CairnDB's top-10 that bm25s also returns.

Hybrid: the same documents with their MiniLM embeddings in one CairnDB index (float32, M 16,
ef_con 200, `endee_bm25`), queried with each held-out sentence's embedding (ef 64) and its
terms, fused by reciprocal rank (weight 0.5, constant 60, each ranking to k) — against what a
user assembles from two libraries: hnswlib (same M / ef_con / ef, one thread) + bm25s + the
same fusion in Python. Queries/s of the whole, build time, and top-10 agreement.

    bash tests/bench/run.sh --sparse
"""

import json
import os
import re
import subprocess
import sys
import time

import bm25s
import hnswlib
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "..", "shared", "data", "minilm-50k")


def tokens(text):
    out = []
    for w in re.split(r"[^0-9a-zà-öø-ÿ]+", text.lower()):
        if not w:
            continue
        h = 0x811C9DC5
        for b in w.encode():
            h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
        out.append(str(h & 0xFFFFFF))
    return out


def main():
    with open(os.path.join(DATA, "texts.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    docs, queries = lines[:50000], lines[50000:51000]
    cairn = subprocess.run([os.path.join(ROOT, "target", "release", "sparse"), "--data", DATA],
                           check=True, capture_output=True, text=True)
    c = json.loads(cairn.stdout)

    corpus = [tokens(d) for d in docs]
    qs = [sorted(set(tokens(q))) for q in queries]
    t0 = time.perf_counter()
    r = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    r.index(corpus, show_progress=False)
    build = time.perf_counter() - t0
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        res, _scores = r.retrieve(qs, k=10, n_threads=1, show_progress=False)
        best = min(best, time.perf_counter() - t0)
    bqps = len(qs) / best

    agree = np.mean([len(set(a) & set(int(x) for x in b)) / max(len(a), 1)
                     for a, b in zip(c["tops"], res.tolist())])
    print("| sparse BM25, minilm-50k texts (50,000 docs, 1,000 queries, top-10, 1 thread) | build s | queries/s |")
    print("|---|---|---|")
    print(f"| CairnDB inverted index (MaxScore, exact) | {c['build_s']:.2f} | {c['qps']:,.0f} |")
    print(f"| bm25s {bm25s.__version__} (lucene, sparse matrix) | {build:.2f} | {bqps:,.0f} |")
    print(f"\nqueries/s ratio CairnDB / bm25s: {c['qps'] / bqps:.2f}; top-10 agreement: {agree:.3f}")

    base = fvecs_np(os.path.join(DATA, "base.fvecs"))
    qv = fvecs_np(os.path.join(DATA, "queries.fvecs"))
    t0 = time.perf_counter()
    h = hnswlib.Index(space="cosine", dim=base.shape[1])
    h.init_index(max_elements=len(base), M=16, ef_construction=200, random_seed=100)
    h.set_num_threads(1)
    h.add_items(base)
    hbuild = time.perf_counter() - t0 + build
    h.set_ef(64)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        labels, _d = h.knn_query(qv, k=10, num_threads=1)
        sres, _s = r.retrieve(qs, k=10, n_threads=1, show_progress=False)
        fused = [rrf(list(dl), [int(x) for x in sl]) for dl, sl in zip(labels.tolist(), sres.tolist())]
        best = min(best, time.perf_counter() - t0)
    pqps = len(qs) / best
    hagree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(c["hybrid_tops"], fused)])
    dagree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(c["dense_tops"], labels.tolist())])
    print("\n| hybrid, minilm-50k (embeddings + BM25 terms, 1,000 queries, top-10, 1 thread) | build s | queries/s |")
    print("|---|---|---|")
    print(f"| CairnDB hybrid index, dense + sparse fused by RRF in one search | {c['hybrid_build_s']:.2f} | {c['hybrid_qps']:,.0f} |")
    print(f"| hnswlib + bm25s + RRF in Python (build: both) | {hbuild:.2f} | {pqps:,.0f} |")
    print(f"| (CairnDB same index: dense only / sparse only) | | {c['dense_qps']:,.0f} / {c['sparse_in_index_qps']:,.0f} |")
    print(f"\nhybrid queries/s ratio CairnDB / (hnswlib + bm25s): {c['hybrid_qps'] / pqps:.2f}; "
          f"top-10 agreement hybrid {hagree:.3f}, dense alone {dagree:.3f}")


def rrf(dense, sparse, w=0.5, c=60.0, k=10):
    """Weighted reciprocal rank fusion, ranks from 1, as Endee's and CairnDB's."""
    score = {}
    for rank, d in enumerate(dense, 1):
        score[d] = score.get(d, 0.0) + w / (c + rank)
    for rank, d in enumerate(sparse, 1):
        score[d] = score.get(d, 0.0) + (1 - w) / (c + rank)
    return [d for d, _ in sorted(score.items(), key=lambda x: -x[1])[:k]]


def fvecs_np(path):
    raw = np.fromfile(path, dtype=np.int32)
    return raw.reshape(-1, raw[0] + 1)[:, 1:].view(np.float32).copy()


if __name__ == "__main__":
    sys.exit(main())
