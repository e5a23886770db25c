//! wdk for drivers built without the WDK: the part of windows-drivers-rs's
//! `wdk` crate a WDM driver uses, with the same names.
//!
//! - [`print!`] / [`println!`]: formatted with `core::fmt` into a stack buffer,
//!   then one `DbgPrint("%s", ...)` per buffer (a `%` in the text stays text).
//! - [`nt_success`]: wdm.h's NT_SUCCESS.
//! - [`paged_code!`]: a no-op. On Windows it checks the IRQL in checked builds
//!   only; here there is no IRQL to read (Wine has none, and
//!   KeGetCurrentIrql is an intrinsic, not an ntoskrnl export).
#![no_std]

#[doc(hidden)]
pub mod print;

pub use wdk_sys::NT_SUCCESS as nt_success;

/// Prints to the kernel debugger (DbgPrint), like wdk's `print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::print::_print(format_args!($($arg)*))
    };
}

/// Prints a line to the kernel debugger (DbgPrint), like wdk's `println!`.
#[macro_export]
macro_rules! println {
    () => {
        $crate::print!("\n")
    };
    ($($arg:tt)*) => {
        $crate::print::_print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// wdm.h's PAGED_CODE(): a no-op in this crate (see the crate docs).
#[macro_export]
macro_rules! paged_code {
    () => {};
}
