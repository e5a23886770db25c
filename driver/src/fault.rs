//! Fault injection for the unwind ladder (cargo feature `fault-injection`).
//!
//! Without the feature, [`FaultPlan::inject`] is a constant `None` and the
//! registry is never touched. With it, DriverEntry reads REG_DWORD `FailAtStep`
//! from `<registry_path>\Parameters` and the selected step returns
//! STATUS_UNSUCCESSFUL instead of calling its API. The decision and the value
//! parsing live in `wazabi_core::fault` (unit-tested on the host).

use wazabi_core::Step;
use wdk_sys::NTSTATUS;

#[cfg(feature = "fault-injection")]
pub struct FaultPlan {
    fail_at: u32,
}

#[cfg(not(feature = "fault-injection"))]
pub struct FaultPlan;

#[cfg(not(feature = "fault-injection"))]
impl FaultPlan {
    pub const fn none() -> Self {
        FaultPlan
    }

    #[inline(always)]
    pub fn inject(&self, _step: Step) -> Option<NTSTATUS> {
        None
    }
}

#[cfg(feature = "fault-injection")]
impl FaultPlan {
    /// Reads `FailAtStep` under the service key DriverEntry received.
    ///
    /// # Safety
    /// PASSIVE_LEVEL (DriverEntry); `registry_path` is DriverEntry's argument.
    pub unsafe fn from_service_key(registry_path: wdk_sys::PCUNICODE_STRING) -> Self {
        // SAFETY: forwarded from the caller.
        let fail_at = unsafe { registry::read_fail_at_step(registry_path) };
        FaultPlan { fail_at }
    }

    /// Some(injected status) if `step` is the one to fail; prints the
    /// announcement first so the log shows the failure was injected.
    pub fn inject(&self, step: Step) -> Option<NTSTATUS> {
        if !wazabi_core::fault::should_fail(self.fail_at, step) {
            return None;
        }
        // SAFETY: static NUL-terminated format with one %u, given one u32.
        unsafe {
            wdk_sys::ntddk::DbgPrint(step.injection_format().as_ptr().cast(), step.number());
        }
        Some(wazabi_core::fault::INJECTED_STATUS)
    }
}

#[cfg(feature = "fault-injection")]
mod registry {
    use core::mem::{offset_of, size_of};
    use core::ptr;

    use wazabi_core::fault::{
        PARTIAL_INFORMATION_DWORD_LEN, PARTIAL_INFORMATION_HEADER_LEN,
        fail_at_from_partial_information,
    };
    use wazabi_core::names::{FAIL_AT_STEP_VALUE, PARAMETERS_KEY};
    use wazabi_core::nt_success;
    use wdk_sys::{
        _KEY_VALUE_INFORMATION_CLASS::KeyValuePartialInformation,
        HANDLE, KEY_READ, KEY_VALUE_PARTIAL_INFORMATION, OBJ_CASE_INSENSITIVE, OBJ_KERNEL_HANDLE,
        OBJECT_ATTRIBUTES, PCUNICODE_STRING, ULONG, UNICODE_STRING,
        ntddk::{RtlInitUnicodeString, ZwClose, ZwOpenKey, ZwQueryValueKey},
    };

    // The WDK-free parser assumes Data starts right after three ULONGs.
    const _: () =
        assert!(offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data) == PARTIAL_INFORMATION_HEADER_LEN);

    /// ZwQueryValueKey output buffer, aligned like the structure it receives.
    #[repr(C, align(8))]
    struct ValueBuffer([u8; PARTIAL_INFORMATION_DWORD_LEN]);

    /// Opens `name` (relative to `root`, or absolute when `root` is null) for reading.
    unsafe fn open_key(root: HANDLE, name: *mut UNICODE_STRING) -> Option<HANDLE> {
        // SAFETY: plain C struct, all-zero is its documented initial state
        // (what InitializeObjectAttributes writes besides the fields set below).
        let mut attributes: OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
        attributes.Length = size_of::<OBJECT_ATTRIBUTES>() as ULONG;
        attributes.RootDirectory = root;
        attributes.ObjectName = name;
        // Kernel handle: not reachable from whatever process context we run in.
        attributes.Attributes = OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE;
        let mut key: HANDLE = ptr::null_mut();
        // SAFETY: valid out pointer and attributes; PASSIVE_LEVEL per caller.
        let status = unsafe { ZwOpenKey(&mut key, KEY_READ, &mut attributes) };
        nt_success(status).then_some(key)
    }

    /// FailAtStep, or 0 when the key or value is missing or unreadable.
    ///
    /// # Safety
    /// PASSIVE_LEVEL; `registry_path` null or a valid UNICODE_STRING.
    pub unsafe fn read_fail_at_step(registry_path: PCUNICODE_STRING) -> u32 {
        if registry_path.is_null() {
            return 0;
        }
        // Open the service key through its UNICODE_STRING (not necessarily
        // NUL-terminated, so no RTL_REGISTRY_ABSOLUTE path), then Parameters under it.
        // SAFETY: ZwOpenKey only reads the string.
        let Some(service) = (unsafe { open_key(ptr::null_mut(), registry_path.cast_mut()) }) else {
            return 0;
        };
        let mut parameters_name: UNICODE_STRING = UNICODE_STRING::default();
        let parameters_buf: [u16; 11] = PARAMETERS_KEY;
        // SAFETY: NUL-terminated buffer that outlives its use below.
        unsafe { RtlInitUnicodeString(&mut parameters_name, parameters_buf.as_ptr()) };
        // SAFETY: `service` is an open key handle.
        let parameters = unsafe { open_key(service, &mut parameters_name) };
        // SAFETY: we opened it; the Parameters handle does not depend on it.
        let _ = unsafe { ZwClose(service) };
        let Some(parameters) = parameters else {
            return 0;
        };

        let mut value_name: UNICODE_STRING = UNICODE_STRING::default();
        let value_buf: [u16; 11] = FAIL_AT_STEP_VALUE;
        // SAFETY: NUL-terminated buffer that outlives its use below.
        unsafe { RtlInitUnicodeString(&mut value_name, value_buf.as_ptr()) };
        let mut buffer = ValueBuffer([0; PARTIAL_INFORMATION_DWORD_LEN]);
        let mut written: ULONG = 0;
        // SAFETY: buffer and length match; the handle is open.
        let status = unsafe {
            ZwQueryValueKey(
                parameters,
                &mut value_name,
                KeyValuePartialInformation,
                buffer.0.as_mut_ptr().cast(),
                PARTIAL_INFORMATION_DWORD_LEN as ULONG,
                &mut written,
            )
        };
        // SAFETY: we opened it.
        let _ = unsafe { ZwClose(parameters) };
        if !nt_success(status) {
            return 0;
        }
        let written = (written as usize).min(PARTIAL_INFORMATION_DWORD_LEN);
        buffer
            .0
            .get(..written)
            .map_or(0, fail_at_from_partial_information)
    }
}
