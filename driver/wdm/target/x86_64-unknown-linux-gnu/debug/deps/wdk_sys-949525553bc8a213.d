/work/main/driver/wdm/target/x86_64-unknown-linux-gnu/debug/deps/wdk_sys-949525553bc8a213.d: kernel/wdk-sys/src/lib.rs

/work/main/driver/wdm/target/x86_64-unknown-linux-gnu/debug/deps/libwdk_sys-949525553bc8a213.rlib: kernel/wdk-sys/src/lib.rs

/work/main/driver/wdm/target/x86_64-unknown-linux-gnu/debug/deps/libwdk_sys-949525553bc8a213.rmeta: kernel/wdk-sys/src/lib.rs

kernel/wdk-sys/src/lib.rs:
