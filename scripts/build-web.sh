#!/usr/bin/env bash
# Builds the wasm core (with simd128) and the JS bindings into web/wasm/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p cairn-wasm --target wasm32-unknown-unknown --release
wasm-bindgen --target web --out-dir web/wasm target/wasm32-unknown-unknown/release/cairn_wasm.wasm
