/work/main/driver/wdm/target/x86_64-unknown-linux-gnu/debug/examples/layout-730f70d844926833.d: kernel/wdk-sys/examples/layout.rs

/work/main/driver/wdm/target/x86_64-unknown-linux-gnu/debug/examples/layout-730f70d844926833: kernel/wdk-sys/examples/layout.rs

kernel/wdk-sys/examples/layout.rs:
