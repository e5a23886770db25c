//! User-mode facing I/O: the IRP dispatch routines (Part 4 adds the IOCTL contract).

pub mod dispatch;
