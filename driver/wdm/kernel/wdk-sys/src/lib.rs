//! The kernel bindings of the WDM image: the wdk-sys items the driver uses,
//! with the real x64 layouts, imported from `ntoskrnl.exe` without an import
//! library (`raw-dylib`).
//!
//! Names and shapes mirror wdk-sys 0.5.1's bindgen output (C typedefs as type
//! aliases, `#define` integers as `u32`, NTSTATUS constants as `NTSTATUS`,
//! enums as modules of constants, anonymous unions as `__bindgen_anon_N`,
//! functions in `ntddk`), so the driver's sources compile unchanged against
//! either crate. Only what the driver uses is here: an item the driver starts
//! to use without adding it here is a compile error naming this crate, never a
//! silent stub.
//!
//! Every struct is complete up to its real size; fields the driver does not
//! read are opaque byte blocks of the right size. [`layout::FIELDS`] lists every
//! field's offset and every struct's size; a test checks each against
//! mingw-w64's `ddk/wdm.h` (an independent source).
//!
//! Why not windows-sys: it binds DbgPrint and RtlInitUnicodeString to
//! ntdll.dll (a kernel image cannot import ntdll), and its rlib carries an
//! import library the linker prefers over ours.
#![no_std]
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    clippy::upper_case_acronyms
)]

use core::ffi::{c_char, c_int, c_void};

// Fixed-width types only (Windows is LLP64: LONG is 32 bits), so the layout is
// the same whichever x86_64 target computes it.
pub type NTSTATUS = i32;
pub type LONG = i32;
pub type ULONG = u32;
pub type USHORT = u16;
pub type CSHORT = i16;
pub type UCHAR = u8;
pub type CHAR = c_char;
pub type CCHAR = c_char;
pub type KIRQL = UCHAR;
pub type KPROCESSOR_MODE = CCHAR;
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
pub type SIZE_T = u64;
pub type ACCESS_MASK = ULONG;
pub type DEVICE_TYPE = ULONG;
pub type POOL_TYPE = c_int;

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

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _LIST_ENTRY {
    pub Flink: *mut _LIST_ENTRY,
    pub Blink: *mut _LIST_ENTRY,
}
pub type LIST_ENTRY = _LIST_ENTRY;

// Routine types say `extern "C"` as bindgen's do: the driver's routines are
// declared `extern "C"` (the same ABI as "system" on x64).
pub type PDRIVER_DISPATCH =
    Option<unsafe extern "C" fn(DeviceObject: *mut _DEVICE_OBJECT, Irp: *mut _IRP) -> NTSTATUS>;
pub type PDRIVER_UNLOAD = Option<unsafe extern "C" fn(DriverObject: *mut _DRIVER_OBJECT)>;
pub type PDRIVER_INITIALIZE = Option<
    unsafe extern "C" fn(
        DriverObject: *mut _DRIVER_OBJECT,
        RegistryPath: PUNICODE_STRING,
    ) -> NTSTATUS,
>;
pub type PDRIVER_STARTIO =
    Option<unsafe extern "C" fn(DeviceObject: *mut _DEVICE_OBJECT, Irp: *mut _IRP)>;

/// wdm.h's DRIVER_OBJECT (sizeof 0x150).
#[repr(C)]
pub struct _DRIVER_OBJECT {
    pub Type: CSHORT,
    pub Size: CSHORT,
    pub DeviceObject: *mut _DEVICE_OBJECT,
    pub Flags: ULONG,
    pub DriverStart: PVOID,
    pub DriverSize: ULONG,
    pub DriverSection: PVOID,
    pub DriverExtension: PVOID,
    pub DriverName: UNICODE_STRING,
    pub HardwareDatabase: PUNICODE_STRING,
    pub FastIoDispatch: PVOID,
    pub DriverInit: PDRIVER_INITIALIZE,
    pub DriverStartIo: PDRIVER_STARTIO,
    pub DriverUnload: PDRIVER_UNLOAD,
    /// IRP_MJ_MAXIMUM_FUNCTION + 1 slots: the driver writes all of them.
    pub MajorFunction: [PDRIVER_DISPATCH; 28usize],
}
pub type DRIVER_OBJECT = _DRIVER_OBJECT;
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

