//! wazabi-wine-client: the Wine target's agent (and the user-mode side of
//! the device checks).
//!
//! ```text
//! wazabi-wine-client                      requests on stdin, one per line
//! wazabi-wine-client <request fields>     one request, then exit
//! ```
//!
//! A request is a command and its fields (TAB-separated on stdin): service
//! `query`/`stop`/`start`/`wait_stopped` through the SCM API (scm.rs),
//! `set_dword`/`get_string` in HKLM, the device `checks` (checks.rs),
//! `verify` (WinVerifyTrust) and `trust` (the test certificate). Each answer
//! is one JSON line on stdout. The numbers are the ones sc.exe prints: the
//! Win32 error of the failing call and the SERVICE_STATUS fields. Exit code
//! 0; 2 on bad usage of the one-request form (usage text on stderr).
//!
//! `no_std` + `no_main` with raw-dylib imports: the binary needs no CRT, no
//! import library and no crate, and links on Linux with rust-lld. The process
//! is single-threaded, so the large buffers are statics (a big stack array
//! would make LLVM call `__chkstk`, which only the MSVC CRT provides).

#![no_std]
#![no_main]

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr;

mod checks;
mod scm;

// ----------------------------------------------------------------------------- imports

pub(crate) type Handle = *mut c_void;
type Bool = i32;

pub(crate) const INVALID_HANDLE_VALUE: Handle = -1isize as Handle;
const STD_INPUT_HANDLE: u32 = -10i32 as u32;
const STD_OUTPUT_HANDLE: u32 = -11i32 as u32;
const STD_ERROR_HANDLE: u32 = -12i32 as u32;
const GENERIC_READ: u32 = 0x8000_0000;
const FILE_SHARE_READ: u32 = 0x1;
const OPEN_EXISTING: u32 = 3;
const FILE_ATTRIBUTE_NORMAL: u32 = 0x80;

#[link(name = "kernel32.dll", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    fn GetCommandLineW() -> *const u16;
    fn GetStdHandle(which: u32) -> Handle;
    pub(crate) fn WriteFile(
        h: Handle,
        buf: *const u8,
        len: u32,
        written: *mut u32,
        ovl: *mut c_void,
    ) -> Bool;
    pub(crate) fn ReadFile(
        h: Handle,
        buf: *mut u8,
        len: u32,
        read: *mut u32,
        ovl: *mut c_void,
    ) -> Bool;
    pub(crate) fn CreateFileW(
        name: *const u16,
        access: u32,
        share: u32,
        security: *mut c_void,
        disposition: u32,
        flags: u32,
        template: Handle,
    ) -> Handle;
    fn GetFileSizeEx(h: Handle, size: *mut i64) -> Bool;
    pub(crate) fn DeviceIoControl(
        h: Handle,
        code: u32,
        input: *mut c_void,
        input_len: u32,
        output: *mut c_void,
        output_len: u32,
        returned: *mut u32,
        ovl: *mut c_void,
    ) -> Bool;
    pub(crate) fn CloseHandle(h: Handle) -> Bool;
    pub(crate) fn GetLastError() -> u32;
    fn ExitProcess(code: u32) -> !;
}

#[repr(C)]
struct Guid {
    data1: u32,
    data2: u16,
    data3: u16,
    data4: [u8; 8],
}

/// WINTRUST_FILE_INFO (wintrust.h), 32 bytes on x64.
#[repr(C)]
struct WintrustFileInfo {
    cb_struct: u32,
    file_path: *const u16,
    file: Handle,
    known_subject: *const Guid,
}

/// WINTRUST_DATA (wintrust.h) up to pSignatureSettings, 88 bytes on x64.
#[repr(C)]
struct WintrustData {
    cb_struct: u32,
    policy_callback_data: *mut c_void,
    sip_client_data: *mut c_void,
    ui_choice: u32,
    revocation_checks: u32,
    union_choice: u32,
    file: *mut WintrustFileInfo, // the union; WTD_CHOICE_FILE selects pFile
    state_action: u32,
    state_data: Handle,
    url_reference: *const u16,
    prov_flags: u32,
    ui_context: u32,
    signature_settings: *mut c_void,
}

