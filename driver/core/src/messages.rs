//! The driver's `DbgPrint` lines, as NUL-terminated C strings.
//!
//! The pipeline's default expectations ([tool.driverpipe.expect.*]), the fake
//! guest and the VM regression suite match these byte for byte (without the
//! trailing newline, which only ends the line in DebugView). Lines printed
//! without arguments contain no `%`, so they are safe as a format string.
//! Step-specific lines live in [`crate::steps::Step`].

use core::ffi::CStr;

pub const DRIVER_ENTRY_CALLED: &CStr = c"[WazabiEDR] DriverEntry called\n";

pub const READY: &CStr =
    c"[WazabiEDR] ready (device \\Device\\WazabiEDR, symlink \\DosDevices\\WazabiEDR)\n";

pub const DRIVER_UNLOAD_CALLED: &CStr = c"[WazabiEDR] DriverUnload called\n";

pub const UNLOADED: &CStr = c"[WazabiEDR] unloaded\n";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::names::{DEVICE_NAME, SYMLINK_NAME};
    use crate::steps::Step;
    use std::format;
    use std::string::{String, ToString};

    /// What DbgPrint would print for `format` with `%08X`/`%u` arguments, minus the newline.
    pub(crate) fn render(format: &CStr, args: &[u32]) -> String {
        let text = format.to_str().unwrap();
        let mut out = String::new();
        let mut args = args.iter();
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            out.push_str(&rest[..at]);
            let spec = &rest[at..];
            let (rendered, len) = if spec.starts_with("%08X") {
                (format!("{:08X}", args.next().expect("missing argument")), 4)
            } else if spec.starts_with("%u") {
                (args.next().expect("missing argument").to_string(), 2)
            } else {
                panic!("unexpected conversion in {text:?}");
            };
            out.push_str(&rendered);
            rest = &spec[len..];
        }
        assert!(args.next().is_none(), "unused argument for {text:?}");
        out.push_str(rest);
        out.strip_suffix('\n')
            .expect("line must end with a newline")
            .to_string()
    }

    #[test]
    fn plain_lines_are_exact_and_free_of_conversions() {
        for (line, want) in [
            (DRIVER_ENTRY_CALLED, "[WazabiEDR] DriverEntry called"),
            (
                READY,
                r"[WazabiEDR] ready (device \Device\WazabiEDR, symlink \DosDevices\WazabiEDR)",
            ),
            (DRIVER_UNLOAD_CALLED, "[WazabiEDR] DriverUnload called"),
            (UNLOADED, "[WazabiEDR] unloaded"),
        ] {
            assert!(!line.to_str().unwrap().contains('%'));
            assert_eq!(render(line, &[]), want);
        }
    }

    #[test]
    fn ready_line_names_the_objects_actually_created() {
        let device = String::from_utf16(&DEVICE_NAME[..DEVICE_NAME.len() - 1]).unwrap();
        let symlink = String::from_utf16(&SYMLINK_NAME[..SYMLINK_NAME.len() - 1]).unwrap();
        let want = format!("[WazabiEDR] ready (device {device}, symlink {symlink})");
        assert_eq!(render(READY, &[]), want);
    }

    #[test]
    fn every_line_fits_one_dbgprint_call() {
        // DbgPrint transmits at most 512 bytes per call; a longer line is cut.
        let mut all = std::vec![DRIVER_ENTRY_CALLED, READY, DRIVER_UNLOAD_CALLED, UNLOADED];
        for step in Step::ALL {
            all.push(step.failed_format());
            all.push(step.injection_format());
        }
        for line in all {
            assert!(line.to_bytes_with_nul().len() < 200, "{line:?}");
        }
    }
}