/// wdm.h's DEVICE_OBJECT. The WDK declares it
/// `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` (16 on x64), which makes it
/// 0x150 bytes; mingw-w64 omits the alignment (0x148). Field offsets agree.
#[repr(C, align(16))]
pub struct _DEVICE_OBJECT {
    pub Type: CSHORT,
    pub Size: USHORT,
    pub ReferenceCount: LONG,
    pub DriverObject: *mut _DRIVER_OBJECT,
    pub NextDevice: *mut _DEVICE_OBJECT,
    pub AttachedDevice: *mut _DEVICE_OBJECT,
    pub CurrentIrp: *mut _IRP,
    pub Timer: PVOID,
    pub Flags: ULONG,
    pub Characteristics: ULONG,
    pub Vpb: PVOID,
    pub DeviceExtension: PVOID,
    pub DeviceType: DEVICE_TYPE,
    pub StackSize: CCHAR,
    /// union { LIST_ENTRY ListEntry; WAIT_CONTEXT_BLOCK Wcb; } (opaque).
    pub Queue: [u64; 9usize],
    pub AlignmentRequirement: ULONG,
    /// KDEVICE_QUEUE (opaque).
    pub DeviceQueue: [u64; 5usize],
    /// KDPC (opaque).
    pub Dpc: [u64; 8usize],
    pub ActiveThreadCount: ULONG,
    pub SecurityDescriptor: PVOID,
    /// KEVENT (opaque).
    pub DeviceLock: [u64; 3usize],
    pub SectorSize: USHORT,
    pub Spare1: USHORT,
    pub DeviceObjectExtension: PVOID,
    pub Reserved: PVOID,
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
pub type PIO_STATUS_BLOCK = *mut IO_STATUS_BLOCK;

/// IRP.AssociatedIrp.
#[repr(C)]
#[derive(Copy, Clone)]
pub union _IRP__bindgen_ty_1 {
    pub MasterIrp: *mut _IRP,
    pub IrpCount: LONG,
    pub SystemBuffer: PVOID,
}

/// wdm.h's IRP (sizeof 0xD0).
#[repr(C)]
pub struct _IRP {
    pub Type: CSHORT,
    pub Size: USHORT,
    pub MdlAddress: PVOID,
    pub Flags: ULONG,
    pub AssociatedIrp: _IRP__bindgen_ty_1,
    pub ThreadListEntry: LIST_ENTRY,
    pub IoStatus: IO_STATUS_BLOCK,
    pub RequestorMode: KPROCESSOR_MODE,
    pub PendingReturned: BOOLEAN,
    pub StackCount: CHAR,
    pub CurrentLocation: CHAR,
    pub Cancel: BOOLEAN,
    pub CancelIrql: KIRQL,
    pub ApcEnvironment: CCHAR,
    pub AllocationFlags: UCHAR,
    pub UserIosb: PIO_STATUS_BLOCK,
    pub UserEvent: PVOID,
    /// union AsynchronousParameters / AllocationSize (opaque).
    pub Overlay: [u64; 2usize],
    pub CancelRoutine: PVOID,
    pub UserBuffer: PVOID,
    /// union Overlay / Apc / CompletionKey; Tail.Overlay.CurrentStackLocation
    /// is at +0x40 (opaque until a part of the driver reads it).
    pub Tail: [u64; 11usize],
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
/// POOL_TYPE NonPagedPoolNx.
pub const NonPagedPoolNx: POOL_TYPE = 512;

pub const STATUS_SUCCESS: NTSTATUS = 0_i32;
pub const STATUS_UNSUCCESSFUL: NTSTATUS = -1_073_741_823_i32;
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = -1_073_741_808_i32;

pub mod ntddk {
    use super::*;

    // raw-dylib exists only for Windows targets; on the host (the layout
    // example) nothing here is called, so nothing needs linking.
    #[cfg_attr(
        windows,
        link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
    )]
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
        /// Exported by every Windows since NT and by Wine (ExAllocatePool2,
        /// which wdk-alloc calls, is Windows 10 2004+ and absent from Wine).
        pub fn ExAllocatePoolWithTag(
            PoolType: POOL_TYPE,
            NumberOfBytes: SIZE_T,
            Tag: ULONG,
        ) -> PVOID;
        pub fn ExFreePoolWithTag(P: PVOID, Tag: ULONG);
    }
}

/// The C runtime routines codegen may call (the allocator's default realloc
/// and alloc_zeroed, struct copies). There is no CRT in a driver; ntoskrnl
/// exports them. Declared here so the linker resolves them from ntoskrnl.exe;
/// a routine nothing calls does not reach the import table.
pub mod crt {
    use core::ffi::{c_int, c_void};

