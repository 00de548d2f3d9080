#!/usr/bin/env bash
# Builds the wasm core (with simd128) and the JS bindings into web/wasm/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p cairn-wasm --target wasm32-unknown-unknown --release
wasm-bindgen --target web --out-dir web/wasm target/wasm32-unknown-unknown/release/cairn_wasm.wasm
# A gzip twin the server sends to browsers that accept it (tower-http's precompressed ServeDir).
gzip -k -9 -f web/wasm/*.wasm
# The package ships the project's license (npm takes LICENSE from the package folder).
cp LICENSE web/LICENSE
