#!/usr/bin/env bash
# Builds the wasm core (with simd128) and the JS bindings into web/wasm/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p cairn-wasm --target wasm32-unknown-unknown --release
wasm-bindgen --target web --out-dir web/wasm target/wasm32-unknown-unknown/release/cairn_wasm.wasm
# A gzip twin the server sends to browsers that accept it (tower-http's precompressed ServeDir).
gzip -k -9 -f web/wasm/*.wasm
# And a brotli twin, with Node's own zlib (no other tool needed).
node -e "const z = require('zlib'), fs = require('fs');
  for (const f of process.argv.slice(1)) fs.writeFileSync(f + '.br', z.brotliCompressSync(fs.readFileSync(f),
    { params: { [z.constants.BROTLI_PARAM_QUALITY]: 11 } }));" web/wasm/*.wasm
# The package ships the project's license (npm takes LICENSE from the package folder).
cp LICENSE web/LICENSE
