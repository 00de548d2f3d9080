//! Huge pages for the index's vector blocks, natively: the global allocator maps large
//! allocations (2 MiB and up) on their own, 2 MiB-aligned, and [`collapse_into_huge_pages`] —
//! installed as the core's sealed-block hook — turns each full vector block into 2 MiB pages.
//!
//! Why: a search reads vectors scattered over the whole index. With 4 KiB pages a 150 MB
//! index spans ~37,000 pages, far more than the TLB holds, so nearly every vector read also
//! walks the page table. Linux distributions commonly ship transparent huge pages in `madvise`
//! mode (this machine does), where only advised ranges get 2 MiB pages; measured here: +20–45 %
//! queries/s and −15 % build time on 50k–100k × 384 indexes.
//!
//! Why only full blocks: advising a block when it is allocated made its first touch fault in a
//! whole 2 MiB page, so the index's last, partly filled block held up to 2 MiB more than its
//! rows (on a 50k × 384 int8 index that was 29 MiB resident instead of 27). A full block is
//! advised and collapsed (`MADV_COLLAPSE`, Linux 6.1+: a synchronous copy into huge pages,
//! once per 4,096 float32 rows); on an older kernel the advice alone lets khugepaged collapse
//! it later.
//!
//! `unsafe` here is the allocator contract and the `madvise` calls (there is no safe way to be
//! the global allocator); every call forwards to `mmap`/`mremap`/`munmap`/`madvise` or to
//! [`System`].

use std::alloc::{GlobalAlloc, Layout, System};

/// The global allocator of the `cairn` binary and the benchmarks (see the module doc).
pub struct HugePageAlloc;

/// Size from which allocations are mappings of their own, and the huge page size.
const HUGE: usize = 2 << 20;
/// The base page size mappings are rounded to.
const PAGE: usize = 4096;

/// True for the allocations this allocator maps itself.
fn is_large(l: &Layout) -> bool {
    cfg!(target_os = "linux") && l.size() >= HUGE && l.align() <= PAGE
}

fn mapped_len(size: usize) -> usize {
    size.div_ceil(PAGE) * PAGE
}

#[cfg(target_os = "linux")]
mod map {
    use super::{HUGE, mapped_len};
    use std::ptr::null_mut;

