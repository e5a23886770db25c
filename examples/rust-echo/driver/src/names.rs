//! NUL-terminated UTF-16 names, built at compile time.

/// ASCII text -> UTF-16 with a terminating NUL (N must leave room for it).
const fn wide<const N: usize>(text: &str) -> [u16; N] {
    let bytes = text.as_bytes();
    assert!(bytes.len() < N, "room for the NUL");
    let mut out = [0u16; N];
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i] as u16;
        i += 1;
    }
    out
}

pub static DEVICE_NAME: [u16; 17] = wide("\\Device\\RustEcho");
pub static SYMLINK_NAME: [u16; 21] = wide("\\DosDevices\\RustEcho");
pub static PARAMETERS: [u16; 11] = wide("Parameters");
pub static START: [u16; 6] = wide("Start");
pub static GREETING: [u16; 9] = wide("Greeting");
pub static DBGPRINT: [u16; 9] = wide("DbgPrint");
pub static FAIL_AT_STEP: [u16; 11] = wide("FailAtStep");

/// How many ntoskrnl routines the image imports besides memcpy/memset (a test
/// compares it with the linked image's import table).
pub const KERNEL_ROUTINES: u32 = 58;
