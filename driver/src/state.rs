//! Driver-wide state, as atomics rather than a device extension (article §5):
//! friendlier to Rust's borrow model than a self-referential extension struct.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr};

use wdk_sys::DEVICE_OBJECT;

/// The control device, published by DriverEntry with `Release` once it is fully
/// set up; taken back with `swap` (never load-then-store) by DriverUnload.
pub static CONTROL_DEVICE: AtomicPtr<DEVICE_OBJECT> = AtomicPtr::new(ptr::null_mut());

// One flag per kernel registration of Part 2. DriverEntry stores `true` right
// after a registration succeeds; unwind and unload `swap(false)` before the
// matching remove/unregister call, so it never runs for a routine that was not
// registered (PsRemoveCreateThreadNotifyRoutine on an unregistered routine
// bugchecks) and never runs twice.

/// PsSetCreateProcessNotifyRoutineEx
pub static PROCESS_NOTIFY_REGISTERED: AtomicBool = AtomicBool::new(false);
/// PsSetLoadImageNotifyRoutine
pub static IMAGE_NOTIFY_REGISTERED: AtomicBool = AtomicBool::new(false);
/// CmRegisterCallback
pub static REGISTRY_CALLBACK_REGISTERED: AtomicBool = AtomicBool::new(false);
/// PsSetCreateThreadNotifyRoutine
pub static THREAD_NOTIFY_REGISTERED: AtomicBool = AtomicBool::new(false);
/// ObRegisterCallbacks (PsProcessType)
pub static OB_CALLBACKS_REGISTERED: AtomicBool = AtomicBool::new(false);
