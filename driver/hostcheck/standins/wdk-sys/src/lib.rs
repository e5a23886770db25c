//! Stand-in for the wdk-sys 0.5.1 items the driver uses (shape only).
//!
//! Mirrors how wdk-sys exposes them: C typedefs as type aliases, `#define`
//! integer constants as `u32`, NTSTATUS constants as `NTSTATUS` (its hand-written
//! constants.rs), enums as modules of constants (ModuleConsts), anonymous unions
//! as `__bindgen_anon_1`, functions in `ntddk` with `#[must_use]` on NTSTATUS
//! results. Struct layouts are cut down to the fields the driver touches, except
//! where an offset matters (KEY_VALUE_PARTIAL_INFORMATION).
#![no_std]
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    clippy::upper_case_acronyms
)]

use core::ffi::{c_char, c_int, c_void};

pub type NTSTATUS = i32;
pub type ULONG = u32;
pub type USHORT = u16;
pub type UCHAR = u8;
pub type CHAR = c_char;
pub type CCHAR = c_char;
pub type BOOLEAN = u8;
pub type WCHAR = u16;
pub type PWCH = *mut WCHAR;
pub type PCWSTR = *const WCHAR;
pub type PCSTR = *const CHAR;
pub type PVOID = *mut c_void;
pub type HANDLE = *mut c_void;
pub type PHANDLE = *mut HANDLE;
pub type PULONG = *mut ULONG;
pub type ULONG_PTR = u64;
pub type ACCESS_MASK = ULONG;
pub type DEVICE_TYPE = ULONG;

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _UNICODE_STRING {
    pub Length: USHORT,
    pub MaximumLength: USHORT,
    pub Buffer: PWCH,
}
impl Default for _UNICODE_STRING {
    fn default() -> Self {
        // SAFETY: plain C struct; bindgen's derive_default does the same.
        unsafe { core::mem::zeroed() }
    }
}
pub type UNICODE_STRING = _UNICODE_STRING;
pub type PUNICODE_STRING = *mut UNICODE_STRING;
pub type PCUNICODE_STRING = *const UNICODE_STRING;

pub type PDRIVER_DISPATCH =
    Option<unsafe extern "C" fn(DeviceObject: *mut _DEVICE_OBJECT, Irp: *mut _IRP) -> NTSTATUS>;
pub type PDRIVER_UNLOAD = Option<unsafe extern "C" fn(DriverObject: *mut _DRIVER_OBJECT)>;

#[repr(C)]
pub struct _DRIVER_OBJECT {
    pub Type: i16,
    pub Size: i16,
    pub DeviceObject: *mut _DEVICE_OBJECT,
    pub Flags: ULONG,
    pub DriverUnload: PDRIVER_UNLOAD,
    pub MajorFunction: [PDRIVER_DISPATCH; 28usize],
}
pub type DRIVER_OBJECT = _DRIVER_OBJECT;
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

#[repr(C, align(16))]
pub struct _DEVICE_OBJECT {
    pub Type: i16,
    pub Size: USHORT,
    pub Flags: ULONG,
    pub DeviceType: DEVICE_TYPE,
}
pub type DEVICE_OBJECT = _DEVICE_OBJECT;
pub type PDEVICE_OBJECT = *mut DEVICE_OBJECT;

