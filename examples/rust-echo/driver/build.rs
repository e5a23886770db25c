// wdk-build turns [package.metadata.wdk.driver-model] into the kernel link
// (Windows with the WDK only; the Linux route builds without this script).
fn main() -> Result<(), wdk_build::ConfigError> {
    wdk_build::configure_wdk_binary_build()
}
