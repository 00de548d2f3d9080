//! Checkpoint files: load (raw, and re-framed past the CRCs), then use the loaded index the
//! way the server would next. A checkpoint that loads must never make a later call panic.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for bytes in [data.to_vec(), common::reframe(data)] {
        if let Ok(mut ix) = cairn_core::checkpoint::read_checkpoint(&bytes[..]) {
            common::use_index(&mut ix);
        }
    }
});
