//! Kernel object and registry names, NUL-terminated UTF-16 built at compile time.
//!
//! One definition serves `DriverEntry` and `DriverUnload`: a symlink deleted
//! under a name that differs by one character from the one created would leak
//! the link and make the next load fail with a name collision.

use crate::wide::wstr16;

/// `\Device\WazabiEDR`: the device in the Object Manager namespace.
pub const DEVICE_NAME: [u16; 18] = wstr16(b"\\Device\\WazabiEDR\0");

/// `\DosDevices\WazabiEDR`: what user mode opens as `\\.\WazabiEDR`.
pub const SYMLINK_NAME: [u16; 22] = wstr16(b"\\DosDevices\\WazabiEDR\0");

/// Subkey of the service key holding test-only tunables.
pub const PARAMETERS_KEY: [u16; 11] = wstr16(b"Parameters\0");

/// REG_DWORD under `Parameters` naming the DriverEntry step to fail.
pub const FAIL_AT_STEP_VALUE: [u16; 11] = wstr16(b"FailAtStep\0");

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn text(wide: &[u16]) -> String {
        let (last, body) = wide.split_last().unwrap();
        assert_eq!(*last, 0);
        String::from_utf16(body).unwrap()
    }

    #[test]
    fn names_decode_to_the_documented_paths() {
        assert_eq!(text(&DEVICE_NAME), r"\Device\WazabiEDR");
        assert_eq!(text(&SYMLINK_NAME), r"\DosDevices\WazabiEDR");
        assert_eq!(text(&PARAMETERS_KEY), "Parameters");
        assert_eq!(text(&FAIL_AT_STEP_VALUE), "FailAtStep");
    }
}
