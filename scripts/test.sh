#!/usr/bin/env bash
# Runs every test. Installs what it needs first, idempotently, from package registries only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

step "python venv for client conformance (endee==0.1.27)"
[ -x tests/.venv/bin/python ] || python3 -m venv tests/.venv
tests/.venv/bin/python -c 'import endee, pytest' 2>/dev/null || tests/.venv/bin/pip install -q endee==0.1.27 pytest

step "npm client for conformance (endee@1.0.8)"
( cd tests/conformance && [ -d node_modules/endee ] || npm install --no-audit --no-fund --silent )

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

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

step "official clients against the real server"
CAIRN_BIN="$ROOT/target/release/cairn" tests/.venv/bin/python -m pytest -q tests/conformance
( cd tests/conformance && CAIRN_BIN="$ROOT/target/release/cairn" node --test )

echo
echo "all tests passed"
