//! Log files: framing (raw, and re-framed so payloads get past the CRC) and replay of every
//! record into a live index.
#![no_main]
#[path = "common.rs"]
mod common;

use cairn_core::Precision;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_core::record::read_log(data);
    let framed = common::reframe(data);
    let mut ix = common::small_index(Precision::Int8);
    if ix.replay(&framed[..]).is_ok() {
        common::use_index(&mut ix);
    }
});
