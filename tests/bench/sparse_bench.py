"""Sparse (BM25) retrieval, CairnDB against bm25s, same machine, same run, same tokens.

The 50,000 minilm-50k sentences are the documents and the 1,000 held-out sentences the
queries, tokenised once (lower-cased alphanumeric words, hashed to ids exactly as the Rust side
does) and handed to both: bm25s (`method="lucene"`, k1 = 1.2, b = 0.75) and CairnDB's inverted
index with `endee_bm25` scoring (the same BM25: Lucene's IDF at query time, the client's term
weights). Top-10, one thread each; build time and queries/s, best of three rounds; agreement is
the share of CairnDB's top-10 that bm25s also returns.

    bash tests/bench/run.sh --sparse
"""

import json
import os
import re
import subprocess
import sys
import time

import bm25s
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


if __name__ == "__main__":
    sys.exit(main())
