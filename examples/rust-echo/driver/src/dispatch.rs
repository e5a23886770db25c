//! IRP dispatch: create/close, the IOCTLs, and a default that fails every
//! other request. Every routine completes its IRP exactly once.
use core::ptr;
use core::sync::atomic::Ordering;

use wdk_sys::{
    ntddk::{
        ExAcquireResourceExclusiveLite, ExReleaseResourceLite, IofCompleteRequest,
        KeAcquireSpinLockRaiseToDpc, KeEnterCriticalRegion, KeLeaveCriticalRegion,
        KeReleaseSpinLock, MmMapLockedPagesSpecifyCache,
    },
    _MEMORY_CACHING_TYPE::MmCached,
    _MM_PAGE_PRIORITY::NormalPagePriority,
    _MODE::KernelMode,
    IO_NO_INCREMENT, MDL_MAPPED_TO_SYSTEM_VA, MDL_SOURCE_IS_NONPAGED_POOL, NTSTATUS,
    PDEVICE_OBJECT, PIRP, PMDL, PVOID, STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

use crate::state::STATE;

/// CTL_CODE(FILE_DEVICE_UNKNOWN, function, method, FILE_ANY_ACCESS).
const fn ctl_code(function: u32, method: u32) -> u32 {
    (0x22 << 16) | (function << 2) | method
}
pub const IOCTL_ECHO_BUFFERED: u32 = ctl_code(0x801, 0); // 0x222004
pub const IOCTL_ECHO_OUT_DIRECT: u32 = ctl_code(0x803, 2); // 0x22200E
pub const IOCTL_LENGTH_CHECK: u32 = ctl_code(0x804, 0); // 0x222010
pub const IOCTL_ASYNC_COUNTERS: u32 = ctl_code(0x805, 0); // 0x222014
pub const IOCTL_REGISTRY_VALUES: u32 = ctl_code(0x806, 0); // 0x222018

unsafe fn complete(irp: PIRP, status: NTSTATUS, information: usize) -> NTSTATUS {
    // SAFETY: the caller owns `irp`; it is not touched after IofCompleteRequest.
    unsafe {
        (*irp).IoStatus.__bindgen_anon_1.Status = status;
        (*irp).IoStatus.Information = information as _;
        IofCompleteRequest(irp, IO_NO_INCREMENT as _);
    }
    status
}

/// MmGetSystemAddressForMdlSafe (a macro in wdm.h): the MDL's system address.
///
/// # Safety
/// `mdl` is a valid, locked MDL.
pub unsafe fn system_address(mdl: PMDL) -> PVOID {
    // SAFETY: per the caller.
    unsafe {
        if (*mdl).MdlFlags as u32 & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0 {
            (*mdl).MappedSystemVa
        } else {
            MmMapLockedPagesSpecifyCache(
                mdl,
                KernelMode as _,
                MmCached,
                ptr::null_mut(),
                0,
                NormalPagePriority as _,
            )
        }
    }
}

fn write_u32s(out: *mut u8, values: &[u32]) {
    for (i, v) in values.iter().enumerate() {
        // SAFETY: the caller checked the output length.
        unsafe { ptr::copy_nonoverlapping(v.to_le_bytes().as_ptr(), out.add(i * 4), 4) };
    }
}

/// # Safety
/// Called by the I/O manager only.
pub unsafe extern "C" fn invalid(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager passes an IRP we own.
    unsafe { complete(irp, STATUS_INVALID_DEVICE_REQUEST, 0) }
}

/// # Safety
/// Called by the I/O manager only.
pub unsafe extern "C" fn create_close(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager passes an IRP we own.
    unsafe { complete(irp, STATUS_SUCCESS, 0) }
}

/// # Safety
/// Called by the I/O manager only.
pub unsafe extern "C" fn device_control(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the IRP, its stack location and its buffers are the I/O manager's
    // for this request; lengths are checked before any copy.
    unsafe {
        let stack = (*irp)
            .Tail
            .Overlay
            .__bindgen_anon_2
            .__bindgen_anon_1
            .CurrentStackLocation;
        let params = (*stack).Parameters.DeviceIoControl;
        let (code, input, output) = (
            params.IoControlCode,
            params.InputBufferLength as usize,
            params.OutputBufferLength as usize,
        );
        let system = (*irp).AssociatedIrp.SystemBuffer.cast::<u8>();
        match code {
            IOCTL_ECHO_BUFFERED => {
                // The same SystemBuffer carries the input in and the output out.
                if output < input {
                    return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
                }
                count_echo();
                complete(irp, STATUS_SUCCESS, input)
            }
            IOCTL_ECHO_OUT_DIRECT => {
                let mdl = (*irp).MdlAddress;
                if output < input {
                    return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
                }
                if input == 0 {
                    return complete(irp, STATUS_SUCCESS, 0);
                }
                if mdl.is_null() || system.is_null() {
                    return complete(irp, STATUS_INVALID_PARAMETER, 0);
                }
                let out = system_address(mdl).cast::<u8>();
                if out.is_null() {
                    return complete(irp, STATUS_INVALID_PARAMETER, 0);
                }
                ptr::copy_nonoverlapping(system, out, input);
                count_echo();
                complete(irp, STATUS_SUCCESS, input)
            }
            IOCTL_LENGTH_CHECK => {
                if input != 4 {
                    return complete(irp, STATUS_INVALID_PARAMETER, 0);
                }
                if output < 4 {
                    return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
                }
                let mut value = [0u8; 4];
                ptr::copy_nonoverlapping(system, value.as_mut_ptr(), 4);
                write_u32s(system, &[!u32::from_le_bytes(value)]);
                complete(irp, STATUS_SUCCESS, 4)
            }
            IOCTL_ASYNC_COUNTERS => {
                if output < 8 {
                    return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
                }
                // The executive resource guards the snapshot (a reader could take it shared).
                KeEnterCriticalRegion();
                ExAcquireResourceExclusiveLite(STATE.resource.get(), 1);
                let values = [
                    STATE.timer_fired.load(Ordering::Acquire),
                    STATE.work_ran.load(Ordering::Acquire),
                ];
                ExReleaseResourceLite(STATE.resource.get());
                KeLeaveCriticalRegion();
                write_u32s(system, &values);
                complete(irp, STATUS_SUCCESS, 8)
            }
            IOCTL_REGISTRY_VALUES => {
                if output < 8 {
                    return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
                }
                write_u32s(
                    system,
                    &[
                        STATE.start_type.load(Ordering::Acquire),
                        STATE.greeting.load(Ordering::Acquire),
                    ],
                );
                complete(irp, STATUS_SUCCESS, 8)
            }
            _ => complete(irp, STATUS_INVALID_DEVICE_REQUEST, 0),
        }
    }
}

/// Counts an echo under the spin lock (raised to DISPATCH_LEVEL meanwhile).
fn count_echo() {
    // SAFETY: a static, zero-initialized (released) spin lock.
    unsafe {
        let irql = KeAcquireSpinLockRaiseToDpc(STATE.lock.get());
        STATE.echoes.fetch_add(1, Ordering::Relaxed);
        KeReleaseSpinLock(STATE.lock.get(), irql);
    }
}
