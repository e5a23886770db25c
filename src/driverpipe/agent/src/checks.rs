//! Device checks: the project's `[[device_check]]` table, run in order on ONE
//! handle of the device (driverpipe's targets/devicechecks.py sends it and
//! judges the answer; scripts/guest/Test-DeviceChecks.ps1 does the same on
//! Windows). A step is `op,code,output_length,input_hex,name` with op
//! i(octl), r(ead) or w(rite); the name (a plain name) is echoed back.

use core::ffi::c_void;
use core::ptr;

use crate::{
    Args, CloseHandle, CreateFileW, DeviceIoControl, GetLastError, INVALID_HANDLE_VALUE, Out,
    ReadFile, Static, WriteFile,
};
use core::cell::UnsafeCell;

const GENERIC_READ: u32 = 0x8000_0000;
const GENERIC_WRITE: u32 = 0x4000_0000;
const FILE_SHARE_READ_WRITE: u32 = 0x3;
const OPEN_EXISTING: u32 = 3;
/// The largest input or output of one step (the schema allows no more).
pub const IO_CAP: usize = 64 * 1024;

static INPUT: Static<[u8; IO_CAP]> = Static(UnsafeCell::new([0; IO_CAP]));
static OUTPUT: Static<[u8; IO_CAP]> = Static(UnsafeCell::new([0; IO_CAP]));

struct Step<'a> {
    op: u16,
    code: u32,
    output_length: usize,
    input_hex: &'a [u16],
    name: &'a [u16],
}

fn parse_step(field: &[u16]) -> Option<Step<'_>> {
    let mut parts = field.split(|&c| c == b',' as u16);
    let op = *parts.next()?.first()?;
    let code = crate::parse_u32(parts.next()?)?;
    let output_length = crate::parse_u32(parts.next()?)? as usize;
    let input_hex = parts.next().unwrap_or(&[]);
    let name = parts.next().unwrap_or(&[]);
    if parts.next().is_some()
        || output_length > IO_CAP
        || input_hex.len() % 2 != 0
        || input_hex.len() / 2 > IO_CAP
    {
        return None;
    }
    if op != b'i' as u16 && op != b'r' as u16 && op != b'w' as u16 {
        return None;
    }
    Some(Step {
        op,
        code,
        output_length,
        input_hex,
        name,
    })
}

fn nibble(c: u16) -> Option<u8> {
    match c {
        0x30..=0x39 => Some((c - 0x30) as u8),
        0x41..=0x46 => Some((c - 0x41 + 10) as u8),
        0x61..=0x66 => Some((c - 0x61 + 10) as u8),
        _ => None,
    }
}

/// `checks <device> <step>...`: false on bad usage (nothing was opened then).
pub fn run(args: &Args, out: &mut Out) -> bool {
    // Parse every step before opening: a bad request never half-runs.
    for i in 2..args.count {
        let ok = args
            .get(i)
            .and_then(parse_step)
            .is_some_and(|s| s.input_hex.iter().all(|&c| nibble(c).is_some()));
        if !ok {
            return false;
        }
    }
    // SAFETY: the only borrows of the I/O buffers, on the only thread.
    let (input, output) = unsafe { (&mut *INPUT.0.get(), &mut *OUTPUT.0.get()) };
    // SAFETY: the path is NUL-terminated (Args).
    let h = unsafe {
        CreateFileW(
            args.ptr(1),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ_WRITE,
            ptr::null_mut(),
            OPEN_EXISTING,
            0,
            ptr::null_mut(),
        )
    };
    out.raw("{\"op\":\"checks\",\"device\":")
        .str16(args.get(1).unwrap_or(&[]));
    if h == INVALID_HANDLE_VALUE {
        // SAFETY: no preconditions; read right after the failing call.
        let err = unsafe { GetLastError() };
        out.raw(",\"open_error\":").u32(err).raw(",\"steps\":[]}");
        return true;
    }
    out.raw(",\"open_error\":0,\"steps\":[");
    for i in 2..args.count {
        let Some(step) = args.get(i).and_then(parse_step) else {
            continue;
        };
        let n_in = step.input_hex.len() / 2;
        for (k, pair) in step.input_hex.chunks(2).enumerate() {
            if let (Some(slot), Some(hi), Some(lo)) = (
                input.get_mut(k),
                pair.first().and_then(|&c| nibble(c)),
                pair.get(1).and_then(|&c| nibble(c)),
            ) {
                *slot = (hi << 4) | lo;
            }
        }
        let mut returned = 0u32;
        // SAFETY (all three): the buffers are live statics of IO_CAP bytes, and
        // both lengths are at most IO_CAP (parse_step); the calls are synchronous.
        let ok = unsafe {
            if step.op == b'i' as u16 {
                DeviceIoControl(
                    h,
                    step.code,
                    if n_in == 0 {
                        ptr::null_mut()
                    } else {
                        input.as_mut_ptr().cast::<c_void>()
                    },
                    n_in as u32,
                    if step.output_length == 0 {
                        ptr::null_mut()
                    } else {
                        output.as_mut_ptr().cast::<c_void>()
                    },
                    step.output_length as u32,
                    &mut returned,
                    ptr::null_mut(),
                )
            } else if step.op == b'r' as u16 {
                ReadFile(
                    h,
                    output.as_mut_ptr(),
                    step.output_length as u32,
                    &mut returned,
                    ptr::null_mut(),
                )
            } else {
                WriteFile(
                    h,
                    input.as_ptr(),
                    n_in as u32,
                    &mut returned,
                    ptr::null_mut(),
                )
            }
        } != 0;
        // SAFETY: no preconditions; only meaningful on failure.
        let error = if ok { 0 } else { unsafe { GetLastError() } };
        if i > 2 {
            out.raw(",");
        }
        out.raw("{\"name\":")
            .str16(step.name)
            .raw(",\"error\":")
            .u32(error)
            .raw(",\"returned\":")
            .u32(returned)
            .raw(",\"output\":\"");
        if step.op != b'w' as u16 {
            let shown = (returned as usize).min(step.output_length);
            for &b in output.get(..shown).unwrap_or(&[]) {
                out.byte(b"0123456789abcdef"[(b >> 4) as usize])
                    .byte(b"0123456789abcdef"[(b & 0xF) as usize]);
            }
        }
        out.raw("\"}");
    }
    // SAFETY: `h` is the handle we opened, closed once.
    let close_ok = unsafe { CloseHandle(h) } != 0;
    // SAFETY: no preconditions; only meaningful when the close failed.
    let close_error = if close_ok {
        0
    } else {
        unsafe { GetLastError() }
    };
    out.raw("],\"close_error\":").u32(close_error).raw("}");
    true
}
