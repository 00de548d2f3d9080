//! Lengths read from a file are not trusted before the data behind them: a 72-byte checkpoint
//! or log whose frame declares a gigabyte costs a small buffer, not the gigabyte. Measured with
//! a counting allocator (one test in this binary, so nothing else allocates alongside).
#![allow(clippy::unwrap_used)]

use cairn_core::checkpoint::read_checkpoint;
use cairn_core::record::read_log;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::SeqCst) + l.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        // SAFETY: the caller's layout, passed through.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::SeqCst);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Peak bytes allocated while `f` runs, above what was live before.
fn peak_of(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst) - base
}

#[test]
fn a_frame_declaring_a_gigabyte_costs_only_the_bytes_that_arrive() {
    // Frame header: length 1 GiB - 1, any CRC; then 64 bytes of "payload".
    let mut bytes = ((1u32 << 30) - 1).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[7, 7, 7, 7]);
    bytes.extend_from_slice(&[0xAB; 64]);
    assert_eq!(bytes.len(), 72);
    let ck = peak_of(|| assert!(read_checkpoint(&bytes[..]).is_err()));
    let log = peak_of(|| {
        let (records, valid, torn) = read_log(&bytes[..]).unwrap();
        assert_eq!((records.len(), valid, torn), (0, 0, true));
    });
    println!("72-byte frame declaring 1 GiB: checkpoint read peak {ck} B, log read peak {log} B");
    assert!(ck < 1 << 20 && log < 1 << 20, "{ck} {log}");
}