// Pin the layouts against the SDK's: a wrong offset would not fail to compile.
const _: () = assert!(core::mem::size_of::<WintrustFileInfo>() == 32);
const _: () = assert!(core::mem::size_of::<WintrustData>() == 88);
const _: () = assert!(core::mem::offset_of!(WintrustData, file) == 40);
const _: () = assert!(core::mem::offset_of!(WintrustData, state_data) == 56);

/// WINTRUST_ACTION_GENERIC_VERIFY_V2 {00AAC56B-CD44-11d0-8CC2-00C04FC295EE}.
const GENERIC_VERIFY_V2: Guid = Guid {
    data1: 0x00AA_C56B,
    data2: 0xCD44,
    data3: 0x11D0,
    data4: [0x8C, 0xC2, 0x00, 0xC0, 0x4F, 0xC2, 0x95, 0xEE],
};
const WTD_UI_NONE: u32 = 2;
const WTD_REVOKE_NONE: u32 = 0;
const WTD_CHOICE_FILE: u32 = 1;
const WTD_STATEACTION_VERIFY: u32 = 1;
const WTD_STATEACTION_CLOSE: u32 = 2;

#[link(name = "wintrust.dll", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    fn WinVerifyTrust(hwnd: Handle, action: *const Guid, data: *mut c_void) -> i32;
}

const CERT_STORE_PROV_SYSTEM_W: usize = 10; // passed as an LPCSTR "pointer"
const CERT_SYSTEM_STORE_LOCAL_MACHINE: u32 = 2 << 16;
const X509_PKCS7_ENCODING: u32 = 0x0000_0001 | 0x0001_0000;
const CERT_STORE_ADD_REPLACE_EXISTING: u32 = 3;

#[link(name = "crypt32.dll", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    fn CertOpenStore(
        provider: *const u8,
        encoding: u32,
        crypt_prov: usize,
        flags: u32,
        para: *const c_void,
    ) -> Handle;
    fn CertAddEncodedCertificateToStore(
        store: Handle,
        encoding: u32,
        encoded: *const u8,
        len: u32,
        disposition: u32,
        out: *mut *const c_void,
    ) -> Bool;
    fn CertCloseStore(store: Handle, flags: u32) -> Bool;
}

// LLVM emits calls to these for struct copies and zeroing; with /NODEFAULTLIB
// nothing else provides them. ntdll.dll exports them on every Windows and Wine
// and is mapped into every process; unused ones never reach the import table.
#[link(name = "ntdll.dll", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    #[allow(dead_code)]
    fn memcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
    #[allow(dead_code)]
    fn memmove(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
    #[allow(dead_code)]
    fn memset(dst: *mut c_void, c: i32, n: usize) -> *mut c_void;
    #[allow(dead_code)]
    fn memcmp(a: *const c_void, b: *const c_void, n: usize) -> i32;
}

// ----------------------------------------------------------------------------- runtime glue

/// A static buffer the (single) thread borrows mutably once: `static mut`
/// references are denied in edition 2024, so it goes through UnsafeCell.
pub(crate) struct Static<T>(pub(crate) UnsafeCell<T>);
// SAFETY: the process has one thread; each Static is borrowed once, in main.
unsafe impl<T> Sync for Static<T> {}

/// MSVC-target object code references `_fltused` whenever floating point
/// appears (the CRT defines it). Release links without it; debug builds fail
/// with "undefined symbol: _fltused" (libcore, compiler_builtins) unless set.
#[used]
#[unsafe(no_mangle)]
static _fltused: i32 = 0;

/// Debug builds only: the prebuilt libcore carries unwind tables naming the
/// MSVC C++ personality routine. With panic=abort nothing ever unwinds through
/// Rust frames, so a handler that declines every exception is enough.
/// (An .exe exports nothing, so this stays private; release drops it.)
#[cfg(debug_assertions)]
#[unsafe(no_mangle)]
pub extern "C" fn __CxxFrameHandler3(
    _: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
) -> i32 {
    1 // ExceptionContinueSearch
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // No unwinder and nothing to clean up; 101 is Rust's usual panic code.
    // SAFETY: ExitProcess has no preconditions.
    unsafe { ExitProcess(101) }
}

// ----------------------------------------------------------------------------- command line

/// A command, a device and up to 64 check steps.
const MAX_ARGS: usize = 72;
/// A request line (LINE_CAP bytes give at most LINE_CAP UTF-16 units), plus NULs.
const CMDLINE_CAP: usize = LINE_CAP + MAX_ARGS;

