//! Per-thread heap accounting, the ground truth behind each hook's memory budget
//! ([`super::Limits::max_memory`]).
//!
//! The process allocator is the system allocator wrapped by [`CountingAllocator`], which
//! adds every allocation's size to, and subtracts every deallocation's size from, a
//! counter of the thread doing it. A hook runs on one thread ([`super::hook_thread`]),
//! so the growth of that counter since the hook started is what the hook holds,
//! whatever builtin or data structure allocated it. The sandbox compares it with the
//! budget at every Rhai operation; builtins that could allocate far more than their
//! inputs in one operation are replaced by size-checked ones ([`super::builtins`]).
//! The cost is one thread-local add per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting net bytes per thread.
pub(crate) struct CountingAllocator;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

thread_local! {
    static NET_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: allocations made while the thread's locals are torn down go uncounted.
    let _ = NET_BYTES.try_with(|n| n.set(n.get().wrapping_add(delta)));
}

/// Bytes allocated minus bytes freed by this thread since it started.
pub(crate) fn thread_net_bytes() -> isize {
    NET_BYTES.try_with(Cell::get).unwrap_or(0)
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
}
