//! Services and the registry through the API sc.exe and reg.exe use, so the
//! numbers are the ones they print: the Win32 error of the failing call, the
//! SERVICE_STATUS fields (state 1 STOPPED, 4 RUNNING, ...).

use core::ffi::c_void;
use core::ptr;

use crate::{GetLastError, Handle, Out};

type Bool = i32;

const SC_MANAGER_CONNECT: u32 = 0x0001;
const SERVICE_QUERY_STATUS: u32 = 0x0004;
const SERVICE_START: u32 = 0x0010;
const SERVICE_STOP: u32 = 0x0020;
const SERVICE_CONTROL_STOP: u32 = 1;
const SC_STATUS_PROCESS_INFO: u32 = 0;
const SERVICE_STOPPED: u32 = 1;

const HKEY_LOCAL_MACHINE: usize = 0x8000_0002;
const KEY_SET_VALUE: u32 = 0x0002;
const KEY_WOW64_64KEY: u32 = 0x0100;
const REG_DWORD: u32 = 4;
const RRF_RT_REG_SZ: u32 = 0x0000_0002;
const RRF_RT_REG_EXPAND_SZ: u32 = 0x0000_0004;
const RRF_NOEXPAND: u32 = 0x1000_0000;

/// SERVICE_STATUS_PROCESS (winsvc.h), 36 bytes.
#[repr(C)]
#[derive(Default)]
struct StatusProcess {
    service_type: u32,
    current_state: u32,
    controls_accepted: u32,
    win32_exit_code: u32,
    service_exit_code: u32,
    check_point: u32,
    wait_hint: u32,
    process_id: u32,
    service_flags: u32,
}
const _: () = assert!(core::mem::size_of::<StatusProcess>() == 36);

#[link(name = "advapi32.dll", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    fn OpenSCManagerW(machine: *const u16, database: *const u16, access: u32) -> Handle;
    fn OpenServiceW(scm: Handle, name: *const u16, access: u32) -> Handle;
    fn CloseServiceHandle(h: Handle) -> Bool;
    fn ControlService(h: Handle, control: u32, status: *mut StatusProcess) -> Bool;
    fn StartServiceW(h: Handle, argc: u32, argv: *const *const u16) -> Bool;
    fn QueryServiceStatusEx(
        h: Handle,
        level: u32,
        buf: *mut StatusProcess,
        size: u32,
        needed: *mut u32,
    ) -> Bool;
    fn RegCreateKeyExW(
        key: usize,
        subkey: *const u16,
        reserved: u32,
        class: *const u16,
        options: u32,
        access: u32,
        security: *mut c_void,
        result: *mut usize,
        disposition: *mut u32,
    ) -> u32;
    fn RegSetValueExW(
        key: usize,
        name: *const u16,
        reserved: u32,
        kind: u32,
        data: *const u8,
        len: u32,
    ) -> u32;
    fn RegCloseKey(key: usize) -> u32;
    fn RegGetValueW(
        key: usize,
        subkey: *const u16,
        value: *const u16,
        flags: u32,
        kind: *mut u32,
        data: *mut u16,
        len: *mut u32,
    ) -> u32;
}

#[link(name = "kernel32.dll", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    fn Sleep(ms: u32);
    fn GetTickCount64() -> u64;
}

/// What the service command wants from the SCM.
#[derive(Clone, Copy, PartialEq)]
pub enum Op {
    Query,
    /// Stop, then wait up to the given milliseconds for STOPPED. (Wine reports
    /// no process id for a driver: the caller waits for its winedevice.exe.)
    Stop(u32),
    Start,
    /// Poll until STOPPED (or gone) for up to the given milliseconds.
    WaitStopped(u32),
}