/// The arguments after argv[0], each NUL-terminated inside `buf` (so they can
/// be handed to Win32 as-is).
pub(crate) struct Args {
    buf: [u16; CMDLINE_CAP],
    start: [usize; MAX_ARGS],
    len: [usize; MAX_ARGS],
    pub(crate) count: usize,
}

static ARGS: Static<Args> = Static(UnsafeCell::new(Args {
    buf: [0; CMDLINE_CAP],
    start: [0; MAX_ARGS],
    len: [0; MAX_ARGS],
    count: 0,
}));

impl Args {
    /// The argument without its NUL.
    pub(crate) fn get(&self, i: usize) -> Option<&[u16]> {
        if i >= self.count {
            return None;
        }
        self.buf.get(self.start[i]..self.start[i] + self.len[i])
    }

    /// The argument as a NUL-terminated pointer.
    pub(crate) fn ptr(&self, i: usize) -> *const u16 {
        self.buf[self.start[i]..].as_ptr()
    }

    /// Splits a command line the way the MSVC CRT (and CommandLineToArgvW)
    /// does, so quoting behaves like any Windows program's. Returns false when
    /// there are more than MAX_ARGS arguments (bad usage for us).
    fn parse(&mut self, line: &[u16]) -> bool {
        const SPACE: u16 = b' ' as u16;
        const TAB: u16 = b'\t' as u16;
        const QUOTE: u16 = b'"' as u16;
        const BACKSLASH: u16 = b'\\' as u16;
        let at = |i: usize| line.get(i).copied().unwrap_or(0);
        let mut i = 0;
        // argv[0]: up to the closing quote, or to the first blank; no escapes.
        if at(0) == QUOTE {
            i = 1;
            while at(i) != 0 && at(i) != QUOTE {
                i += 1;
            }
            if at(i) == QUOTE {
                i += 1;
            }
        } else {
            while at(i) != 0 && at(i) != SPACE && at(i) != TAB {
                i += 1;
            }
        }
        let mut out = 0;
        loop {
            while at(i) == SPACE || at(i) == TAB {
                i += 1;
            }
            if at(i) == 0 {
                return true;
            }
            if self.count == MAX_ARGS {
                return false;
            }
            self.start[self.count] = out;
            let mut quoted = false;
            // The output never outgrows the input (each input unit yields at
            // most one output unit) plus one NUL per argument: CMDLINE_CAP.
            while at(i) != 0 && (quoted || (at(i) != SPACE && at(i) != TAB)) {
                let c = at(i);
                if c == BACKSLASH {
                    let mut n = 0;
                    while at(i) == BACKSLASH {
                        n += 1;
                        i += 1;
                    }
                    // 2n backslashes + quote: n backslashes, quote is syntax;
                    // 2n+1: n backslashes and a literal quote; else literal.
                    let (emit, literal_quote) = if at(i) == QUOTE {
                        (n / 2, n % 2 == 1)
                    } else {
                        (n, false)
                    };
                    for _ in 0..emit {
                        self.push(&mut out, BACKSLASH);
                    }
                    if literal_quote {
                        self.push(&mut out, QUOTE);
                        i += 1;
                    }
                } else if c == QUOTE {
                    if quoted && at(i + 1) == QUOTE {
                        self.push(&mut out, QUOTE); // "" inside quotes: a literal quote
                        i += 2;
                    } else {
                        quoted = !quoted;
                        i += 1;
                    }
                } else {
                    self.push(&mut out, c);
                    i += 1;
                }
            }
            self.len[self.count] = out - self.start[self.count];
            self.push(&mut out, 0);
            self.count += 1;
        }
    }

    /// Splits a UTF-8 request line at TABs into NUL-terminated UTF-16
    /// arguments. False: not UTF-8, or more than MAX_ARGS fields.
    fn split_tabs(&mut self, line: &[u8]) -> bool {
        let Ok(text) = core::str::from_utf8(line) else {
            return false;
        };
        let mut out = 0;
        for field in text.split('\t') {
            if self.count == MAX_ARGS {
                return false;
            }
            self.start[self.count] = out;
            for unit in field.encode_utf16() {
                self.push(&mut out, unit);
            }
            self.len[self.count] = out - self.start[self.count];
            self.push(&mut out, 0);
            self.count += 1;
        }
        !(self.count == 1 && self.len[0] == 0)
    }

