//! The files read at start: the jobs file (decode, then the recovery the engine runs over
//! it) and the backup schedules' state.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_core::control::schedule::ScheduleState::decode(data);
    if let Ok(reg) = cairn_core::JobRegistry::decode(data, 16) {
        let mut engine = cairn_core::Engine::new(reg);
        let _ = engine.recover(1);
        let _ = engine.registry.encode();
    }
});
