//! Measures the largest single allocation a closure makes, so decoding tests can check
//! that a forged length never turns into a huge buffer (an allocation failure aborts the
//! whole process, which no `Result` can catch).
//!
//! The counting allocator forwards to the system allocator and records, per thread, the
//! largest request made while a probe is open on that thread; tests running in parallel
//! on other threads do not disturb each other's measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, plus a per-thread high-water mark of single request sizes.
pub struct Probe;

thread_local! {
    // `const` initialisation: reading it never allocates, so the allocator may use it.
    static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|largest| {
        if let Some(seen) = largest.get() {
            largest.set(Some(seen.max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result with the largest single allocation it made (bytes).
pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(Some(0)));
    let value = f();
    let largest = LARGEST.with(|largest| largest.replace(None)).unwrap_or(0);
    (value, largest)
}
