//! Stand-in for wdk-alloc 0.4.1's `WdkAllocator` (shape only; see hostcheck/Cargo.toml).
#![no_std]

use core::alloc::{GlobalAlloc, Layout};

pub struct WdkAllocator;

// SAFETY: never hands out memory.
unsafe impl GlobalAlloc for WdkAllocator {
    unsafe fn alloc(&self, _layout: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}
