//! WazabiEDR, Part 1: a KMDF driver skeleton in Rust.
//!
//! Loads, exposes `\\.\WazabiEDR` (device `\Device\WazabiEDR`, symlink
//! `\DosDevices\WazabiEDR`, buffered I/O), answers every IRP_MJ code, and
//! unloads cleanly. No kernel callbacks yet (Part 2), no IOCTL contract (Part 4).
//!
//! Builds only on Windows with the WDK (wdk-build refuses other hosts); the
//! WDK-free logic is in `wazabi-core` and is unit-tested on any host.

#![no_std]

// `cargo test` builds for the host, which brings its own panic handler and
// global allocator; registering ours as well would be a duplicate-symbol link
// error, hence the three `cfg(not(test))` gates.
//
// wdk-panic supplies the `#[panic_handler]`; nothing references it by name.
// (Its 0.4.1 handler spins in `loop {}`: a panic hangs the thread, it does not
// bugcheck. Panics are avoided here: no indexing, no unwrap.)
#[cfg(not(test))]
extern crate wdk_panic;

#[cfg(not(test))]
use wdk_alloc::WdkAllocator;

// ExAllocatePool2 with POOL_FLAG_NON_PAGED: usable at any IRQL up to
// DISPATCH_LEVEL, which Part 4's ring buffer and the OB callbacks need.
#[cfg(not(test))]
#[global_allocator]
static GLOBAL_ALLOCATOR: WdkAllocator = WdkAllocator;

mod fault;
pub mod ipc;
pub mod state;

use core::ffi::CStr;
use core::ptr;
use core::sync::atomic::Ordering;

use wazabi_core::names::{DEVICE_NAME, SYMLINK_NAME};
use wazabi_core::{Step, messages, nt_success};
use wdk_sys::{
    DO_BUFFERED_IO, FILE_DEVICE_UNKNOWN, IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE,
    IRP_MJ_DEVICE_CONTROL, IRP_MJ_MAXIMUM_FUNCTION, NTSTATUS, PCUNICODE_STRING, PDEVICE_OBJECT,
    PDRIVER_OBJECT, STATUS_SUCCESS, UNICODE_STRING,
    ntddk::{
        DbgPrint, IoCreateDevice, IoCreateSymbolicLink, IoDeleteDevice, IoDeleteSymbolicLink,
        RtlInitUnicodeString,
    },
};

use crate::ipc::dispatch::{
    dispatch_cleanup, dispatch_create_close, dispatch_device_control, dispatch_invalid,
};
use crate::state::CONTROL_DEVICE;

/// Prints one fixed line (see `wazabi_core::messages`: no `%` inside).
///
/// Plain DbgPrint, as the article does: DPFLTR_DEFAULT_ID at INFO level, which
/// passes once the guest's Debug Print Filter DEFAULT is 0x8 or 0xF (the
/// pipeline sets 0xF) or DebugView runs with /v. Every line uses the same
/// level, so a capture shows the whole sequence or none of it, never a
/// misleading half.
fn print(line: &CStr) {
    // SAFETY: a static NUL-terminated string without conversions.
    unsafe {
        DbgPrint(line.as_ptr().cast());
    }
}

/// The one failure line of a DriverEntry that gives up at `step`.
fn print_failure(step: Step, status: NTSTATUS) {
    // SAFETY: static NUL-terminated format with one %08X, given one 32-bit value.
    unsafe {
        DbgPrint(step.failed_format().as_ptr().cast(), status);
    }
}