    fn push(&mut self, out: &mut usize, c: u16) {
        if let Some(slot) = self.buf.get_mut(*out) {
            *slot = c;
            *out += 1;
        }
    }
}

fn eq(arg: Option<&[u16]>, ascii: &str) -> bool {
    match arg {
        Some(a) => {
            a.len() == ascii.len() && a.iter().zip(ascii.bytes()).all(|(&w, b)| w == b as u16)
        }
        None => false,
    }
}

pub(crate) fn parse_u32(arg: &[u16]) -> Option<u32> {
    if arg.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for &w in arg {
        let d = w.checked_sub(b'0' as u16).filter(|d| *d < 10)?;
        v = v.checked_mul(10)?.checked_add(d as u32)?;
    }
    Some(v)
}

// ----------------------------------------------------------------------------- JSON output

/// Worst case: 64 check steps each giving back 64 KiB as hex, or a 32K-unit
/// path where every unit becomes `\u00XX` (6 bytes).
const OUT_CAP: usize = 64 * 2 * checks::IO_CAP + 1024;

pub(crate) struct Out {
    buf: [u8; OUT_CAP],
    len: usize,
}

static OUT: Static<Out> = Static(UnsafeCell::new(Out {
    buf: [0; OUT_CAP],
    len: 0,
}));

impl Out {
    pub(crate) fn byte(&mut self, b: u8) -> &mut Self {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
        self
    }

    pub(crate) fn raw(&mut self, s: &str) -> &mut Self {
        for b in s.bytes() {
            self.byte(b);
        }
        self
    }

    pub(crate) fn u32(&mut self, mut v: u32) -> &mut Self {
        let mut digits = [0u8; 10];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while n > 0 {
            n -= 1;
            self.byte(digits[n]);
        }
        self
    }

    fn i32(&mut self, v: i32) -> &mut Self {
        if v < 0 {
            self.byte(b'-');
        }
        self.u32(v.unsigned_abs())
    }

    fn hex8(&mut self, v: u32) -> &mut Self {
        self.raw("\"0x");
        for shift in (0..8).rev() {
            self.byte(b"0123456789ABCDEF"[((v >> (shift * 4)) & 0xF) as usize]);
        }
        self.byte(b'"')
    }

    /// A UTF-16 string as a JSON string: UTF-8, `"` `\` and control
    /// characters escaped, a lone surrogate replaced by U+FFFD (JSON text must
    /// be valid Unicode; Windows paths need not be).
    pub(crate) fn str16(&mut self, s: &[u16]) -> &mut Self {
        self.byte(b'"');
        for c in char::decode_utf16(s.iter().copied()) {
            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
            match c {
                '"' => {
                    self.raw("\\\"");
                }
                '\\' => {
                    self.raw("\\\\");
                }
                c if (c as u32) < 0x20 => {
                    self.raw("\\u00");
                    self.byte(b"0123456789abcdef"[(c as usize) >> 4]);
                    self.byte(b"0123456789abcdef"[(c as usize) & 0xF]);
                }
                c => {
                    let mut utf8 = [0u8; 4];
                    self.raw(c.encode_utf8(&mut utf8));
                }
            }
        }
        self.byte(b'"')
    }

    /// Writes the buffer plus "\n" to stdout: one WriteFile, so one line.
    fn emit(&mut self) {
        self.byte(b'\n');
        write_all(STD_OUTPUT_HANDLE, self.buf.get(..self.len).unwrap_or(&[]));
    }
}

fn write_all(which: u32, mut bytes: &[u8]) {
    // SAFETY: GetStdHandle has no preconditions; a null/invalid handle just
    // makes WriteFile fail, which we cannot report anywhere anyway.
    let h = unsafe { GetStdHandle(which) };
    while !bytes.is_empty() {
        let mut written = 0u32;
        // SAFETY: `bytes` is a live slice of at most OUT_CAP (< 4 GiB) bytes.
        let ok = unsafe {
            WriteFile(
                h,
                bytes.as_ptr(),
                bytes.len() as u32,
                &mut written,
                ptr::null_mut(),
            )
        };
        if ok == 0 || written == 0 {
            return;
        }
        bytes = bytes.get(written as usize..).unwrap_or(&[]);
    }
}

