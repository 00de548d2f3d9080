//! The jobs file read at start: decode, then the recovery the engine runs over it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reg) = cairn_core::JobRegistry::decode(data, 16) {
        let mut engine = cairn_core::Engine::new(reg);
        let _ = engine.recover(1);
        let _ = engine.registry.encode();
    }
});
