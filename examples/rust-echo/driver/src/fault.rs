//! Fault injection for `invoke regress` (cargo feature `fault-injection`):
//! DriverEntry's steps are numbered as `regress.fault_steps` lists them, and
//! the step numbered `Parameters\FailAtStep` returns STATUS_UNSUCCESSFUL
//! instead of calling its routine. Without the feature FailAtStep is never
//! read and nothing is injected.
use core::sync::atomic::Ordering;

use wdk::{nt_success, println};
use wdk_sys::{NTSTATUS, STATUS_UNSUCCESSFUL};

use crate::state::STATE;

/// `regress.fault_steps`, in order: the step number is the position + 1.
pub const STEPS: [&str; 4] = [
    "IoCreateDevice",
    "IoCreateSymbolicLink",
    "IoAllocateWorkItem",
    "PsSetLoadImageNotifyRoutine",
];

/// Some(STATUS_UNSUCCESSFUL) when `name` is the step to fail (announced first).
pub fn injected(name: &str) -> Option<NTSTATUS> {
    let number = STEPS.iter().position(|s| *s == name)? as u32 + 1;
    if STATE.fail_at.load(Ordering::Acquire) != number {
        return None;
    }
    println!(
        "[RustEcho] fault injection: failing step {} ({})",
        number, name
    );
    Some(STATUS_UNSUCCESSFUL)
}

/// The step's status, with its failure line (what `expect.failed_load` waits for).
pub fn checked(name: &str, status: NTSTATUS) -> NTSTATUS {
    if !nt_success(status) {
        println!(
            "[RustEcho] {} failed (status 0x{:08X})",
            name, status as u32
        );
    }
    status
}
