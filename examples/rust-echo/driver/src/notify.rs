//! Process, thread and image notify routines: registered in DriverEntry,
//! removed in teardown. They only count events (the stats IOCTL reports the
//! counts). Under Wine they register but never fire.
use core::sync::atomic::Ordering;

use wdk::{nt_success, println};
use wdk_sys::{
    ntddk::{
        IoGetCurrentProcess, PsGetCurrentProcessId, PsGetCurrentThreadId, PsGetProcessId,
        PsRemoveCreateThreadNotifyRoutine, PsRemoveLoadImageNotifyRoutine,
        PsSetCreateProcessNotifyRoutine, PsSetCreateProcessNotifyRoutineEx,
        PsSetCreateThreadNotifyRoutine, PsSetLoadImageNotifyRoutine, RtlRandomEx,
    },
    BOOLEAN, HANDLE, NTSTATUS, PEPROCESS, PIMAGE_INFO, PPS_CREATE_NOTIFY_INFO, PUNICODE_STRING,
    STATUS_SUCCESS,
};

use crate::fault;
use crate::state::{Acquired, STATE};

unsafe extern "C" fn process_notify_ex(
    _process: PEPROCESS,
    _pid: HANDLE,
    _info: PPS_CREATE_NOTIFY_INFO,
) {
    STATE.process_events.fetch_add(1, Ordering::AcqRel);
}

unsafe extern "C" fn process_notify(_parent: HANDLE, _pid: HANDLE, _create: BOOLEAN) {
    STATE.process_events.fetch_add(1, Ordering::AcqRel);
}

unsafe extern "C" fn thread_notify(_pid: HANDLE, _tid: HANDLE, _create: BOOLEAN) {
    STATE.thread_events.fetch_add(1, Ordering::AcqRel);
}

unsafe extern "C" fn image_notify(_name: PUNICODE_STRING, _pid: HANDLE, _info: PIMAGE_INFO) {
    STATE.image_events.fetch_add(1, Ordering::AcqRel);
}

/// Registers the three routines. The Ex process routine needs an image linked
/// with /INTEGRITYCHECK on Windows; without it the plain one is registered.
///
/// # Safety
/// PASSIVE_LEVEL.
pub unsafe fn register() -> NTSTATUS {
    // SAFETY: routines with static lifetime; each removal is in unregister.
    unsafe {
        let pid = PsGetCurrentProcessId() as usize;
        let tid = PsGetCurrentThreadId() as usize;
        let same = PsGetProcessId(IoGetCurrentProcess()) as usize == pid;
        let mut seed = pid as u32;
        println!(
            "[RustEcho] context pid {} tid {} process object agrees {} random {}",
            pid,
            tid,
            same,
            RtlRandomEx(&mut seed) > 0
        );

        let status = PsSetCreateProcessNotifyRoutineEx(Some(process_notify_ex), 0);
        if nt_success(status) {
            STATE.acquire(Acquired::ProcessNotifyEx);
        } else {
            let status = PsSetCreateProcessNotifyRoutine(Some(process_notify), 0);
            if !nt_success(status) {
                return status;
            }
            STATE.acquire(Acquired::ProcessNotify);
        }
        let status = PsSetCreateThreadNotifyRoutine(Some(thread_notify));
        if !nt_success(status) {
            return status;
        }
        STATE.acquire(Acquired::ThreadNotify);
        let status = fault::injected("PsSetLoadImageNotifyRoutine")
            .unwrap_or_else(|| PsSetLoadImageNotifyRoutine(Some(image_notify)));
        if !nt_success(fault::checked("PsSetLoadImageNotifyRoutine", status)) {
            return status;
        }
        STATE.acquire(Acquired::ImageNotify);
        println!(
            "[RustEcho] notify routines registered (process{}, thread, image)",
            if STATE.holds(Acquired::ProcessNotifyEx) {
                " Ex"
            } else {
                ""
            }
        );
    }
    STATUS_SUCCESS
}

/// Removes whatever `register` registered.
///
/// # Safety
/// PASSIVE_LEVEL, from teardown.
pub unsafe fn unregister() {
    // SAFETY: each removal matches a registration recorded in STATE.
    unsafe {
        if STATE.release(Acquired::ImageNotify) {
            let _ = PsRemoveLoadImageNotifyRoutine(Some(image_notify));
        }
        if STATE.release(Acquired::ThreadNotify) {
            let _ = PsRemoveCreateThreadNotifyRoutine(Some(thread_notify));
        }
        if STATE.release(Acquired::ProcessNotifyEx) {
            let _ = PsSetCreateProcessNotifyRoutineEx(Some(process_notify_ex), 1);
        }
        if STATE.release(Acquired::ProcessNotify) {
            let _ = PsSetCreateProcessNotifyRoutine(Some(process_notify), 1);
        }
    }
    println!(
        "[RustEcho] notify routines removed (events seen: process {}, thread {}, image {})",
        STATE.process_events.load(Ordering::Acquire),
        STATE.thread_events.load(Ordering::Acquire),
        STATE.image_events.load(Ordering::Acquire)
    );
}
