//! A global allocator that counts the allocations of the current thread, so
//! that the "this path allocates nothing" tests of wire, rules and server run
//! in parallel without disturbing each other.
//!
//! A test binary installs it once and measures a closure:
//!
//! ```
//! use signpost_alloc_count::{CountingAllocator, allocations_during};
//!
//! #[global_allocator]
//! static GLOBAL: CountingAllocator = CountingAllocator;
//!
//! let mut numbers = Vec::with_capacity(4);
//! assert_eq!(allocations_during(|| numbers.push(1)), 0);
//! assert!(allocations_during(|| drop(std::hint::black_box(vec![0u8; 64]))) > 0);
//! ```
//!
//! Without the `#[global_allocator]` line nothing is counted and every
//! measurement reads zero, so each test binary needs it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Passes every call to the system allocator and counts `alloc` and
/// `realloc` in a thread-local counter.
pub struct CountingAllocator;

thread_local! {
    // const-initialised and without a destructor, so touching it never allocates.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: during thread teardown the counter may be gone; the
    // allocation is then simply not counted.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every call is passed to the system allocator unchanged; the only
// addition is a thread-local counter, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(pointer, layout, size) }
    }
}

/// How many allocations (and reallocations) the current thread made while
/// `work` ran. Zero unless [`CountingAllocator`] is the global allocator.
pub fn allocations_during(work: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    work();
    ALLOCATIONS.with(Cell::get) - before
}
