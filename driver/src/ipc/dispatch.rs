//! IRP dispatch routines.
//!
//! Every routine completes the IRP it is given exactly once and returns the
//! status it completed it with (read from a local: the IRP belongs to the I/O
//! manager again as soon as IofCompleteRequest returns). Part 1 moves no data,
//! so `Information` is always 0.

use wdk_sys::{
    CCHAR, IO_NO_INCREMENT, NTSTATUS, PDEVICE_OBJECT, PIRP, STATUS_INVALID_DEVICE_REQUEST,
    STATUS_SUCCESS, ntddk::IofCompleteRequest,
};

/// Sets the final status, no bytes transferred, and hands the IRP back.
///
/// # Safety
/// `irp` is a live IRP this driver owns and has not completed yet.
unsafe fn complete(irp: PIRP, status: NTSTATUS) -> NTSTATUS {
    // SAFETY: the caller owns `irp`; it is not touched after IofCompleteRequest.
    unsafe {
        (*irp).IoStatus.__bindgen_anon_1.Status = status;
        (*irp).IoStatus.Information = 0;
        // IoCompleteRequest is a macro over IofCompleteRequest. No priority
        // boost: nothing waited on a device for this request.
        IofCompleteRequest(irp, IO_NO_INCREMENT as CCHAR);
    }
    status
}

/// Default for every IRP_MJ slot: a NULL slot would bugcheck on the first
/// unexpected IRP of that type, this one fails it cleanly.
///
/// # Safety
/// Called by the I/O manager only, with an IRP this driver now owns.
pub unsafe extern "C" fn dispatch_invalid(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager passes an IRP we own.
    unsafe { complete(irp, STATUS_INVALID_DEVICE_REQUEST) }
}

/// IRP_MJ_CREATE and IRP_MJ_CLOSE: the agent's CreateFile and CloseHandle succeed.
///
/// # Safety
/// Called by the I/O manager only, with an IRP this driver now owns.
pub unsafe extern "C" fn dispatch_create_close(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager passes an IRP we own.
    unsafe { complete(irp, STATUS_SUCCESS) }
}

/// IRP_MJ_CLEANUP: the last handle on a file object is closing.
///
/// # Safety
/// Called by the I/O manager only, with an IRP this driver now owns.
pub unsafe extern "C" fn dispatch_cleanup(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // Part 4: cancel the IRP parked in PENDING_IRP before completing this one.
    // SAFETY: the I/O manager passes an IRP we own.
    unsafe { complete(irp, STATUS_SUCCESS) }
}

/// IRP_MJ_DEVICE_CONTROL: no IOCTL is wired yet (IOCTL_WEDR_GET_EVENT is Part 4),
/// so every control code is an invalid request.
///
/// # Safety
/// Called by the I/O manager only, with an IRP this driver now owns.
pub unsafe extern "C" fn dispatch_device_control(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager passes an IRP we own.
    unsafe { complete(irp, STATUS_INVALID_DEVICE_REQUEST) }
}
