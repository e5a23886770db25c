/work/main/driver/wdm/target/x86_64-unknown-linux-gnu/debug/examples/layout: /work/main/driver/wdm/kernel/wdk-sys/examples/layout.rs /work/main/driver/wdm/kernel/wdk-sys/src/lib.rs