// ----------------------------------------------------------------------------- entry

const USAGE: &str = "usage: wazabi-wine-client                    (requests on stdin, one per line)\r\n\
                     \x20      wazabi-wine-client <request fields>   (one request)\r\n\
                     requests (fields separated by TAB on stdin):\r\n\
                     \x20 query|start <service>   stop|wait_stopped <service> <ms>\r\n\
                     \x20 set_dword <HKLM key> <value> <decimal>   get_string <HKLM key> <value>\r\n\
                     \x20 checks <device> <op,code,output_length,input_hex,name>...\r\n\
                     \x20 verify <file>                   trust <cert.der>          exit\r\n";

/// Process entry (/ENTRY:wazabi_main): no CRT ran before us, nothing to tear down.
#[unsafe(no_mangle)]
pub extern "system" fn wazabi_main() -> ! {
    // SAFETY: the first and only borrows of ARGS, OUT and LINE, on the only thread.
    let (args, out, line) = unsafe { (&mut *ARGS.0.get(), &mut *OUT.0.get(), &mut *LINE.0.get()) };
    // SAFETY: GetCommandLineW returns a NUL-terminated string that lives as
    // long as the process; we read up to its NUL, capped at the Windows limit.
    let cmdline = unsafe {
        let p = GetCommandLineW();
        let mut n = 0;
        while !p.is_null() && n < 32_767 && *p.add(n) != 0 {
            n += 1;
        }
        if p.is_null() {
            &[][..]
        } else {
            core::slice::from_raw_parts(p, n)
        }
    };
    if !args.parse(cmdline) {
        usage_exit();
    }
    if args.count > 0 {
        // One request from the command line: its answer, then exit.
        if !run(args, out) {
            usage_exit();
        }
        // SAFETY: ExitProcess has no preconditions.
        unsafe { ExitProcess(0) }
    }
    // The agent: one answer line per request line until `exit` or the end of stdin.
    // A bad request is answered with {"error":"usage"} and the loop goes on.
    while let Some(request) = line.next() {
        args.count = 0;
        out.len = 0;
        if !args.split_tabs(request) {
            out.raw("{\"error\":\"usage\"}").emit();
            continue;
        }
        if eq(args.get(0), "exit") {
            break;
        }
        if !run(args, out) {
            out.len = 0;
            out.raw("{\"error\":\"usage\"}").emit();
        }
    }
    // SAFETY: ExitProcess has no preconditions.
    unsafe { ExitProcess(0) }
}

fn usage_exit() -> ! {
    write_all(STD_ERROR_HANDLE, USAGE.as_bytes());
    // SAFETY: ExitProcess has no preconditions.
    unsafe { ExitProcess(2) }
}

/// Runs one request and writes its answer line; false = bad usage (nothing written).
fn run(args: &Args, out: &mut Out) -> bool {
    let cmd = args.get(0);
    let n = args.count;
    let service_op = if eq(cmd, "query") && n == 2 {
        Some(scm::Op::Query)
    } else if eq(cmd, "stop") && n == 3 {
        match args.get(2).and_then(parse_u32) {
            Some(ms) => Some(scm::Op::Stop(ms)),
            None => return false,
        }
    } else if eq(cmd, "start") && n == 2 {
        Some(scm::Op::Start)
    } else if eq(cmd, "wait_stopped") && n == 3 {
        match args.get(2).and_then(parse_u32) {
            Some(ms) => Some(scm::Op::WaitStopped(ms)),
            None => return false,
        }
    } else {
        None
    };
    if let Some(op) = service_op {
        scm::service(op, args.ptr(1), out);
    } else if eq(cmd, "set_dword") && n == 4 {
        let Some(value) = args.get(3).and_then(parse_u32) else {
            return false;
        };
        scm::set_dword(args.ptr(1), args.ptr(2), value, out);
    } else if eq(cmd, "get_string") && n == 3 {
        // SAFETY: the only borrow of VALUE, on the only thread, released before the next request.
        let buf = unsafe { &mut *VALUE.0.get() };
        scm::get_string(args.ptr(1), args.ptr(2), buf, out);
    } else if eq(cmd, "checks") && n >= 2 {
        if !checks::run(args, out) {
            return false;
        }
    } else if eq(cmd, "verify") && n == 2 {
        verify(args.get(1).unwrap_or(&[]), args.ptr(1), out);
    } else if eq(cmd, "trust") && n == 2 {
        trust(args.ptr(1), out);
    } else {
        return false;
    }
    out.emit();
    true
}

