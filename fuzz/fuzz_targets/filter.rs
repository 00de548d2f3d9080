//! Filters as search requests carry them (text) and as vectors store them, evaluated.
#![no_main]
#[path = "common.rs"]
mod common;

use cairn_core::{Filter, SearchRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ix = common::shared();
    if let Ok(f) = Filter::parse_str(text) {
        let _ = ix.count_matching(&f);
        let mut req = SearchRequest::new(vec![1.0, 0.0, 0.0, 0.0], 10);
        req.filter = Some(f.clone());
        let _ = ix.search(&req);
        req.prefilter_threshold = Some(0);
        let _ = ix.search(&req);
        let _ = ix.prepare_delete_by_filter(&f);
    }
    let _ = cairn_core::filter::parse_stored(text);
});
