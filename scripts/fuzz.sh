#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time from the seeds in fuzz/corpus/.
#   bash scripts/fuzz.sh                    # 20 s per target (what scripts/test.sh runs)
#   FUZZ_SECONDS=3600 bash scripts/fuzz.sh  # a long run: an hour per target
#   bash scripts/fuzz.sh checkpoint archive # only these targets
# New inputs go to target/fuzz-corpus/<target> (kept between runs, never committed); a crash
# stops the run with the input under fuzz/artifacts/<target>/: turn it into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-20}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(insert_json insert_msgpack search_body filter log_frames checkpoint archive jobs_file)
(cd fuzz && cargo +nightly fuzz build -O >/dev/null)
for t in "${TARGETS[@]}"; do
  work="target/fuzz-corpus/$t"
  mkdir -p "$work"
  log=$(mktemp)
  if ! (cd fuzz && cargo +nightly fuzz run -O "$t" "../$work" "corpus/$t" -- \
        -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) >"$log" 2>&1; then
    tail -60 "$log"; rm -f "$log"
    echo "fuzz target $t found a crash (input under fuzz/artifacts/$t/)"; exit 1
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
  echo "fuzz $t: $runs runs in ${SECS} s, no finding"
  rm -f "$log"
done
