//! Fault injection for the unwind ladder (driver feature `fault-injection`).
//!
//! A test build reads REG_DWORD `FailAtStep` from `<service key>\Parameters`;
//! DriverEntry then fails that step with [`INJECTED_STATUS`] instead of calling
//! the API, so each unwind path runs on demand. 0, an absent value, a value of
//! another type or any read error all mean "no fault": a broken read must never
//! turn a normal load into a failing one.

use crate::status::{NtStatus, STATUS_UNSUCCESSFUL};
use crate::steps::Step;

/// What an injected failure returns (and prints): STATUS_UNSUCCESSFUL.
pub const INJECTED_STATUS: NtStatus = STATUS_UNSUCCESSFUL;

/// winnt.h `REG_DWORD`.
pub const REG_DWORD: u32 = 4;

/// `KEY_VALUE_PARTIAL_INFORMATION`: TitleIndex, Type, DataLength (ULONG each), then Data.
pub const PARTIAL_INFORMATION_HEADER_LEN: usize = 12;

/// Buffer that holds the header plus a DWORD; a bigger value makes
/// ZwQueryValueKey fail with STATUS_BUFFER_OVERFLOW, which reads as "no fault".
pub const PARTIAL_INFORMATION_DWORD_LEN: usize = PARTIAL_INFORMATION_HEADER_LEN + 4;

/// `FailAtStep` from the bytes ZwQueryValueKey(KeyValuePartialInformation) wrote;
/// 0 unless they hold exactly one REG_DWORD.
pub fn fail_at_from_partial_information(bytes: &[u8]) -> u32 {
    // Windows runs little-endian on every architecture the WDK targets.
    let ulong_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match (
        ulong_at(4),
        ulong_at(8),
        ulong_at(PARTIAL_INFORMATION_HEADER_LEN),
    ) {
        (Some(REG_DWORD), Some(4), Some(value)) => value,
        _ => 0,
    }
}

/// Whether `step` is the one `FailAtStep` selects (0 selects none).
pub const fn should_fail(fail_at: u32, step: Step) -> bool {
    fail_at == step.number()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn partial_information(value_type: u32, data: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0u32.to_le_bytes()); // TitleIndex
        bytes.extend_from_slice(&value_type.to_le_bytes());
        bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn reads_a_dword() {
        let bytes = partial_information(REG_DWORD, &2u32.to_le_bytes());
        assert_eq!(bytes.len(), PARTIAL_INFORMATION_DWORD_LEN);
        assert_eq!(fail_at_from_partial_information(&bytes), 2);
    }

    #[test]
    fn anything_but_one_dword_means_no_fault() {
        const REG_SZ: u32 = 1;
        const REG_BINARY: u32 = 3;
        assert_eq!(
            fail_at_from_partial_information(&partial_information(REG_SZ, b"2\0\0\0")),
            0
        );
        assert_eq!(
            fail_at_from_partial_information(&partial_information(REG_BINARY, &[1, 0, 0, 0])),
            0
        );
        assert_eq!(
            fail_at_from_partial_information(&partial_information(REG_DWORD, &[1, 0])),
            0
        );
        assert_eq!(
            fail_at_from_partial_information(&partial_information(
                REG_DWORD,
                &[1, 0, 0, 0, 0, 0, 0, 0]
            )),
            0
        );
        assert_eq!(fail_at_from_partial_information(&[]), 0);
        assert_eq!(
            fail_at_from_partial_information(&partial_information(REG_DWORD, &[])[..12]),
            0
        );
    }

    #[test]
    fn only_the_selected_step_fails() {
        for step in Step::ALL {
            assert!(!should_fail(0, step), "0 must mean no fault");
            assert!(!should_fail(99, step));
            for other in Step::ALL {
                assert_eq!(should_fail(other.number(), step), other == step);
            }
        }
    }

    #[test]
    fn injected_status_is_status_unsuccessful() {
        assert_eq!(INJECTED_STATUS as u32, 0xC000_0001);
    }
}
