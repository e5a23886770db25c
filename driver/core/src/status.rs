//! The few NTSTATUS facts the WDK-free code needs.

/// `NTSTATUS`: signed, the high bit marks failure (same type as wdk-sys').
pub type NtStatus = i32;

pub const STATUS_SUCCESS: NtStatus = 0;
pub const STATUS_UNSUCCESSFUL: NtStatus = 0xC000_0001_u32 as NtStatus;

/// `NT_SUCCESS` from ntdef.h: success and informational codes are >= 0.
pub const fn nt_success(status: NtStatus) -> bool {
    status >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_and_failure_follow_the_sign_bit() {
        assert!(nt_success(STATUS_SUCCESS));
        assert!(nt_success(0x4000_0000)); // informational
        assert!(!nt_success(STATUS_UNSUCCESSFUL));
        assert!(!nt_success(0x8000_0005_u32 as NtStatus)); // STATUS_BUFFER_OVERFLOW, a warning
        assert_eq!(STATUS_UNSUCCESSFUL as u32, 0xC000_0001);
    }
}
