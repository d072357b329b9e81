//! The global allocator of the three binaries: mimalloc, called the way its
//! fast paths expect.
//!
//! The `mimalloc` crate's `MiMalloc` passes every request to
//! `mi_malloc_aligned`, whatever the alignment. mimalloc 3 serves that from
//! its small-block free list only when a block is free in the size's page
//! and happens to be aligned; otherwise (every block over 1 KiB, and a small
//! size whose page is empty) its generic aligned path gives a block the
//! natural alignment only when the size is a power of two, and
//! over-allocates by the alignment for the rest: a 2,560-byte future with
//! alignment 8 came from a larger size class, through about 200
//! instructions more than `mi_malloc` takes. An uncached forward allocates
//! a few such futures (docs/performance.md, "Issue 16, eleventh session").
//!
//! Every mimalloc block of 16 bytes or more is 16-byte aligned (on x86-64
//! and AArch64 its minimum alignment is two machine words, and smaller
//! blocks are one word), so a request whose alignment is at most 16 and at
//! most its size is served by `mi_malloc` — the rule the standard library
//! applies to glibc's malloc. Larger alignments still go to the aligned
//! entry points. Freeing is `mi_free` for both.
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: signpost_allocator::Allocator = signpost_allocator::Allocator;
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};

/// The alignment of every mimalloc block of at least this many bytes
/// (`MI_MAX_ALIGN_SIZE`, `sizeof(max_align_t)` on the 64-bit targets).
const PLAIN_ALIGNMENT: usize = 16;

/// mimalloc as a Rust global allocator; see the crate documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocator;

/// Whether a plain `mi_malloc` block of `size` bytes is aligned enough.
fn plain_is_aligned(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGNMENT && align <= size
}

/// A block for `layout` from `plain` where its alignment suffices, from
/// `aligned` otherwise.
///
/// # Safety
/// `layout.align()` is a power of two (which `Layout` guarantees), as the
/// aligned entry points require.
#[inline]
unsafe fn allocate(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    if plain_is_aligned(layout.size(), layout.align()) {
        // SAFETY: an allocation call with no preconditions.
        unsafe { plain(layout.size()).cast() }
    } else {
        // SAFETY: the caller guarantees a power-of-two alignment.
        unsafe { aligned(layout.size(), layout.align()).cast() }
    }
}

// SAFETY: each method passes the request to the mimalloc function that
// fulfils it: the plain entry points only where their blocks' guaranteed
// alignment covers the layout's (see `plain_is_aligned`), the aligned ones
// otherwise. `mi_free` and `mi_realloc*` accept blocks from either.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `Layout` guarantees a power-of-two alignment.
        unsafe { allocate(layout, mi_malloc, mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { allocate(layout, mi_zalloc, mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, pointer: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned.
        unsafe { mi_free(pointer.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain_is_aligned(new_size, layout.align()) {
            // SAFETY: the caller passes a block this allocator returned and a
            // non-zero size; the new block keeps the plain alignment.
            unsafe { mi_realloc(pointer.cast::<c_void>(), new_size).cast() }
        } else {
            // SAFETY: as above, with the layout's alignment kept.
            unsafe { mi_realloc_aligned(pointer.cast::<c_void>(), new_size, layout.align()).cast() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test binary runs on it too, so the standard library's own
    // allocations (the harness, formatting, threads) exercise it as well.
    #[global_allocator]
    static ALLOCATOR: Allocator = Allocator;

    const SIZES: [usize; 16] = [1, 7, 8, 15, 16, 24, 40, 100, 544, 1024, 1025, 2560, 4096, 9000, 70_000, 5 << 20];
    const ALIGNMENTS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 4096, 65_536];

    fn layouts() -> impl Iterator<Item = Layout> {
        SIZES
            .iter()
            .flat_map(|&size| ALIGNMENTS.iter().filter_map(move |&align| Layout::from_size_align(size, align).ok()))
    }

    fn is_aligned(pointer: *mut u8, align: usize) -> bool {
        (pointer as usize).is_multiple_of(align)
    }

    #[test]
    fn every_block_has_its_layouts_alignment_and_size() {
        for layout in layouts() {
            // Many blocks of one layout, so that both mimalloc's free-list
            // hit and its generic path (a fresh page) are taken.
            let blocks: Vec<*mut u8> = (0..64)
                .map(|_| {
                    // SAFETY: the sizes are non-zero.
                    let pointer = unsafe { Allocator.alloc(layout) };
                    assert!(!pointer.is_null(), "{layout:?}");
                    assert!(is_aligned(pointer, layout.align()), "{layout:?} gave {pointer:p}");
                    // SAFETY: the block is `layout.size()` bytes long.
                    unsafe { pointer.write_bytes(0xA5, layout.size()) };
                    pointer
                })
                .collect();
            for pointer in blocks {
                // SAFETY: allocated above with this layout.
                unsafe { Allocator.dealloc(pointer, layout) };
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_even_after_a_dirty_block_of_the_size_was_freed() {
        for layout in layouts().filter(|layout| layout.size() <= 70_000) {
            // SAFETY: non-zero sizes; each block is freed with its layout.
            unsafe {
                let dirty = Allocator.alloc(layout);
                dirty.write_bytes(0xFF, layout.size());
                Allocator.dealloc(dirty, layout);
                let zeroed = Allocator.alloc_zeroed(layout);
                assert!(is_aligned(zeroed, layout.align()), "{layout:?}");
                let bytes = std::slice::from_raw_parts(zeroed, layout.size());
                assert!(bytes.iter().all(|&byte| byte == 0), "{layout:?}");
                Allocator.dealloc(zeroed, layout);
            }
        }
    }

    #[test]
    fn realloc_keeps_the_contents_and_the_alignment_growing_and_shrinking() {
        for layout in layouts().filter(|layout| layout.size() <= 70_000) {
            for new_size in [1, 9, 16, 33, 1500, 3000, 100_000] {
                // SAFETY: non-zero sizes; the block is reallocated and freed
                // with the layout it has at each step.
                unsafe {
                    let pointer = Allocator.alloc(layout);
                    for offset in 0..layout.size() {
                        pointer.add(offset).write(offset as u8);
                    }
                    let grown = Allocator.realloc(pointer, layout, new_size);
                    assert!(!grown.is_null());
                    assert!(is_aligned(grown, layout.align()), "{layout:?} to {new_size} gave {grown:p}");
                    for offset in 0..layout.size().min(new_size) {
                        assert_eq!(grown.add(offset).read(), offset as u8, "{layout:?} to {new_size}, byte {offset}");
                    }
                    Allocator.dealloc(grown, Layout::from_size_align_unchecked(new_size, layout.align()));
                }
            }
        }
    }

    #[test]
    fn the_plain_entry_point_is_used_only_where_its_alignment_suffices() {
        assert!(plain_is_aligned(2560, 8));
        assert!(plain_is_aligned(16, 16));
        assert!(plain_is_aligned(1, 1));
        assert!(!plain_is_aligned(8, 16), "an 8-byte block is only 8-aligned");
        assert!(!plain_is_aligned(4096, 32));
        assert!(!plain_is_aligned(4096, 4096));
    }
}