/// Entry point, called by the KMDF stub (FxDriverEntry) at PASSIVE_LEVEL.
///
/// DriverEntry failure has no kernel-side recovery: when it returns a failure
/// status the I/O manager never calls DriverUnload. So every fallible step is
/// followed by an inline unwind of every step before it.
///
/// # Safety
/// Called by the kernel with its DRIVER_OBJECT and our service key path.
// SAFETY: no other symbol in the image is named DriverEntry.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    _registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: `driver` is the kernel's DRIVER_OBJECT, ours to fill in here.
    unsafe {
        (*driver).DriverUnload = Some(driver_unload);

        print(messages::DRIVER_ENTRY_CALLED);

        // `_registry_path` is deliberately unused (no per-deployment
        // configuration: tunables live in the agent's agent.json, Part 5),
        // except in test builds, which read FailAtStep under it.
        #[cfg(feature = "fault-injection")]
        let faults = fault::FaultPlan::from_service_key(_registry_path);
        #[cfg(not(feature = "fault-injection"))]
        let faults = fault::FaultPlan::none();

        // A NULL slot bugchecks on the first IRP of its type: default every
        // slot to dispatch_invalid, then override the four we service.
        let mj = (*driver).MajorFunction.as_mut_ptr();
        for i in 0..=IRP_MJ_MAXIMUM_FUNCTION as usize {
            *mj.add(i) = Some(dispatch_invalid);
        }

        *mj.add(IRP_MJ_CREATE as usize) = Some(dispatch_create_close);
        *mj.add(IRP_MJ_CLOSE as usize) = Some(dispatch_create_close);
        *mj.add(IRP_MJ_CLEANUP as usize) = Some(dispatch_cleanup);
        *mj.add(IRP_MJ_DEVICE_CONTROL as usize) = Some(dispatch_device_control);

        // Step 1: the device. The UTF-16 names are built at compile time by
        // wazabi_core::wstr16 and shared with DriverUnload.
        let mut device_name: UNICODE_STRING = core::mem::zeroed();
        let device_name_buf: [u16; 18] = DEVICE_NAME;
        RtlInitUnicodeString(&mut device_name, device_name_buf.as_ptr());

        let mut device: PDEVICE_OBJECT = ptr::null_mut();
        let status = match faults.inject(Step::IoCreateDevice) {
            Some(injected) => injected,
            None => IoCreateDevice(
                driver,
                0, // DeviceExtensionSize: global state lives in state.rs
                &mut device_name,
                FILE_DEVICE_UNKNOWN,
                0, // DeviceCharacteristics
                0, // Exclusive = FALSE: single-client is enforced above (Part 4)
                &mut device,
            ),
        };
        if !nt_success(status) {
            print_failure(Step::IoCreateDevice, status);
            // Unwind: nothing acquired yet. The dispatch table and
            // DriverUnload live in our own DRIVER_OBJECT, which the kernel
            // discards with the failed load.
            return status;
        }

        // Step 2: the symlink user mode resolves `\\.\WazabiEDR` through.
        let mut symlink: UNICODE_STRING = core::mem::zeroed();
        let symlink_buf: [u16; 22] = SYMLINK_NAME;
        RtlInitUnicodeString(&mut symlink, symlink_buf.as_ptr());
        let status = match faults.inject(Step::IoCreateSymbolicLink) {
            Some(injected) => injected,
            None => IoCreateSymbolicLink(&mut symlink, &mut device_name),
        };
        if !nt_success(status) {
            print_failure(Step::IoCreateSymbolicLink, status);
            // Unwind step 1.
            IoDeleteDevice(device);
            return status;
        }

        // Both calls succeeded. DO_DEVICE_INITIALIZING is not cleared by
        // hand: the I/O manager clears it for devices created in DriverEntry.
        (*device).Flags |= DO_BUFFERED_IO;
        CONTROL_DEVICE.store(device, Ordering::Release);

        print(messages::READY);
        STATUS_SUCCESS
    }
}

/// Tears down what a successful DriverEntry built, newest first.
unsafe extern "C" fn driver_unload(_driver: PDRIVER_OBJECT) {
    print(messages::DRIVER_UNLOAD_CALLED);
    // SAFETY: runs once, at PASSIVE_LEVEL, after a successful DriverEntry.
    unsafe {
        // callbacks deregistration — Part 2
        // pending IRP cancellation, queue drain — Part 4

        // Symlink before device: new opens fail with "name not found" at once,
        // instead of reaching a device being torn down.
        let mut symlink: UNICODE_STRING = core::mem::zeroed();
        let symlink_buf: [u16; 22] = SYMLINK_NAME;
        RtlInitUnicodeString(&mut symlink, symlink_buf.as_ptr());
        let _ = IoDeleteSymbolicLink(&mut symlink);

        // swap, not load-then-store: publishing null and taking the old
        // pointer is one step, so no dispatch routine can pick the pointer up
        // between our read and IoDeleteDevice.
        let dev = CONTROL_DEVICE.swap(ptr::null_mut(), Ordering::AcqRel);
        if !dev.is_null() {
            IoDeleteDevice(dev);
        }
    }
    print(messages::UNLOADED);
}