    /// A fresh zeroed mapping of at least `size` bytes starting on a 2 MiB boundary; null when
    /// the system refuses.
    pub fn map(size: usize) -> *mut u8 {
        let len = mapped_len(size);
        let Some(span) = len.checked_add(HUGE) else {
            return null_mut();
        };
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory.
        let raw = unsafe {
            libc::mmap(
                null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return null_mut();
        }
        let base = raw as usize;
        let start = base.next_multiple_of(HUGE);
        let head = start - base;
        let tail = span - head - len;
        // SAFETY: both ranges lie inside the mapping just made and outside [start, start+len),
        // which is what the caller receives; both are page multiples.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail);
            }
        }
        start as *mut u8
    }

    /// Unmaps a mapping made by [`map`] (or moved by [`remap`]) for `size` bytes.
    ///
    /// # Safety
    /// `p` must come from [`map`]/[`remap`] with this `size` and not be used afterwards.
    pub unsafe fn unmap(p: *mut u8, size: usize) {
        // SAFETY: the caller's contract: this is exactly one live mapping of ours.
        unsafe { libc::munmap(p.cast(), mapped_len(size)) };
    }

    /// Resizes a mapping made by [`map`], moving it if needed (the kernel moves page tables,
    /// it does not copy the bytes); null when the system refuses (the old mapping is intact).
    ///
    /// # Safety
    /// `p` must come from [`map`]/[`remap`] with `old` bytes; on success it is invalid.
    pub unsafe fn remap(p: *mut u8, old: usize, new: usize) -> *mut u8 {
        // SAFETY: the caller's contract: `p` is one live mapping of `mapped_len(old)` bytes.
        let q = unsafe {
            libc::mremap(
                p.cast(),
                mapped_len(old),
                mapped_len(new),
                libc::MREMAP_MAYMOVE,
            )
        };
        if q == libc::MAP_FAILED {
            null_mut()
        } else {
            q.cast()
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod map {
    //! Never used: `is_large` is false off Linux.
    pub fn map(_: usize) -> *mut u8 {
        std::ptr::null_mut()
    }
    pub unsafe fn unmap(_: *mut u8, _: usize) {}
    pub unsafe fn remap(_: *mut u8, _: usize, _: usize) -> *mut u8 {
        std::ptr::null_mut()
    }
}

/// The core's sealed-block hook (`cairn_core::set_sealed_block_hook`): backs the full block at
/// `addr` (`len` bytes, a whole number of 2 MiB pages, 2 MiB-aligned because this allocator
/// mapped it) with huge pages. Advice only: on failure the block keeps its small pages.
pub fn collapse_into_huge_pages(addr: usize, len: usize) {
    #[cfg(target_os = "linux")]
    if addr.is_multiple_of(HUGE) && len.is_multiple_of(HUGE) {
        // SAFETY: madvise with these advices does not change the contents of memory the core
        // owns (the range is one live block it just filled); failures are ignored on purpose.
        unsafe {
            libc::madvise(addr as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            libc::madvise(addr as *mut libc::c_void, len, libc::MADV_COLLAPSE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len);
}

// SAFETY: large blocks are fresh page-aligned mappings of at least the requested size (so
// they meet any alignment up to a page, which `is_large` requires), never shared, and freed or
// resized only through the same `is_large` test on the same layout size; the rest is `System`.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if is_large(&l) {
            map::map(l.size())
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc(l) }
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if is_large(&l) {
            map::map(l.size())
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc_zeroed(l) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if is_large(&l) {
            // SAFETY: a large layout means `p` is one of our mappings of this size.
            unsafe { map::unmap(p, l.size()) }
        } else {
            // SAFETY: forwarded with the caller's pointer and layout.
            unsafe { System.dealloc(p, l) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let Ok(new) = Layout::from_size_align(new_size, l.align()) else {
            return std::ptr::null_mut();
        };
        match (is_large(&l), is_large(&new)) {
            // SAFETY: forwarded with the caller's pointer and layout.
            (false, false) => unsafe { System.realloc(p, l, new_size) },
            // SAFETY: `p` is our mapping of `l.size()` bytes.
            (true, true) => unsafe { map::remap(p, l.size(), new_size) },
            _ => {
                // SAFETY: `q` is fresh with room for `new_size`; `p` holds `l.size()` bytes;
                // the copy takes the smaller; `p` is freed by the rule it was allocated by.
                unsafe {
                    let q = self.alloc(new);
                    if !q.is_null() {
                        std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                        self.dealloc(p, l);
                    }
                    q
                }
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The `VmFlags` line of the mapping that contains `addr`, from /proc/self/smaps.
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((a, b)) = range.split_once('-')
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                inside = (a..b).contains(&addr);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.trim().to_string();
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[test]
    fn large_blocks_are_aligned_zero_and_collapse_keeps_their_bytes() {
        let a = HugePageAlloc;
        let l = Layout::from_size_align(6 << 20, 8).expect("layout");
        // SAFETY: test of the allocator contract: a valid layout, freed once below.
        unsafe {
            let p = a.alloc_zeroed(l);
            assert!(!p.is_null());
            assert_eq!(p as usize % HUGE, 0, "2 MiB aligned");
            let s = std::slice::from_raw_parts_mut(p, l.size());
            assert!(s.iter().step_by(4093).all(|&b| b == 0));
            assert!(!vm_flags(p as usize).split(' ').any(|f| f == "hg"));
            for (i, b) in s.iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            collapse_into_huge_pages(p as usize, l.size());
            assert!(vm_flags(p as usize).split(' ').any(|f| f == "hg"));
            assert!(s.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
            a.dealloc(p, l);
        }
    }

    #[test]
    fn plain_large_blocks_are_not_advised_and_realloc_keeps_bytes() {
        let a = HugePageAlloc;
        let small = Layout::from_size_align(1000, 8).expect("layout");
        // SAFETY: test of the allocator contract: each pointer is reallocated or freed once.
        unsafe {
            let p = a.alloc(small);
            std::ptr::write_bytes(p, 5, 1000);
            // small → large → larger → small, the bytes follow.
            let p = a.realloc(p, small, 3 << 20);
            assert!(!vm_flags(p as usize).split(' ').any(|f| f == "hg"));
            *p.add((3 << 20) - 1) = 9;
            let big = Layout::from_size_align(3 << 20, 8).expect("layout");
            let p = a.realloc(p, big, 9 << 20);
            assert_eq!((*p, *p.add(999), *p.add((3 << 20) - 1)), (5, 5, 9));
            let bigger = Layout::from_size_align(9 << 20, 8).expect("layout");
            let p = a.realloc(p, bigger, 500);
            assert_eq!((*p, *p.add(499)), (5, 5));
            a.dealloc(p, Layout::from_size_align(500, 8).expect("layout"));
        }
    }

    #[test]
    fn over_aligned_layouts_go_to_the_system() {
        let l = Layout::from_size_align(4 << 20, 1 << 16).expect("layout");
        assert!(!is_large(&l));
    }
}
