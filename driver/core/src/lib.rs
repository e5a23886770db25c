//! WDK-free logic of the WazabiEDR driver.
//!
//! Everything here is plain `core` Rust so it can be unit-tested on the host
//! (`cargo test -p wazabi-core`); the driver crate re-uses it unchanged. The
//! texts are the exact `DbgPrint` lines the pipeline and the regression suite
//! match byte for byte.

#![no_std]

#[cfg(test)]
extern crate std;

pub mod fault;
pub mod messages;
pub mod names;
pub mod status;
pub mod steps;
pub mod wide;

pub use status::{NtStatus, nt_success};
pub use steps::Step;
pub use wide::wstr16;
