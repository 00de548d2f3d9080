//! JSON insert bodies: decode, then validate and apply against a live index.
#![no_main]
#[path = "common.rs"]
mod common;

use cairn_core::Precision;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = cairn_core::wire::decode_json_insert(data) {
        let mut ix = common::small_index(Precision::Int8);
        if let Ok(rec) = ix.prepare_upsert(items) {
            ix.apply(&rec);
            common::use_index(&mut ix);
        }
    }
});
