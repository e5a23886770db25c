// wdk-build turns the [package.metadata.wdk.driver-model] block into the kernel
// linker invocation (/DRIVER, /SUBSYSTEM:NATIVE, KMDF libraries, entry point).
// It only compiles on Windows with the WDK installed.
fn main() -> Result<(), wdk_build::ConfigError> {
    wdk_build::configure_wdk_binary_build()
}
