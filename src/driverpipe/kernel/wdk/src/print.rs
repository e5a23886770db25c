//! The buffer behind `print!`: text is cut into DbgPrint calls of at most
//! `BUFFER` - 1 bytes, each NUL-terminated and passed as the argument of "%s".
use core::fmt::{self, Write};

use wdk_sys::ntddk::DbgPrint;

/// DbgPrint's own limit is 512 bytes per call.
const BUFFER: usize = 512;

struct DbgPrintWriter {
    buf: [u8; BUFFER],
    used: usize,
}

impl DbgPrintWriter {
    fn flush(&mut self) {
        if self.used == 0 {
            return;
        }
        self.buf[self.used] = 0;
        // SAFETY: a NUL-terminated format with one %s, given one NUL-terminated string.
        unsafe {
            DbgPrint(c"%s".as_ptr(), self.buf.as_ptr());
        }
        self.used = 0;
    }
}

impl Write for DbgPrintWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            // An interior NUL would end the string early: it is skipped.
            if byte == 0 {
                continue;
            }
            if self.used == BUFFER - 1 {
                self.flush();
            }
            self.buf[self.used] = byte;
            self.used += 1;
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let mut writer = DbgPrintWriter {
        buf: [0; BUFFER],
        used: 0,
    };
    let _ = writer.write_fmt(args);
    writer.flush();
}
