//! A global allocator that counts allocations, for the tests that check a hot
//! path allocates nothing (`no_alloc.rs`, `native_alloc.rs`). Each test binary
//! that includes this module gets its own counter and allocator.
//!
//! The count is per thread: the test harness's own threads may allocate
//! while a test runs (seen once under a loaded machine: 4 allocations
//! during a run that allocates none), and only the calling thread's count
//! says anything about the code under test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // const-initialised and without a destructor: reading or bumping it
    // never allocates, so the allocator can use it
    static HERE: Cell<usize> = const { Cell::new(0) };
}

/// Allocations (and reallocations) made by the calling thread so far.
pub fn allocs_here() -> usize {
    HERE.try_with(Cell::get).unwrap_or(0)
}

fn count() {
    // try_with: a thread being torn down has no counter any more
    let _ = HERE.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call unchanged to the system allocator, which
// upholds GlobalAlloc's contract; the counter has no effect on memory.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same layout the caller passed, as GlobalAlloc requires.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: p was allocated by System.alloc with layout l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;
