//! wdk-panic for drivers built without the WDK: the panic handler, named like
//! wdk-panic so a driver's `extern crate wdk_panic` resolves. Like wdk-panic 0.4.1 it spins: a panic
//! hangs the thread rather than bugchecking (the driver avoids panics).
#![no_std]

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
