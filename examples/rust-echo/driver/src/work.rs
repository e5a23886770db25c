//! Deferred work: a one-shot timer whose DPC signals an event, and a work
//! item on the delayed work queue that signals another; DriverEntry waits for
//! both with a timeout and says what ran.
use core::ptr;
use core::sync::atomic::Ordering;

use wdk::{nt_success, println};
use wdk_sys::{
    ntddk::{
        IoAllocateWorkItem, IoFreeWorkItem, IoQueueWorkItem, KeCancelTimer, KeClearEvent,
        KeDelayExecutionThread, KeInitializeDpc, KeInitializeEvent, KeInitializeTimer,
        KeQueryTimeIncrement, KeReadStateEvent, KeSetEvent, KeSetTimer, KeWaitForSingleObject,
    },
    _EVENT_TYPE::NotificationEvent,
    _KWAIT_REASON::Executive,
    _MODE::KernelMode,
    _WORK_QUEUE_TYPE::DelayedWorkQueue,
    LARGE_INTEGER, NTSTATUS, PDEVICE_OBJECT, PKDPC, PVOID, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_SUCCESS,
};

use crate::fault;
use crate::state::{Acquired, STATE};

/// Relative times are negative, in 100 ns units.
const fn relative_ms(ms: i64) -> LARGE_INTEGER {
    LARGE_INTEGER {
        QuadPart: -ms * 10_000,
    }
}

unsafe extern "C" fn timer_dpc(_dpc: PKDPC, _context: PVOID, _arg1: PVOID, _arg2: PVOID) {
    STATE.timer_fired.fetch_add(1, Ordering::AcqRel);
    // SAFETY: the event was initialized before the timer was set.
    unsafe { KeSetEvent(STATE.timer_event.get(), 0, 0) };
}

unsafe extern "C" fn work_routine(_device: PDEVICE_OBJECT, _context: PVOID) {
    STATE.work_ran.fetch_add(1, Ordering::AcqRel);
    // SAFETY: the event was initialized before the item was queued.
    unsafe { KeSetEvent(STATE.work_event.get(), 0, 0) };
}

/// Waits up to `ms` for `event`: true when it was signaled.
unsafe fn wait(event: *mut wdk_sys::KEVENT, ms: i64) -> bool {
    let mut timeout = relative_ms(ms);
    // SAFETY: an initialized event; PASSIVE_LEVEL.
    let status =
        unsafe { KeWaitForSingleObject(event.cast(), Executive, KernelMode as _, 0, &mut timeout) };
    status == STATUS_SUCCESS
}

/// Sets the timer and queues the work item, waits for both (2 s each).
///
/// # Safety
/// PASSIVE_LEVEL; `device` is this driver's device.
pub unsafe fn run_timer_and_work_item(device: PDEVICE_OBJECT) -> NTSTATUS {
    // SAFETY: static objects initialized here, before the timer and item can fire.
    unsafe {
        KeInitializeEvent(STATE.timer_event.get(), NotificationEvent, 0);
        KeInitializeEvent(STATE.work_event.get(), NotificationEvent, 0);
        KeClearEvent(STATE.timer_event.get());
        KeInitializeTimer(STATE.timer.get());
        KeInitializeDpc(STATE.dpc.get(), Some(timer_dpc), ptr::null_mut());
        STATE.acquire(Acquired::Timer);
        let _ = KeSetTimer(STATE.timer.get(), relative_ms(10), STATE.dpc.get());
        let fired = wait(STATE.timer_event.get(), 2000);
        println!(
            "[RustEcho] timer DPC {} (event state {}, clock tick {} x100ns)",
            if fired {
                "ran"
            } else {
                "did not run within 2 s"
            },
            KeReadStateEvent(STATE.timer_event.get()),
            KeQueryTimeIncrement()
        );

        let item = match fault::injected("IoAllocateWorkItem") {
            Some(status) => return fault::checked("IoAllocateWorkItem", status),
            None => IoAllocateWorkItem(device),
        };
        if item.is_null() {
            return fault::checked("IoAllocateWorkItem", STATUS_INSUFFICIENT_RESOURCES);
        }
        STATE.work_item.store(item, Ordering::Release);
        STATE.acquire(Acquired::WorkItem);
        IoQueueWorkItem(item, Some(work_routine), DelayedWorkQueue, ptr::null_mut());
        let ran = wait(STATE.work_event.get(), 2000);
        println!(
            "[RustEcho] work item {}",
            if ran { "ran" } else { "did not run within 2 s" }
        );
        if ran && STATE.release(Acquired::WorkItem) {
            IoFreeWorkItem(STATE.work_item.swap(ptr::null_mut(), Ordering::AcqRel));
        }
        // A short sleep: the kernel's own wait, no event involved.
        let mut pause = relative_ms(1);
        let slept = KeDelayExecutionThread(KernelMode as _, 0, &mut pause);
        if !nt_success(slept) {
            println!(
                "[RustEcho] KeDelayExecutionThread returned 0x{:08X}",
                slept as u32
            );
        }
    }
    STATUS_SUCCESS
}

/// Cancels the timer and frees a work item that never ran (after one more wait for it).
///
/// # Safety
/// PASSIVE_LEVEL, from teardown.
pub unsafe fn stop() {
    // SAFETY: each object was initialized when its flag was set.
    unsafe {
        if STATE.release(Acquired::Timer) {
            let _ = KeCancelTimer(STATE.timer.get());
        }
        if STATE.holds(Acquired::WorkItem) {
            // Freeing a queued item is not allowed: give it time to run first.
            let _ = wait(STATE.work_event.get(), 5000);
            if STATE.release(Acquired::WorkItem) {
                IoFreeWorkItem(STATE.work_item.swap(ptr::null_mut(), Ordering::AcqRel));
            }
        }
    }
}
