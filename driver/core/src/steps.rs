//! The fallible steps of `DriverEntry`, numbered in the order they run.
//!
//! The number is what `FailAtStep` selects; the name is what the failure line
//! reports. The pipeline's `regress.fault_steps` lists the names in this order.

use core::ffi::CStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    IoCreateDevice = 1,
    IoCreateSymbolicLink = 2,
}

impl Step {
    /// Every step, in execution order (Part 2 appends its registrations here).
    pub const ALL: [Step; 2] = [Step::IoCreateDevice, Step::IoCreateSymbolicLink];

    pub const fn number(self) -> u32 {
        self as u32
    }

    pub const fn from_number(number: u32) -> Option<Step> {
        match number {
            1 => Some(Step::IoCreateDevice),
            2 => Some(Step::IoCreateSymbolicLink),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Step::IoCreateDevice => "IoCreateDevice",
            Step::IoCreateSymbolicLink => "IoCreateSymbolicLink",
        }
    }

    /// `DbgPrint` format for this step's failure; one argument: the NTSTATUS.
    ///
    /// A literal per step (rather than `%s`) keeps every line a static string
    /// checked here, byte for byte.
    pub const fn failed_format(self) -> &'static CStr {
        match self {
            Step::IoCreateDevice => c"[WazabiEDR] IoCreateDevice failed (status 0x%08X)\n",
            Step::IoCreateSymbolicLink => {
                c"[WazabiEDR] IoCreateSymbolicLink failed (status 0x%08X)\n"
            }
        }
    }

    /// `DbgPrint` format announcing an injected failure; one argument: the step number.
    pub const fn injection_format(self) -> &'static CStr {
        match self {
            Step::IoCreateDevice => {
                c"[WazabiEDR] fault injection: failing step %u (IoCreateDevice)\n"
            }
            Step::IoCreateSymbolicLink => {
                c"[WazabiEDR] fault injection: failing step %u (IoCreateSymbolicLink)\n"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Step;
    use crate::messages::tests::render;
    use crate::status::STATUS_UNSUCCESSFUL;
    use std::format;

    #[test]
    fn numbers_are_one_based_in_execution_order() {
        for (index, step) in Step::ALL.iter().enumerate() {
            assert_eq!(step.number() as usize, index + 1);
            assert_eq!(Step::from_number(step.number()), Some(*step));
        }
        assert_eq!(Step::from_number(0), None);
        assert_eq!(Step::from_number(3), None);
        assert_eq!(Step::from_number(u32::MAX), None);
    }

    #[test]
    fn failure_lines_match_the_contract() {
        for step in Step::ALL {
            let line = render(step.failed_format(), &[STATUS_UNSUCCESSFUL as u32]);
            assert_eq!(
                line,
                format!("[WazabiEDR] {} failed (status 0xC0000001)", step.name())
            );
        }
        // STATUS_OBJECT_NAME_COLLISION: what a leaked device from an earlier load gives.
        assert_eq!(
            render(Step::IoCreateDevice.failed_format(), &[0xC000_0035]),
            "[WazabiEDR] IoCreateDevice failed (status 0xC0000035)"
        );
        assert_eq!(
            render(Step::IoCreateDevice.failed_format(), &[0x0000_0103]),
            "[WazabiEDR] IoCreateDevice failed (status 0x00000103)"
        );
    }

    #[test]
    fn injection_lines_match_the_contract() {
        assert_eq!(
            render(Step::IoCreateDevice.injection_format(), &[1]),
            "[WazabiEDR] fault injection: failing step 1 (IoCreateDevice)"
        );
        assert_eq!(
            render(Step::IoCreateSymbolicLink.injection_format(), &[2]),
            "[WazabiEDR] fault injection: failing step 2 (IoCreateSymbolicLink)"
        );
    }
}