#[repr(C)]
#[derive(Copy, Clone)]
pub union _IO_STATUS_BLOCK__bindgen_ty_1 {
    pub Status: NTSTATUS,
    pub Pointer: PVOID,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _IO_STATUS_BLOCK {
    pub __bindgen_anon_1: _IO_STATUS_BLOCK__bindgen_ty_1,
    pub Information: ULONG_PTR,
}
pub type IO_STATUS_BLOCK = _IO_STATUS_BLOCK;

#[repr(C)]
pub struct _IRP {
    pub Type: i16,
    pub Size: USHORT,
    pub IoStatus: IO_STATUS_BLOCK,
}
pub type IRP = _IRP;
pub type PIRP = *mut IRP;

#[repr(C)]
pub struct _OBJECT_ATTRIBUTES {
    pub Length: ULONG,
    pub RootDirectory: HANDLE,
    pub ObjectName: PUNICODE_STRING,
    pub Attributes: ULONG,
    pub SecurityDescriptor: PVOID,
    pub SecurityQualityOfService: PVOID,
}
pub type OBJECT_ATTRIBUTES = _OBJECT_ATTRIBUTES;
pub type POBJECT_ATTRIBUTES = *mut OBJECT_ATTRIBUTES;

#[repr(C)]
pub struct _KEY_VALUE_PARTIAL_INFORMATION {
    pub TitleIndex: ULONG,
    pub Type: ULONG,
    pub DataLength: ULONG,
    pub Data: [UCHAR; 1usize],
}
pub type KEY_VALUE_PARTIAL_INFORMATION = _KEY_VALUE_PARTIAL_INFORMATION;

pub mod _KEY_VALUE_INFORMATION_CLASS {
    pub type Type = super::c_int;
    pub const KeyValueBasicInformation: Type = 0;
    pub const KeyValueFullInformation: Type = 1;
    pub const KeyValuePartialInformation: Type = 2;
}
pub use self::_KEY_VALUE_INFORMATION_CLASS::Type as KEY_VALUE_INFORMATION_CLASS;

pub const IRP_MJ_CREATE: u32 = 0;
pub const IRP_MJ_CLOSE: u32 = 2;
pub const IRP_MJ_DEVICE_CONTROL: u32 = 14;
pub const IRP_MJ_CLEANUP: u32 = 18;
pub const IRP_MJ_MAXIMUM_FUNCTION: u32 = 27;
pub const DO_BUFFERED_IO: u32 = 4;
pub const FILE_DEVICE_UNKNOWN: u32 = 34;
pub const IO_NO_INCREMENT: u32 = 0;
pub const KEY_READ: u32 = 131_097;
pub const OBJ_CASE_INSENSITIVE: u32 = 64;
pub const OBJ_KERNEL_HANDLE: u32 = 512;

pub const STATUS_SUCCESS: NTSTATUS = 0_i32;
pub const STATUS_UNSUCCESSFUL: NTSTATUS = -1_073_741_823_i32;
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = -1_073_741_808_i32;

pub mod ntddk {
    use super::*;

    unsafe extern "C" {
        pub fn DbgPrint(Format: PCSTR, ...) -> ULONG;
        pub fn RtlInitUnicodeString(DestinationString: PUNICODE_STRING, SourceString: PCWSTR);
        #[must_use]
        pub fn IoCreateDevice(
            DriverObject: PDRIVER_OBJECT,
            DeviceExtensionSize: ULONG,
            DeviceName: PUNICODE_STRING,
            DeviceType: DEVICE_TYPE,
            DeviceCharacteristics: ULONG,
            Exclusive: BOOLEAN,
            DeviceObject: *mut PDEVICE_OBJECT,
        ) -> NTSTATUS;
        pub fn IoDeleteDevice(DeviceObject: PDEVICE_OBJECT);
        #[must_use]
        pub fn IoCreateSymbolicLink(
            SymbolicLinkName: PUNICODE_STRING,
            DeviceName: PUNICODE_STRING,
        ) -> NTSTATUS;
        #[must_use]
        pub fn IoDeleteSymbolicLink(SymbolicLinkName: PUNICODE_STRING) -> NTSTATUS;
        pub fn IofCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR);
        #[must_use]
        pub fn ZwOpenKey(
            KeyHandle: PHANDLE,
            DesiredAccess: ACCESS_MASK,
            ObjectAttributes: POBJECT_ATTRIBUTES,
        ) -> NTSTATUS;
        #[must_use]
        pub fn ZwQueryValueKey(
            KeyHandle: HANDLE,
            ValueName: PUNICODE_STRING,
            KeyValueInformationClass: KEY_VALUE_INFORMATION_CLASS,
            KeyValueInformation: PVOID,
            Length: ULONG,
            ResultLength: PULONG,
        ) -> NTSTATUS;
        #[must_use]
        pub fn ZwClose(Handle: HANDLE) -> NTSTATUS;
    }
}
