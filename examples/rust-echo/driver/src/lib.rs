//! RustEcho: a WDM driver that exercises much more of the kernel API than a
//! skeleton, so a build and a load prove the bindings, not just the link.
//!
//! DriverEntry reads and writes its service key, allocates tagged pool (also
//! through the global allocator) and an MDL, sets up a lookaside list, an
//! executive resource and a spin lock, creates `\Device\RustEcho` with the
//! symlink `\\.\RustEcho`, runs a timer DPC and a work item and waits for
//! both, and registers process, thread and image notify routines. Every step
//! that acquires something records it in `state`; one `teardown` releases
//! whatever was acquired, newest first, for both a failed DriverEntry and
//! DriverUnload.
//!
//! IOCTLs (device type 0x22, any access): buffered echo (0x801), out-direct
//! echo through the MDL (0x803), a length check (0x804: exactly 4 bytes in,
//! at least 4 out), the async counters (0x805) and the registry values read
//! at load (0x806). Every line it prints starts with `[RustEcho]`.
#![no_std]

#[cfg(not(test))]
extern crate wdk_panic;

#[cfg(not(test))]
use wdk_alloc::WdkAllocator;

#[cfg(not(test))]
#[global_allocator]
static GLOBAL_ALLOCATOR: WdkAllocator = WdkAllocator;

extern crate alloc;

mod dispatch;
mod fault;
mod names;
mod notify;
mod registry;
mod state;
mod work;

use core::ptr;
use core::sync::atomic::Ordering;

use wdk::{nt_success, println};
use wdk_sys::{
    ntddk::{
        ExAllocatePoolWithTag, ExDeleteNPagedLookasideList, ExDeleteResourceLite,
        ExFreePoolWithTag, ExInitializeNPagedLookasideList, ExInitializeResourceLite,
        IoAllocateMdl, IoCreateDevice, IoCreateSymbolicLink, IoDeleteDevice, IoDeleteSymbolicLink,
        IoFreeMdl, MmBuildMdlForNonPagedPool, MmGetSystemRoutineAddress, RtlCompareMemory,
        RtlCopyUnicodeString, RtlEqualUnicodeString, RtlGetVersion, RtlInitUnicodeString,
    },
    _POOL_TYPE::NonPagedPoolNx,
    DO_BUFFERED_IO, FILE_DEVICE_UNKNOWN, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL,
    IRP_MJ_MAXIMUM_FUNCTION, NTSTATUS, PCUNICODE_STRING, PDEVICE_OBJECT, PDRIVER_OBJECT,
    RTL_OSVERSIONINFOW, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS, ULONG, UNICODE_STRING,
};

use crate::names::{DEVICE_NAME, SYMLINK_NAME};
use crate::state::{Acquired, STATE};

/// 'Echo' as pool tag, for every allocation this driver makes itself.
pub const POOL_TAG: ULONG = u32::from_le_bytes(*b"Echo");
/// Size of the scratch buffer kept for the driver's lifetime.
const SCRATCH_BYTES: usize = 4096;

/// ExAllocatePoolWithTag with this driver's tag, counted so unload can prove
/// that every allocation was freed.
unsafe fn pool_alloc(bytes: usize) -> *mut u8 {
    // SAFETY: plain pool allocation; null on failure.
    let p = unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, bytes as _, POOL_TAG) }.cast::<u8>();
    if !p.is_null() {
        STATE.pool_outstanding.fetch_add(1, Ordering::AcqRel);
    }
    p
}

