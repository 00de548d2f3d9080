//! msgpack insert bodies (what Endee's clients send, v1 rows and v2 object batches): decode,
//! validate, apply.
#![no_main]
#[path = "common.rs"]
mod common;

use cairn_core::Precision;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // v2 object batches too: decoded for a hybrid collection, applied to one.
    if let Ok(items) = cairn_core::wire_v2::decode_objects(data, &common::collection_params())
        && let Ok(mut ix) = cairn_core::Index::new(common::collection_params())
        && let Ok(rec) = ix.prepare_upsert_fields(items)
    {
        ix.apply(&rec);
        common::use_index(&mut ix);
    }
    if let Ok(items) = cairn_core::wire::decode_msgpack_insert(data) {
        let mut ix = common::small_index(Precision::Float32);
        if let Ok(rec) = ix.prepare_upsert(items) {
            ix.apply(&rec);
            common::use_index(&mut ix);
        }
    }
});
