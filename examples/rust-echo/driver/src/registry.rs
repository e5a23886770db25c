//! The service key: reads `Start`, creates `Parameters`, writes `Greeting`
//! there and reads it back (ZwOpenKey, ZwCreateKey, ZwSetValueKey,
//! ZwQueryValueKey, ZwClose).
use core::mem::size_of;
use core::ptr;

use wdk::nt_success;
use wdk_sys::{
    ntddk::{
        RtlInitUnicodeString, ZwClose, ZwCreateKey, ZwOpenKey, ZwQueryValueKey, ZwSetValueKey,
    },
    _KEY_VALUE_INFORMATION_CLASS::KeyValuePartialInformation,
    HANDLE, KEY_ALL_ACCESS, KEY_READ, KEY_VALUE_PARTIAL_INFORMATION, OBJECT_ATTRIBUTES,
    OBJ_CASE_INSENSITIVE, OBJ_KERNEL_HANDLE, PCUNICODE_STRING, REG_DWORD, REG_OPTION_VOLATILE,
    ULONG, UNICODE_STRING,
};

use crate::names::{FAIL_AT_STEP, GREETING, PARAMETERS, START};

/// The value written under Parameters and expected back.
pub const GREETING_VALUE: u32 = 0x5EED;

pub struct Values {
    pub start: u32,
    pub greeting: u32,
    /// `Parameters\FailAtStep` (fault-injection builds only; 0 otherwise).
    pub fail_at: u32,
}

fn attributes(root: HANDLE, name: *mut UNICODE_STRING) -> OBJECT_ATTRIBUTES {
    OBJECT_ATTRIBUTES {
        Length: size_of::<OBJECT_ATTRIBUTES>() as ULONG,
        RootDirectory: root,
        ObjectName: name,
        Attributes: OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
        SecurityDescriptor: ptr::null_mut(),
        SecurityQualityOfService: ptr::null_mut(),
    }
}

/// A REG_DWORD value of an open key, or None.
unsafe fn read_dword(key: HANDLE, name: &[u16]) -> Option<u32> {
    #[repr(C, align(8))]
    struct Buffer([u8; size_of::<KEY_VALUE_PARTIAL_INFORMATION>() + 4]);
    let mut buffer = Buffer([0; size_of::<KEY_VALUE_PARTIAL_INFORMATION>() + 4]);
    let mut value_name: UNICODE_STRING = Default::default();
    let mut got: ULONG = 0;
    // SAFETY: valid key handle, NUL-terminated name, a buffer of the stated size.
    let status = unsafe {
        RtlInitUnicodeString(&mut value_name, name.as_ptr());
        ZwQueryValueKey(
            key,
            &mut value_name,
            KeyValuePartialInformation,
            buffer.0.as_mut_ptr().cast(),
            buffer.0.len() as ULONG,
            &mut got,
        )
    };
    if !nt_success(status) {
        return None;
    }
    // SAFETY: the buffer is aligned for the structure and holds it.
    let info = unsafe { &*buffer.0.as_ptr().cast::<KEY_VALUE_PARTIAL_INFORMATION>() };
    if info.Type != REG_DWORD || info.DataLength != 4 {
        return None;
    }
    let at = core::mem::offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data);
    Some(u32::from_le_bytes([
        buffer.0[at],
        buffer.0[at + 1],
        buffer.0[at + 2],
        buffer.0[at + 3],
    ]))
}

/// Start (0 when unreadable) and the Greeting read back (0 when any step failed).
///
/// # Safety
/// PASSIVE_LEVEL; `registry_path` is DriverEntry's argument.
pub unsafe fn read_and_write(registry_path: PCUNICODE_STRING) -> Values {
    let mut values = Values {
        start: 0,
        greeting: 0,
        fail_at: 0,
    };
    if registry_path.is_null() {
        return values;
    }
    let mut path = unsafe { *registry_path };
    let mut service: HANDLE = ptr::null_mut();
    let mut attrs = attributes(ptr::null_mut(), &mut path);
    // SAFETY: valid attributes and out handle.
    if !nt_success(unsafe { ZwOpenKey(&mut service, KEY_READ | KEY_ALL_ACCESS, &mut attrs) }) {
        return values;
    }
    // SAFETY: `service` is open; every handle opened here is closed here.
    unsafe {
        values.start = read_dword(service, &START).unwrap_or(0);
        let mut name: UNICODE_STRING = Default::default();
        RtlInitUnicodeString(&mut name, PARAMETERS.as_ptr());
        let mut attrs = attributes(service, &mut name);
        let mut parameters: HANDLE = ptr::null_mut();
        let mut disposition: ULONG = 0;
        // Volatile: the value is gone with the next boot, nothing is left behind.
        let status = ZwCreateKey(
            &mut parameters,
            KEY_ALL_ACCESS,
            &mut attrs,
            0,
            ptr::null_mut(),
            REG_OPTION_VOLATILE,
            &mut disposition,
        );
        if nt_success(status) {
            let mut value_name: UNICODE_STRING = Default::default();
            RtlInitUnicodeString(&mut value_name, GREETING.as_ptr());
            let mut data = GREETING_VALUE;
            let written = ZwSetValueKey(
                parameters,
                &mut value_name,
                0,
                REG_DWORD,
                (&mut data as *mut u32).cast(),
                4,
            );
            if nt_success(written) {
                values.greeting = read_dword(parameters, &GREETING).unwrap_or(0);
            }
            if cfg!(feature = "fault-injection") {
                values.fail_at = read_dword(parameters, &FAIL_AT_STEP).unwrap_or(0);
            }
            let _ = ZwClose(parameters);
        }
        let _ = ZwClose(service);
    }
    values
}
