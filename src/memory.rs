//! Per-thread heap accounting, the process's global allocator: the ground truth behind
//! each script hook's memory budget (`script::Limits::max_memory`) and the allocation
//! bounds the hostile-input tests hold parsers to ([`peak_growth_of`]).
//!
//! The process allocator is the system allocator wrapped by [`CountingAllocator`], which
//! adds every allocation's size to, and subtracts every deallocation's size from, a
//! counter of the thread doing it, and keeps that counter's high-water mark. A hook
//! runs on one thread (`script`'s hook threads), so the growth of that counter since the
//! hook started is what the hook holds, whatever builtin or data structure allocated
//! it. The cost is a thread-local add and compare per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting net bytes per thread.
pub struct CountingAllocator;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

thread_local! {
    static NET_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: allocations made while the thread's locals are torn down go uncounted.
    let _ = NET_BYTES.try_with(|n| {
        let net = n.get().wrapping_add(delta);
        n.set(net);
        let _ = PEAK_BYTES.try_with(|p| p.set(p.get().max(net)));
    });
}

/// Bytes allocated minus bytes freed by this thread since it started.
pub fn thread_net_bytes() -> isize {
    NET_BYTES.try_with(Cell::get).unwrap_or(0)
}

/// `f`'s result and the most this thread held at once while `f` ran, above what it held
/// when `f` started (allocations of other threads are not counted).
pub fn peak_growth_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = thread_net_bytes();
    let _ = PEAK_BYTES.try_with(|p| p.set(base));
    let out = f();
    let peak = PEAK_BYTES.try_with(Cell::get).unwrap_or(base);
    (out, peak.saturating_sub(base).max(0) as usize)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// bookkeeping touches only a const-initialised thread-local `Cell` (no allocation, no
// unwinding).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_this_thread_holds() {
        let before = thread_net_bytes();
        let block = vec![0u8; 1 << 20];
        let held = thread_net_bytes() - before;
        assert!(held >= 1 << 20, "{held}");
        drop(block);
        assert!(thread_net_bytes() - before < 1 << 10);
    }

    #[test]
    fn peak_growth_sees_what_was_freed_again() {
        let ((), peak) = peak_growth_of(|| drop(vec![0u8; 4 << 20]));
        assert!((4 << 20..5 << 20).contains(&peak), "{peak}");
    }
}
