//! Stand-in for wdk-panic 0.4.1 (only `extern crate wdk_panic` must resolve).
#![no_std]
