//! Search bodies, run against a live index; and every other small JSON body decoder, v1 and
//! v2 (a hybrid collection's).
#![no_main]
#[path = "common.rs"]
mod common;

use cairn_core::Precision;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_core::wire::decode_all(data);
    cairn_core::wire_v2::decode_all(data, &common::collection_params());
    let ix = common::shared();
    if let Ok(req) = cairn_core::wire::decode_search(data) {
        let _ = ix.search(&req);
    }
    if let Ok(f) = cairn_core::wire::decode_delete_by_filter(data) {
        let _ = ix.prepare_delete_by_filter(&f);
    }
    if let Ok(ups) = cairn_core::wire::decode_filter_updates(data)
        && let Ok(rec) = ix.prepare_update_filters(ups)
    {
        let mut own = common::small_index(Precision::Int16);
        own.apply(&rec);
    }
});
