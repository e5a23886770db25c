//! wdk-alloc for drivers built without the WDK: a global allocator named like
//! wdk-alloc's `WdkAllocator`, so a driver's sources do not change.
//!
//! Non-paged, no-execute pool through ExAllocatePoolWithTag: usable up to
//! DISPATCH_LEVEL like wdk-alloc's ExAllocatePool2 call, and exported by every
//! Windows since NT and by Wine, which lacks ExAllocatePool2 (an image calling
//! it aborts its Wine driver host). Pool memory is 16-byte aligned on x64;
//! larger alignments are refused (null), never silently misaligned.
#![no_std]

use core::alloc::{GlobalAlloc, Layout};

use wdk_sys::{ntddk, _POOL_TYPE::NonPagedPoolNx, ULONG};

/// 'rust' as pool tag, like wdk-alloc's (shown by !poolused and PoolMon).
const POOL_TAG: ULONG = u32::from_le_bytes(*b"rust");
const POOL_ALIGNMENT: usize = 16;

pub struct WdkAllocator;

// SAFETY: pool allocations are valid until freed, at least 16-byte aligned, and
// larger alignments are refused.
unsafe impl GlobalAlloc for WdkAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > POOL_ALIGNMENT {
            return core::ptr::null_mut();
        }
        // SAFETY: plain pool allocation; failure returns null.
        unsafe {
            ntddk::ExAllocatePoolWithTag(NonPagedPoolNx, layout.size() as wdk_sys::SIZE_T, POOL_TAG)
                .cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, with the same tag.
        unsafe { ntddk::ExFreePoolWithTag(ptr.cast(), POOL_TAG) }
    }
}
