//! The binary's memory allocator: the system allocator, except that every
//! block of 1 MiB or more gets its own mapping, aligned to 2 MiB and
//! offered to the kernel for transparent huge pages (`MADV_HUGEPAGE`).
//!
//! Why: a command reads the whole `vault.yml` into one buffer and a writer
//! builds the new file in another (2 MB each at 10 000 services). Memory
//! fresh from the kernel is faulted in one 4 KiB page at a time, and on a
//! virtual machine each fault is expensive: 512 faults for 2 MiB took 0.95
//! ms here, one huge-page fault 0.11-0.24 ms (docs/benchmarks.md, "Where
//! the time goes"). Where huge pages are off (`never`), the mapping is
//! faulted in as before: nothing is lost but one `mmap` per large block,
//! as glibc's own `malloc` does for blocks over its mapping threshold.
//!
//! A large block's pages go back to the kernel when it is freed (glibc
//! keeps freed heap memory in the process); buffers that held secrets are
//! wiped by their owners before they are freed, as with any allocator.
//!
//! Why it lives in the binary crate: it is runvault's one piece of
//! `unsafe` code (a global allocator cannot be written without it), and
//! keeping it here lets the library, where every secret is handled,
//! `#![forbid(unsafe_code)]` with no exception. Only `main.rs` declares
//! this module. Every process of `runvault` runs on it: the integration
//! tests and the benchmark (`tests/bench/targets.sh`) run that binary. The
//! library's unit tests run under the system allocator, as they always
//! did; this module's own tests run as `cargo test --bin runvault`.
//!
//! What was reviewed: every `unsafe` block and the `GlobalAlloc` impl
//! state what they rely on (`SAFETY:`); a block's owner (this allocator or
//! the system's) is decided by its layout alone, which the caller hands
//! back unchanged to `dealloc` and `realloc`; the only calls into libc are
//! `mmap` of a fresh anonymous private mapping, `munmap` of parts of a
//! mapping made here and no longer used, and `madvise` (advice only). The
//! tests below cover both sides of the threshold, `alloc_zeroed`, `realloc`
//! across the threshold both ways and within a mapping, and a refused
//! mapping. The rest of the binary crate still denies `unsafe_code`
//! (Cargo.toml `[lints.rust]`); this module alone allows it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Blocks at least this large get their own huge-page mapping.
pub(crate) const LARGE_BLOCK: usize = 1 << 20;

/// The size of a transparent huge page on x86-64 and the alignment and
/// granularity of the large mappings.
const HUGE_PAGE: usize = 2 << 20;

/// The allocator: `#[global_allocator]` in `main.rs`.
pub(crate) struct LargePages;

/// Whether a block of `layout` is one of ours (its own mapping) rather
/// than the system allocator's: decided by size alone, so `dealloc` and
/// `realloc`, which get the layout back, always know who owns a block.
fn is_large(layout: Layout) -> bool {
    layout.size() >= LARGE_BLOCK && layout.align() <= HUGE_PAGE
}

/// The length of the mapping that holds a large block of `size` bytes.
fn mapping_len(size: usize) -> Option<usize> {
    size.checked_next_multiple_of(HUGE_PAGE)
}