/// A registry string (a path): at most 32K UTF-16 units.
static VALUE: Static<[u16; 32_768]> = Static(UnsafeCell::new([0; 32_768]));

// ----------------------------------------------------------------------------- stdin

/// One request line: device checks carry up to 64 KiB of input each, as hex.
const LINE_CAP: usize = 1 << 20;

struct Lines {
    buf: [u8; LINE_CAP],
    len: usize,      // bytes held
    consumed: usize, // bytes of the previous line (dropped on the next call)
    eof: bool,
}

static LINE: Static<Lines> = Static(UnsafeCell::new(Lines {
    buf: [0; LINE_CAP],
    len: 0,
    consumed: 0,
    eof: false,
}));

impl Lines {
    /// The next line without its "\r\n"/"\n"; None at the end of stdin. A line
    /// longer than LINE_CAP is cut there (its answer will be a usage error).
    fn next(&mut self) -> Option<&[u8]> {
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.len, 0);
            self.len -= self.consumed;
            self.consumed = 0;
        }
        loop {
            if let Some(nl) = self
                .buf
                .get(..self.len)
                .and_then(|b| b.iter().position(|&c| c == b'\n'))
            {
                self.consumed = nl + 1;
                let mut end = nl;
                if end > 0 && self.buf.get(end - 1) == Some(&b'\r') {
                    end -= 1;
                }
                return self.buf.get(..end);
            }
            if self.eof || self.len == LINE_CAP {
                if self.len == 0 {
                    return None;
                }
                self.consumed = self.len;
                return self.buf.get(..self.len);
            }
            let mut read = 0u32;
            let room = self.buf.get_mut(self.len..).unwrap_or(&mut []);
            // SAFETY: GetStdHandle has no preconditions; `room` is writable for its length.
            let ok = unsafe {
                ReadFile(
                    GetStdHandle(STD_INPUT_HANDLE),
                    room.as_mut_ptr(),
                    room.len() as u32,
                    &mut read,
                    ptr::null_mut(),
                )
            };
            if ok == 0 || read == 0 {
                self.eof = true;
            }
            self.len += read as usize;
        }
    }
}

// ----------------------------------------------------------------------------- commands

fn verify(name: &[u16], path: *const u16, out: &mut Out) {
    let mut file = WintrustFileInfo {
        cb_struct: core::mem::size_of::<WintrustFileInfo>() as u32,
        file_path: path,
        file: ptr::null_mut(),
        known_subject: ptr::null(),
    };
    let mut data = WintrustData {
        cb_struct: core::mem::size_of::<WintrustData>() as u32,
        policy_callback_data: ptr::null_mut(),
        sip_client_data: ptr::null_mut(),
        ui_choice: WTD_UI_NONE,
        // Offline test machines: a revocation lookup would only time out.
        revocation_checks: WTD_REVOKE_NONE,
        union_choice: WTD_CHOICE_FILE,
        file: &mut file,
        state_action: WTD_STATEACTION_VERIFY,
        state_data: ptr::null_mut(),
        url_reference: ptr::null(),
        prov_flags: 0,
        ui_context: 0,
        signature_settings: ptr::null_mut(),
    };
    // SAFETY: `data` and `file` outlive both calls; `path` is NUL-terminated.
    let hr = unsafe { WinVerifyTrust(ptr::null_mut(), &GENERIC_VERIFY_V2, (&raw mut data).cast()) };
    // VERIFY keeps provider state in hWVTStateData until CLOSE releases it.
    data.state_action = WTD_STATEACTION_CLOSE;
    // SAFETY: as above; the result of CLOSE carries no information.
    let _ = unsafe { WinVerifyTrust(ptr::null_mut(), &GENERIC_VERIFY_V2, (&raw mut data).cast()) };
    out.raw("{\"file\":")
        .str16(name)
        .raw(",\"hresult\":")
        .i32(hr)
        .raw(",\"hresult_hex\":")
        .hex8(hr as u32)
        .raw("}");
}

