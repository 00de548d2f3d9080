//! The parts of the native host that other native programs share (the benchmarks link the
//! same allocator and originals reader as the server, so their numbers are the server's).

pub mod hugepage_alloc;
pub mod pread;