/// Maps `len` bytes (a multiple of [`HUGE_PAGE`]) at a 2 MiB boundary and
/// asks for huge pages; null if the kernel refuses the mapping.
fn map_aligned(len: usize) -> *mut u8 {
    let Some(padded) = len.checked_add(HUGE_PAGE) else {
        return ptr::null_mut();
    };
    // SAFETY: an anonymous private mapping at an address the kernel picks
    // touches no existing memory.
    let raw = unsafe {
        libc::mmap(
            ptr::null_mut(),
            padded,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let head = aligned - start;
    let tail = padded - head - len;
    // SAFETY: the head and the tail are the parts of the mapping just made
    // that lie outside [aligned, aligned + len); nothing refers to them.
    // Failing to unmap them only leaves address space mapped, so the
    // results are not checked.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
        // Advice only: with huge pages off it fails or does nothing.
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    aligned as *mut u8
}

/// Unmaps a large block of `size` bytes at `block`.
///
/// # Safety
/// `block` must come from [`map_aligned`] for a block of `size` bytes (as
/// [`mapping_len`] rounds it), not yet unmapped, and no longer used.
unsafe fn unmap(block: *mut u8, size: usize) {
    let len = mapping_len(size).expect("the length was valid when mapped");
    // SAFETY: the caller's contract: the whole mapping is ours and unused.
    unsafe {
        libc::munmap(block.cast(), len);
    }
}

// SAFETY: blocks under `LARGE_BLOCK` (or over-aligned) are the system
// allocator's, with its guarantees. A large block is a fresh private
// mapping of at least `size` bytes at a 2 MiB boundary (so aligned for any
// `align <= HUGE_PAGE`), used by nothing else until `dealloc` unmaps it;
// whether a block is large depends only on its layout, which the caller
// hands back unchanged to `dealloc` and `realloc`.
unsafe impl GlobalAlloc for LargePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_large(layout) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc(layout) };
        }
        match mapping_len(layout.size()) {
            Some(len) => map_aligned(len),
            None => ptr::null_mut(),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_large(layout) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // A fresh anonymous mapping reads as zeros.
        // SAFETY: as `alloc`.
        unsafe { self.alloc(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(layout) {
            // SAFETY: a large layout means `alloc` mapped the block.
            unsafe { unmap(block, layout.size()) }
        } else {
            // SAFETY: a small layout means the system allocator made it.
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is
        // a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(layout), is_large(new_layout)) {
            // SAFETY: the caller's contract, passed on.
            (false, false) => unsafe { System.realloc(block, layout, new_size) },
            (true, true) => {
                let (Some(old_len), Some(new_len)) =
                    (mapping_len(layout.size()), mapping_len(new_size))
                else {
                    return ptr::null_mut();
                };
                if new_len > old_len {
                    // SAFETY: as below.
                    return unsafe { self.moved(block, layout, new_layout) };
                }
                // The block's mapping has room: it stays where it is, and
                // the huge pages past the new end are given back.
                if new_len < old_len {
                    // SAFETY: [new_len, old_len) of the block's own mapping
                    // lies past the new size: nothing refers to it any more.
                    unsafe {
                        libc::munmap(block.add(new_len).cast(), old_len - new_len);
                    }
                }
                block
            }
            // SAFETY: `new_layout` is valid (above), `block` is live.
            _ => unsafe { self.moved(block, layout, new_layout) },
        }
    }
}

impl LargePages {
    /// `realloc` by a new block, a copy and freeing the old one.
    ///
    /// # Safety
    /// `block` is live with `layout`, and `new_layout` is valid.
    unsafe fn moved(&self, block: *mut u8, layout: Layout, new_layout: Layout) -> *mut u8 {
        // SAFETY: on success both blocks are live, distinct, and at least
        // `min(old, new)` bytes long; the old one is not used after.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_layout.size()));
                self.dealloc(block, layout);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates `size` bytes through the allocator, fills them, checks
    /// alignment and, for large blocks, the 2 MiB boundary.
    fn filled(size: usize, align: usize, byte: u8) -> (*mut u8, Layout) {
        let layout = Layout::from_size_align(size, align).unwrap();
        let block = unsafe { LargePages.alloc(layout) };
        assert!(!block.is_null(), "{size} bytes");
        assert_eq!(block as usize % align, 0);
        if is_large(layout) {
            assert_eq!(
                block as usize % HUGE_PAGE,
                0,
                "a large block starts a huge page"
            );
        }
        unsafe { ptr::write_bytes(block, byte, size) };
        (block, layout)
    }

    fn all_equal(block: *const u8, len: usize, byte: u8) -> bool {
        unsafe { std::slice::from_raw_parts(block, len) }
            .iter()
            .all(|&b| b == byte)
    }

    #[test]
    fn small_and_large_blocks_are_usable_aligned_and_freed() {
        for size in [
            1,
            4096,
            LARGE_BLOCK - 1,
            LARGE_BLOCK,
            HUGE_PAGE,
            HUGE_PAGE + 1,
            9 << 20,
        ] {
            for align in [1, 16, 4096] {
                let (block, layout) = filled(size, align, 0xa5);
                assert!(all_equal(block, size, 0xa5));
                unsafe { LargePages.dealloc(block, layout) };
            }
        }
    }

    #[test]
    fn zeroed_large_blocks_read_as_zeros() {
        let layout = Layout::from_size_align(3 << 20, 8).unwrap();
        let block = unsafe { LargePages.alloc_zeroed(layout) };
        assert!(all_equal(block, layout.size(), 0));
        unsafe { LargePages.dealloc(block, layout) };
    }

    #[test]
    fn realloc_keeps_the_contents_across_the_threshold_both_ways() {
        // small -> large -> larger -> shrunk within its mapping -> small
        let (mut block, mut layout) = filled(1000, 8, 7);
        for new_size in [LARGE_BLOCK + 10, 5 << 20, (2 << 20) + 5, 512] {
            let kept = layout.size().min(new_size);
            block = unsafe { LargePages.realloc(block, layout, new_size) };
            assert!(!block.is_null());
            assert!(all_equal(block, kept, 7), "to {new_size}");
            layout = Layout::from_size_align(new_size, 8).unwrap();
            unsafe { ptr::write_bytes(block, 7, new_size) };
        }
        unsafe { LargePages.dealloc(block, layout) };
    }

    #[test]
    fn a_block_too_large_to_map_is_refused_and_a_failed_realloc_keeps_the_old_one() {
        let too_large = isize::MAX as usize - 4096;
        let layout = Layout::from_size_align(too_large, 8).unwrap();
        assert!(unsafe { LargePages.alloc(layout) }.is_null());
        let (block, layout) = filled(3 << 20, 8, 9);
        assert!(unsafe { LargePages.realloc(block, layout, too_large) }.is_null());
        assert!(
            all_equal(block, layout.size(), 9),
            "the old block is intact"
        );
        unsafe { LargePages.dealloc(block, layout) };
    }
}