/// Certificates are a few KB; anything bigger is not a DER certificate.
const CERT_CAP: usize = 64 * 1024;
static CERT: Static<[u8; CERT_CAP]> = Static(UnsafeCell::new([0; CERT_CAP]));

fn trust(path: *const u16, out: &mut Out) {
    let fail = |out: &mut Out, step: &str, err: u32| {
        out.raw("{\"trusted\":false,\"error\":")
            .u32(err)
            .raw(",\"step\":\"")
            .raw(step)
            .raw("\"}");
    };
    // SAFETY: the only borrow of CERT, on the only thread.
    let cert = unsafe { &mut *CERT.0.get() };
    // SAFETY: `path` is NUL-terminated (Args).
    let h = unsafe {
        CreateFileW(
            path,
            GENERIC_READ,
            FILE_SHARE_READ,
            ptr::null_mut(),
            OPEN_EXISTING,
            FILE_ATTRIBUTE_NORMAL,
            ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        // SAFETY: no preconditions.
        return fail(out, "open_file", unsafe { GetLastError() });
    }
    let mut size = 0i64;
    // SAFETY: valid handle and out pointer.
    if unsafe { GetFileSizeEx(h, &mut size) } == 0 {
        // SAFETY: read the error before CloseHandle can change it.
        let err = unsafe { GetLastError() };
        // SAFETY: our handle, closed once.
        unsafe { CloseHandle(h) };
        return fail(out, "size_file", err);
    }
    if size <= 0 || size as usize > CERT_CAP {
        // SAFETY: our handle, closed once.
        unsafe { CloseHandle(h) };
        return fail(out, "size_file", 13); // ERROR_INVALID_DATA
    }
    let mut read = 0u32;
    // SAFETY: `cert` holds CERT_CAP >= size bytes.
    let ok = unsafe {
        ReadFile(
            h,
            cert.as_mut_ptr(),
            size as u32,
            &mut read,
            ptr::null_mut(),
        )
    };
    // SAFETY: read the error before CloseHandle can change it.
    let err = unsafe { GetLastError() };
    // SAFETY: our handle, closed once.
    unsafe { CloseHandle(h) };
    if ok == 0 || read as i64 != size {
        return fail(out, "read_file", if ok == 0 { err } else { 13 });
    }
    // Root makes the chain trusted; TrustedPublisher is what Windows wants for
    // a test-signed driver to install without a prompt. Both, like `provision`.
    for (store_name, open_step, add_step) in [
        (&ROOT[..], "open_store:Root", "add:Root"),
        (
            &TRUSTED_PUBLISHER[..],
            "open_store:TrustedPublisher",
            "add:TrustedPublisher",
        ),
    ] {
        // SAFETY: the provider is the documented small-integer LPCSTR; the
        // store name is NUL-terminated UTF-16.
        let store = unsafe {
            CertOpenStore(
                CERT_STORE_PROV_SYSTEM_W as *const u8,
                0,
                0,
                CERT_SYSTEM_STORE_LOCAL_MACHINE,
                store_name.as_ptr().cast(),
            )
        };
        if store.is_null() {
            // SAFETY: no preconditions.
            return fail(out, open_step, unsafe { GetLastError() });
        }
        // SAFETY: `cert[..read]` holds the file; the store is open.
        let added = unsafe {
            CertAddEncodedCertificateToStore(
                store,
                X509_PKCS7_ENCODING,
                cert.as_ptr(),
                read,
                CERT_STORE_ADD_REPLACE_EXISTING,
                ptr::null_mut(),
            )
        };
        // SAFETY: read the error before CertCloseStore can change it.
        let err = unsafe { GetLastError() };
        // SAFETY: our store, closed once.
        unsafe { CertCloseStore(store, 0) };
        if added == 0 {
            return fail(out, add_step, err);
        }
    }
    out.raw("{\"trusted\":true,\"stores\":[\"Root\",\"TrustedPublisher\"]}");
}

/// An ASCII literal (with its NUL) as UTF-16: core has no L"..." literal.
const fn wide<const N: usize>(s: &[u8; N]) -> [u16; N] {
    let mut w = [0u16; N];
    let mut i = 0;
    while i < N {
        w[i] = s[i] as u16;
        i += 1;
    }
    w
}

const ROOT: [u16; 5] = wide(b"Root\0");
const TRUSTED_PUBLISHER: [u16; 17] = wide(b"TrustedPublisher\0");