unsafe fn pool_free(p: *mut u8) {
    if !p.is_null() {
        // SAFETY: `p` came from pool_alloc with the same tag.
        unsafe { ExFreePoolWithTag(p.cast(), POOL_TAG) };
        STATE.pool_outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Entry point, at PASSIVE_LEVEL.
///
/// # Safety
/// Called by the kernel with its DRIVER_OBJECT and this service's key path.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    println!("[RustEcho] DriverEntry called");
    // SAFETY: DriverEntry's contract; each step below states its own.
    let status = unsafe { setup(driver, registry_path) };
    if !nt_success(status) {
        // The failing step printed its own line (fault::checked); one failure line per load.
        // SAFETY: releases exactly what setup recorded as acquired.
        unsafe { teardown() };
        return status;
    }
    println!(
        "[RustEcho] ready ({} kernel routines imported)",
        names::KERNEL_ROUTINES
    );
    STATUS_SUCCESS
}

unsafe fn setup(driver: PDRIVER_OBJECT, registry_path: PCUNICODE_STRING) -> NTSTATUS {
    // SAFETY: `driver` is ours to fill in during DriverEntry.
    unsafe {
        (*driver).DriverUnload = Some(driver_unload);
        let mj = (*driver).MajorFunction.as_mut_ptr();
        for i in 0..=IRP_MJ_MAXIMUM_FUNCTION as usize {
            *mj.add(i) = Some(dispatch::invalid);
        }
        *mj.add(IRP_MJ_CREATE as usize) = Some(dispatch::create_close);
        *mj.add(IRP_MJ_CLOSE as usize) = Some(dispatch::create_close);
        *mj.add(IRP_MJ_DEVICE_CONTROL as usize) = Some(dispatch::device_control);
    }

    // The OS version, as RtlGetVersion reports it (Wine reports the Windows it emulates).
    let mut version: RTL_OSVERSIONINFOW = Default::default();
    version.dwOSVersionInfoSize = core::mem::size_of::<RTL_OSVERSIONINFOW>() as ULONG;
    // SAFETY: a valid, sized out structure.
    if nt_success(unsafe { RtlGetVersion(&mut version) }) {
        println!(
            "[RustEcho] os {}.{} build {}",
            version.dwMajorVersion, version.dwMinorVersion, version.dwBuildNumber
        );
    }

    // SAFETY: registry_path is DriverEntry's argument, PASSIVE_LEVEL.
    let values = unsafe { registry::read_and_write(registry_path) };
    STATE.start_type.store(values.start, Ordering::Release);
    STATE.greeting.store(values.greeting, Ordering::Release);
    STATE.fail_at.store(values.fail_at, Ordering::Release);
    println!(
        "[RustEcho] registry Start={} Greeting=0x{:X}",
        values.start, values.greeting
    );

    // Pool: a scratch buffer kept until unload, described once by an MDL.
    // SAFETY: plain allocations, checked for null.
    unsafe {
        let scratch = pool_alloc(SCRATCH_BYTES);
        if scratch.is_null() {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        STATE.scratch.store(scratch, Ordering::Release);
        STATE.acquire(Acquired::Scratch);
        let mdl = IoAllocateMdl(
            scratch.cast(),
            SCRATCH_BYTES as ULONG,
            0,
            0,
            ptr::null_mut(),
        );
        if mdl.is_null() {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        MmBuildMdlForNonPagedPool(mdl);
        let mapped = dispatch::system_address(mdl) == scratch.cast();
        IoFreeMdl(mdl);
        println!(
            "[RustEcho] pool scratch {} bytes tagged Echo, MDL maps it: {}",
            SCRATCH_BYTES, mapped
        );
    }
    // The global allocator (wdk-alloc, on ExAllocatePoolWithTag) as Rust code uses it.
    let mut boxed = alloc::vec::Vec::<u32>::with_capacity(16);
    boxed.extend(0..16u32);
    println!("[RustEcho] allocator vec sum {}", boxed.iter().sum::<u32>());
    drop(boxed);

    // SAFETY: static kernel objects, initialized once before any use.
    unsafe {
        ExInitializeNPagedLookasideList(STATE.lookaside.get(), None, None, 0, 256, POOL_TAG, 0);
        STATE.acquire(Acquired::Lookaside);
        let status = ExInitializeResourceLite(STATE.resource.get());
        if !nt_success(status) {
            return status;
        }
        STATE.acquire(Acquired::Resource);
    }

    // The device and its symlink.
    let mut device_name: UNICODE_STRING = Default::default();
    let mut symlink: UNICODE_STRING = Default::default();
    let mut device: PDEVICE_OBJECT = ptr::null_mut();
    // SAFETY: NUL-terminated static names; out pointers valid.
    unsafe {
        RtlInitUnicodeString(&mut device_name, DEVICE_NAME.as_ptr());
        RtlInitUnicodeString(&mut symlink, SYMLINK_NAME.as_ptr());
        let status = fault::injected("IoCreateDevice").unwrap_or_else(|| {
            IoCreateDevice(
                driver,
                0,
                &mut device_name,
                FILE_DEVICE_UNKNOWN,
                0,
                0,
                &mut device,
            )
        });
        let status = fault::checked("IoCreateDevice", status);
        if !nt_success(status) {
            return status;
        }
        STATE.device.store(device, Ordering::Release);
        STATE.acquire(Acquired::Device);
        let status = fault::injected("IoCreateSymbolicLink")
            .unwrap_or_else(|| IoCreateSymbolicLink(&mut symlink, &mut device_name));
        let status = fault::checked("IoCreateSymbolicLink", status);
        if !nt_success(status) {
            return status;
        }
        STATE.acquire(Acquired::Symlink);
        (*device).Flags |= DO_BUFFERED_IO;
    }

    // String routines on the names just used.
    // SAFETY: a pool buffer sized for the copy; both strings valid.
    unsafe {
        let buffer = pool_alloc(64);
        if !buffer.is_null() {
            let mut copy = UNICODE_STRING {
                Length: 0,
                MaximumLength: 64,
                Buffer: buffer.cast(),
            };
            RtlCopyUnicodeString(&mut copy, &device_name);
            let equal = RtlEqualUnicodeString(&copy, &device_name, 0) != 0;
            let same = RtlCompareMemory(
                copy.Buffer.cast(),
                device_name.Buffer.cast(),
                device_name.Length as _,
            ) == device_name.Length as _;
            println!(
                "[RustEcho] strings: copy equal {} same bytes {}",
                equal, same
            );
            pool_free(buffer);
        }
        let mut routine: UNICODE_STRING = Default::default();
        RtlInitUnicodeString(&mut routine, names::DBGPRINT.as_ptr());
        let found = !MmGetSystemRoutineAddress(&mut routine).is_null();
        println!(
            "[RustEcho] MmGetSystemRoutineAddress(DbgPrint) found: {}",
            found
        );
    }

    // SAFETY: PASSIVE_LEVEL; the device exists (the work item needs it).
    let status = unsafe { work::run_timer_and_work_item(device) };
    if !nt_success(status) {
        return status;
    }
    // SAFETY: PASSIVE_LEVEL, routines with static lifetime.
    unsafe { notify::register() }
}

/// Releases what `setup` acquired, newest first. Each flag is taken with a
/// swap, so nothing is released twice or released without being acquired.
unsafe fn teardown() {
    // SAFETY: each release matches an acquisition recorded in STATE.
    unsafe {
        notify::unregister();
        work::stop();
        if STATE.release(Acquired::Symlink) {
            let mut symlink: UNICODE_STRING = Default::default();
            RtlInitUnicodeString(&mut symlink, SYMLINK_NAME.as_ptr());
            let _ = IoDeleteSymbolicLink(&mut symlink);
        }
        if STATE.release(Acquired::Device) {
            let device = STATE.device.swap(ptr::null_mut(), Ordering::AcqRel);
            if !device.is_null() {
                IoDeleteDevice(device);
            }
        }
        if STATE.release(Acquired::Resource) {
            let _ = ExDeleteResourceLite(STATE.resource.get());
        }
        if STATE.release(Acquired::Lookaside) {
            ExDeleteNPagedLookasideList(STATE.lookaside.get());
        }
        if STATE.release(Acquired::Scratch) {
            pool_free(STATE.scratch.swap(ptr::null_mut(), Ordering::AcqRel));
        }
    }
}

unsafe extern "C" fn driver_unload(_driver: PDRIVER_OBJECT) {
    println!("[RustEcho] DriverUnload called");
    // SAFETY: runs once, at PASSIVE_LEVEL, after a successful DriverEntry.
    unsafe { teardown() };
    println!(
        "[RustEcho] unloaded (pool allocations outstanding: {})",
        STATE.pool_outstanding.load(Ordering::Acquire)
    );
}
