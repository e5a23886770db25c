//! Compile-time UTF-16 literals for `UNICODE_STRING` buffers.

/// Widens an ASCII byte string to UTF-16, one code unit per byte.
///
/// The input must be ASCII and end with a NUL: `RtlInitUnicodeString` measures
/// the buffer up to that NUL. Used in a `const` item, either mistake is a
/// compile error instead of a wrong name in the kernel namespace.
///
/// ```
/// const NAME: [u16; 4] = wazabi_core::wstr16(b"Foo\0");
/// assert_eq!(NAME, [0x46, 0x6f, 0x6f, 0]);
/// ```
///
/// ```compile_fail
/// const MISSING_NUL: [u16; 3] = wazabi_core::wstr16(b"Foo");
/// ```
pub const fn wstr16<const N: usize>(ascii: &[u8; N]) -> [u16; N] {
    assert!(
        N > 0 && ascii[N - 1] == 0,
        "wstr16: literal must end with \\0"
    );
    let mut wide = [0u16; N];
    let mut i = 0;
    while i < N {
        assert!(ascii[i] < 0x80, "wstr16: literal must be ASCII");
        // Only the terminator may be NUL, or the kernel would see a shorter name.
        assert!(
            ascii[i] != 0 || i == N - 1,
            "wstr16: NUL inside the literal"
        );
        wide[i] = ascii[i] as u16;
        i += 1;
    }
    wide
}

#[cfg(test)]
mod tests {
    use super::wstr16;
    use std::string::String;

    #[test]
    fn widens_each_byte_and_keeps_the_terminator() {
        const W: [u16; 4] = wstr16(b"a\\Z\0");
        assert_eq!(W, [b'a' as u16, b'\\' as u16, b'Z' as u16, 0]);
        assert_eq!(String::from_utf16(&W[..3]).unwrap(), "a\\Z");
    }

    #[test]
    #[should_panic(expected = "must end with")]
    fn rejects_a_literal_without_nul() {
        let _ = wstr16(b"abc");
    }

    #[test]
    #[should_panic(expected = "ASCII")]
    fn rejects_non_ascii() {
        let _ = wstr16(b"\xc3\xa9\0");
    }

    #[test]
    #[should_panic(expected = "NUL inside")]
    fn rejects_an_embedded_nul() {
        let _ = wstr16(b"ab\0c\0");
    }
}