/// One service operation: `{"op":..,"error":N,"exists":..,"type":..,"state":..,...}`.
/// `error` is the failing call's Win32 error (0: it worked); the status is
/// read after the operation (absent when the service cannot be opened).
pub fn service(op: Op, name: *const u16, out: &mut Out) {
    let label = match op {
        Op::Query => "query",
        Op::Stop(_) => "stop",
        Op::Start => "start",
        Op::WaitStopped(_) => "wait_stopped",
    };
    out.raw("{\"op\":\"").raw(label).raw("\"");
    // SAFETY: null machine/database mean the local SCM; no pointers kept.
    let scm = unsafe { OpenSCManagerW(ptr::null(), ptr::null(), SC_MANAGER_CONNECT) };
    if scm.is_null() {
        // SAFETY: no preconditions; read right after the failing call.
        let err = unsafe { GetLastError() };
        out.raw(",\"error\":")
            .u32(err)
            .raw(",\"step\":\"OpenSCManagerW\",\"exists\":false}");
        return;
    }
    // SAFETY: `scm` is open; `name` is NUL-terminated (Args).
    let svc = unsafe {
        OpenServiceW(
            scm,
            name,
            SERVICE_QUERY_STATUS | SERVICE_START | SERVICE_STOP,
        )
    };
    if svc.is_null() {
        // SAFETY: as above.
        let err = unsafe { GetLastError() };
        // SAFETY: our handle, closed once.
        unsafe { CloseServiceHandle(scm) };
        // 1060 ERROR_SERVICE_DOES_NOT_EXIST: what `sc query` prints for a missing service.
        out.raw(",\"error\":")
            .u32(err)
            .raw(",\"step\":\"OpenServiceW\",\"exists\":false}");
        return;
    }
    let mut status = StatusProcess::default();
    let mut error = 0u32;
    match op {
        Op::Query => {}
        Op::Stop(ms) => {
            // SAFETY: no preconditions.
            let deadline = unsafe { GetTickCount64() } + u64::from(ms);
            // SAFETY: `svc` is open; `status` outlives the call (SERVICE_STATUS is its prefix).
            if unsafe { ControlService(svc, SERVICE_CONTROL_STOP, &mut status) } == 0 {
                // SAFETY: no preconditions.
                error = unsafe { GetLastError() };
            } else {
                wait_stopped(svc, &mut status, deadline);
            }
        }
        Op::Start => {
            // SAFETY: `svc` is open; no arguments.
            if unsafe { StartServiceW(svc, 0, ptr::null()) } == 0 {
                // SAFETY: no preconditions.
                error = unsafe { GetLastError() };
            }
        }
        Op::WaitStopped(ms) => {
            // SAFETY: no preconditions.
            let deadline = unsafe { GetTickCount64() } + u64::from(ms);
            wait_stopped(svc, &mut status, deadline);
        }
    }
    let query_error = query(svc, &mut status);
    // SAFETY: our handles, closed once.
    unsafe {
        CloseServiceHandle(svc);
        CloseServiceHandle(scm);
    }
    out.raw(",\"error\":").u32(error);
    if query_error != 0 {
        // Deleted under us (a stop of a service marked for deletion): gone now.
        out.raw(",\"query_error\":")
            .u32(query_error)
            .raw(",\"exists\":false}");
        return;
    }
    out.raw(",\"exists\":true,\"type\":")
        .u32(status.service_type)
        .raw(",\"state\":")
        .u32(status.current_state)
        .raw(",\"win32_exit_code\":")
        .u32(status.win32_exit_code)
        .raw(",\"service_exit_code\":")
        .u32(status.service_exit_code)
        .raw(",\"pid\":")
        .u32(status.process_id)
        .raw("}");
}

fn wait_stopped(svc: Handle, status: &mut StatusProcess, deadline: u64) {
    loop {
        if query(svc, status) != 0 || status.current_state == SERVICE_STOPPED {
            return;
        }
        // SAFETY: no preconditions.
        if unsafe { GetTickCount64() } >= deadline {
            return;
        }
        // SAFETY: no preconditions.
        unsafe { Sleep(10) };
    }
}

/// QueryServiceStatusEx into `status`; 0 or the Win32 error.
fn query(svc: Handle, status: &mut StatusProcess) -> u32 {
    let mut needed = 0u32;
    let size = core::mem::size_of::<StatusProcess>() as u32;
    // SAFETY: `status` is a live SERVICE_STATUS_PROCESS of `size` bytes.
    if unsafe { QueryServiceStatusEx(svc, SC_STATUS_PROCESS_INFO, status, size, &mut needed) } == 0
    {
        // SAFETY: no preconditions.
        return unsafe { GetLastError() };
    }
    0
}

/// HKLM\<key>\<value> = DWORD (the key created when missing): `{"error":N}`.
pub fn set_dword(key: *const u16, value: *const u16, data: u32, out: &mut Out) {
    let mut hkey = 0usize;
    // SAFETY: `key` is NUL-terminated; `hkey` receives the handle.
    let mut err = unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            key,
            0,
            ptr::null(),
            0,
            KEY_SET_VALUE | KEY_WOW64_64KEY,
            ptr::null_mut(),
            &mut hkey,
            ptr::null_mut(),
        )
    };
    if err == 0 {
        let bytes = data.to_le_bytes();
        // SAFETY: `hkey` is open; `bytes` holds the 4 bytes of the DWORD.
        err = unsafe { RegSetValueExW(hkey, value, 0, REG_DWORD, bytes.as_ptr(), 4) };
        // SAFETY: our key, closed once.
        unsafe { RegCloseKey(hkey) };
    }
    out.raw("{\"op\":\"set_dword\",\"error\":")
        .u32(err)
        .raw("}");
}

/// A REG_SZ/REG_EXPAND_SZ value of HKLM\<key>, unexpanded: `{"error":N,"value":"..."}`.
pub fn get_string(key: *const u16, value: *const u16, buf: &mut [u16], out: &mut Out) {
    let mut len = (buf.len() * 2) as u32;
    // SAFETY: `buf` holds `len` bytes; key and value are NUL-terminated.
    let err = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            key,
            value,
            RRF_RT_REG_SZ | RRF_RT_REG_EXPAND_SZ | RRF_NOEXPAND,
            ptr::null_mut(),
            buf.as_mut_ptr(),
            &mut len,
        )
    };
    out.raw("{\"op\":\"get_string\",\"error\":").u32(err);
    if err == 0 {
        let units = (len as usize / 2).min(buf.len());
        let text = buf.get(..units).unwrap_or(&[]);
        let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
        out.raw(",\"value\":").str16(text.get(..end).unwrap_or(&[]));
    }
    out.raw("}");
}