    // raw-dylib exists only for Windows targets; on the host (the layout
    // example) nothing here is called, so nothing needs linking.
    #[cfg_attr(
        windows,
        link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
    )]
    unsafe extern "C" {
        pub fn memcpy(dest: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
        pub fn memmove(dest: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
        pub fn memset(dest: *mut c_void, c: c_int, n: usize) -> *mut c_void;
        pub fn memcmp(a: *const c_void, b: *const c_void, n: usize) -> c_int;
        pub fn strlen(s: *const core::ffi::c_char) -> usize;
    }
}

/// Offsets and sizes of every struct above, for the layout test against
/// mingw-w64's ddk/wdm.h (tests/integration/test_kernel_layout.py).
pub mod layout {
    use super::*;
    use core::mem::{offset_of, size_of};

    /// (C type name, field, offset); field `sizeof` gives the struct's size.
    pub const FIELDS: &[(&str, &str, usize)] = &[
        (
            "UNICODE_STRING",
            "Length",
            offset_of!(_UNICODE_STRING, Length),
        ),
        (
            "UNICODE_STRING",
            "MaximumLength",
            offset_of!(_UNICODE_STRING, MaximumLength),
        ),
        (
            "UNICODE_STRING",
            "Buffer",
            offset_of!(_UNICODE_STRING, Buffer),
        ),
        ("UNICODE_STRING", "sizeof", size_of::<_UNICODE_STRING>()),
        ("LIST_ENTRY", "Flink", offset_of!(_LIST_ENTRY, Flink)),
        ("LIST_ENTRY", "Blink", offset_of!(_LIST_ENTRY, Blink)),
        ("LIST_ENTRY", "sizeof", size_of::<_LIST_ENTRY>()),
        ("DRIVER_OBJECT", "Type", offset_of!(_DRIVER_OBJECT, Type)),
        ("DRIVER_OBJECT", "Size", offset_of!(_DRIVER_OBJECT, Size)),
        (
            "DRIVER_OBJECT",
            "DeviceObject",
            offset_of!(_DRIVER_OBJECT, DeviceObject),
        ),
        ("DRIVER_OBJECT", "Flags", offset_of!(_DRIVER_OBJECT, Flags)),
        (
            "DRIVER_OBJECT",
            "DriverStart",
            offset_of!(_DRIVER_OBJECT, DriverStart),
        ),
        (
            "DRIVER_OBJECT",
            "DriverSize",
            offset_of!(_DRIVER_OBJECT, DriverSize),
        ),
        (
            "DRIVER_OBJECT",
            "DriverSection",
            offset_of!(_DRIVER_OBJECT, DriverSection),
        ),
        (
            "DRIVER_OBJECT",
            "DriverExtension",
            offset_of!(_DRIVER_OBJECT, DriverExtension),
        ),
        (
            "DRIVER_OBJECT",
            "DriverName",
            offset_of!(_DRIVER_OBJECT, DriverName),
        ),
        (
            "DRIVER_OBJECT",
            "HardwareDatabase",
            offset_of!(_DRIVER_OBJECT, HardwareDatabase),
        ),
        (
            "DRIVER_OBJECT",
            "FastIoDispatch",
            offset_of!(_DRIVER_OBJECT, FastIoDispatch),
        ),
        (
            "DRIVER_OBJECT",
            "DriverInit",
            offset_of!(_DRIVER_OBJECT, DriverInit),
        ),
        (
            "DRIVER_OBJECT",
            "DriverStartIo",
            offset_of!(_DRIVER_OBJECT, DriverStartIo),
        ),
        (
            "DRIVER_OBJECT",
            "DriverUnload",
            offset_of!(_DRIVER_OBJECT, DriverUnload),
        ),
        (
            "DRIVER_OBJECT",
            "MajorFunction",
            offset_of!(_DRIVER_OBJECT, MajorFunction),
        ),
        ("DRIVER_OBJECT", "sizeof", size_of::<_DRIVER_OBJECT>()),
        ("DEVICE_OBJECT", "Type", offset_of!(_DEVICE_OBJECT, Type)),
        ("DEVICE_OBJECT", "Size", offset_of!(_DEVICE_OBJECT, Size)),
        (
            "DEVICE_OBJECT",
            "ReferenceCount",
            offset_of!(_DEVICE_OBJECT, ReferenceCount),
        ),
        (
            "DEVICE_OBJECT",
            "DriverObject",
            offset_of!(_DEVICE_OBJECT, DriverObject),
        ),
        (
            "DEVICE_OBJECT",
            "NextDevice",
            offset_of!(_DEVICE_OBJECT, NextDevice),
        ),
        (
            "DEVICE_OBJECT",
            "AttachedDevice",
            offset_of!(_DEVICE_OBJECT, AttachedDevice),
        ),
        (
            "DEVICE_OBJECT",
            "CurrentIrp",
            offset_of!(_DEVICE_OBJECT, CurrentIrp),
        ),
        ("DEVICE_OBJECT", "Timer", offset_of!(_DEVICE_OBJECT, Timer)),
        ("DEVICE_OBJECT", "Flags", offset_of!(_DEVICE_OBJECT, Flags)),
        (
            "DEVICE_OBJECT",
            "Characteristics",
            offset_of!(_DEVICE_OBJECT, Characteristics),
        ),
        ("DEVICE_OBJECT", "Vpb", offset_of!(_DEVICE_OBJECT, Vpb)),
        (
            "DEVICE_OBJECT",
            "DeviceExtension",
            offset_of!(_DEVICE_OBJECT, DeviceExtension),
        ),
        (
            "DEVICE_OBJECT",
            "DeviceType",
            offset_of!(_DEVICE_OBJECT, DeviceType),
        ),
        (
            "DEVICE_OBJECT",
            "StackSize",
            offset_of!(_DEVICE_OBJECT, StackSize),
        ),
        ("DEVICE_OBJECT", "Queue", offset_of!(_DEVICE_OBJECT, Queue)),
        (
            "DEVICE_OBJECT",
            "AlignmentRequirement",
            offset_of!(_DEVICE_OBJECT, AlignmentRequirement),
        ),
        (
            "DEVICE_OBJECT",
            "DeviceQueue",
            offset_of!(_DEVICE_OBJECT, DeviceQueue),
        ),
        ("DEVICE_OBJECT", "Dpc", offset_of!(_DEVICE_OBJECT, Dpc)),
        (
            "DEVICE_OBJECT",
            "ActiveThreadCount",
            offset_of!(_DEVICE_OBJECT, ActiveThreadCount),
        ),
        (
            "DEVICE_OBJECT",
            "SecurityDescriptor",
            offset_of!(_DEVICE_OBJECT, SecurityDescriptor),
        ),
        (
            "DEVICE_OBJECT",
            "DeviceLock",
            offset_of!(_DEVICE_OBJECT, DeviceLock),
        ),
        (
            "DEVICE_OBJECT",
            "SectorSize",
            offset_of!(_DEVICE_OBJECT, SectorSize),
        ),
        (
            "DEVICE_OBJECT",
            "Spare1",
            offset_of!(_DEVICE_OBJECT, Spare1),
        ),
        (
            "DEVICE_OBJECT",
            "DeviceObjectExtension",
            offset_of!(_DEVICE_OBJECT, DeviceObjectExtension),
        ),
        (
            "DEVICE_OBJECT",
            "Reserved",
            offset_of!(_DEVICE_OBJECT, Reserved),
        ),
        ("DEVICE_OBJECT", "sizeof", size_of::<_DEVICE_OBJECT>()),
        (
            "IO_STATUS_BLOCK",
            "Status",
            offset_of!(_IO_STATUS_BLOCK, __bindgen_anon_1),
        ),
        (
            "IO_STATUS_BLOCK",
            "Information",
            offset_of!(_IO_STATUS_BLOCK, Information),
        ),
        ("IO_STATUS_BLOCK", "sizeof", size_of::<_IO_STATUS_BLOCK>()),
        ("IRP", "Type", offset_of!(_IRP, Type)),
        ("IRP", "Size", offset_of!(_IRP, Size)),
        ("IRP", "MdlAddress", offset_of!(_IRP, MdlAddress)),
        ("IRP", "Flags", offset_of!(_IRP, Flags)),
        ("IRP", "AssociatedIrp", offset_of!(_IRP, AssociatedIrp)),
        ("IRP", "ThreadListEntry", offset_of!(_IRP, ThreadListEntry)),
        ("IRP", "IoStatus", offset_of!(_IRP, IoStatus)),
        ("IRP", "RequestorMode", offset_of!(_IRP, RequestorMode)),
        ("IRP", "PendingReturned", offset_of!(_IRP, PendingReturned)),
        ("IRP", "StackCount", offset_of!(_IRP, StackCount)),
        ("IRP", "CurrentLocation", offset_of!(_IRP, CurrentLocation)),
        ("IRP", "Cancel", offset_of!(_IRP, Cancel)),
        ("IRP", "CancelIrql", offset_of!(_IRP, CancelIrql)),
        ("IRP", "ApcEnvironment", offset_of!(_IRP, ApcEnvironment)),
        ("IRP", "AllocationFlags", offset_of!(_IRP, AllocationFlags)),
        ("IRP", "UserIosb", offset_of!(_IRP, UserIosb)),
        ("IRP", "UserEvent", offset_of!(_IRP, UserEvent)),
        ("IRP", "Overlay", offset_of!(_IRP, Overlay)),
        ("IRP", "CancelRoutine", offset_of!(_IRP, CancelRoutine)),
        ("IRP", "UserBuffer", offset_of!(_IRP, UserBuffer)),
        ("IRP", "Tail", offset_of!(_IRP, Tail)),
        ("IRP", "sizeof", size_of::<_IRP>()),
        (
            "OBJECT_ATTRIBUTES",
            "Length",
            offset_of!(_OBJECT_ATTRIBUTES, Length),
        ),
        (
            "OBJECT_ATTRIBUTES",
            "RootDirectory",
            offset_of!(_OBJECT_ATTRIBUTES, RootDirectory),
        ),
        (
            "OBJECT_ATTRIBUTES",
            "ObjectName",
            offset_of!(_OBJECT_ATTRIBUTES, ObjectName),
        ),
        (
            "OBJECT_ATTRIBUTES",
            "Attributes",
            offset_of!(_OBJECT_ATTRIBUTES, Attributes),
        ),
        (
            "OBJECT_ATTRIBUTES",
            "SecurityDescriptor",
            offset_of!(_OBJECT_ATTRIBUTES, SecurityDescriptor),
        ),
        (
            "OBJECT_ATTRIBUTES",
            "SecurityQualityOfService",
            offset_of!(_OBJECT_ATTRIBUTES, SecurityQualityOfService),
        ),
        (
            "OBJECT_ATTRIBUTES",
            "sizeof",
            size_of::<_OBJECT_ATTRIBUTES>(),
        ),
        (
            "KEY_VALUE_PARTIAL_INFORMATION",
            "TitleIndex",
            offset_of!(_KEY_VALUE_PARTIAL_INFORMATION, TitleIndex),
        ),
        (
            "KEY_VALUE_PARTIAL_INFORMATION",
            "Type",
            offset_of!(_KEY_VALUE_PARTIAL_INFORMATION, Type),
        ),
        (
            "KEY_VALUE_PARTIAL_INFORMATION",
            "DataLength",
            offset_of!(_KEY_VALUE_PARTIAL_INFORMATION, DataLength),
        ),
        (
            "KEY_VALUE_PARTIAL_INFORMATION",
            "Data",
            offset_of!(_KEY_VALUE_PARTIAL_INFORMATION, Data),
        ),
        (
            "KEY_VALUE_PARTIAL_INFORMATION",
            "sizeof",
            size_of::<_KEY_VALUE_PARTIAL_INFORMATION>(),
        ),
    ];

    /// (C constant name, value), checked against wdm.h the same way.
    pub const CONSTANTS: &[(&str, i64)] = &[
        ("IRP_MJ_CREATE", IRP_MJ_CREATE as i64),
        ("IRP_MJ_CLOSE", IRP_MJ_CLOSE as i64),
        ("IRP_MJ_DEVICE_CONTROL", IRP_MJ_DEVICE_CONTROL as i64),
        ("IRP_MJ_CLEANUP", IRP_MJ_CLEANUP as i64),
        ("IRP_MJ_MAXIMUM_FUNCTION", IRP_MJ_MAXIMUM_FUNCTION as i64),
        ("DO_BUFFERED_IO", DO_BUFFERED_IO as i64),
        ("FILE_DEVICE_UNKNOWN", FILE_DEVICE_UNKNOWN as i64),
        ("IO_NO_INCREMENT", IO_NO_INCREMENT as i64),
        ("KEY_READ", KEY_READ as i64),
        ("OBJ_CASE_INSENSITIVE", OBJ_CASE_INSENSITIVE as i64),
        ("OBJ_KERNEL_HANDLE", OBJ_KERNEL_HANDLE as i64),
        ("NonPagedPoolNx", NonPagedPoolNx as i64),
        (
            "KeyValuePartialInformation",
            _KEY_VALUE_INFORMATION_CLASS::KeyValuePartialInformation as i64,
        ),
        ("STATUS_SUCCESS", STATUS_SUCCESS as i64),
        ("STATUS_UNSUCCESSFUL", STATUS_UNSUCCESSFUL as i64),
        (
            "STATUS_INVALID_DEVICE_REQUEST",
            STATUS_INVALID_DEVICE_REQUEST as i64,
        ),
    ];
}
