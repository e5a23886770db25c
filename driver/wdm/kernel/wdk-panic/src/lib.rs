//! The WDM image's panic handler, named like wdk-panic so the driver's
//! `extern crate wdk_panic` resolves. Like wdk-panic 0.4.1 it spins: a panic
//! hangs the thread rather than bugchecking (the driver avoids panics).
#![no_std]

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

// Debug builds only: libcore is prebuilt with unwind tables that name the C++
// frame handler, and float code may reference _fltused. Nothing calls either in
// a driver built with panic=abort. Kept out of release builds because a cdylib
// exports every #[no_mangle] item of its crate graph.
#[cfg(debug_assertions)]
#[unsafe(no_mangle)]
#[used]
static _fltused: i32 = 0;

#[cfg(debug_assertions)]
#[unsafe(no_mangle)]
extern "C" fn __CxxFrameHandler3() -> i32 {
    0
}
