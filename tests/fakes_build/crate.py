"""A KMDF driver crate and a primitive-driver .inx, written into a project folder for tests."""

from __future__ import annotations

from pathlib import Path

CARGO_TOML = """\
[package]
name    = "WazabiEDR_Driver"
version = "0.1.0"
edition = "2024"

[dependencies]
wdk        = "0.4.1"
wdk-alloc  = "0.4.1"
wdk-panic  = "0.4.1"
wdk-sys    = "0.5.1"

[build-dependencies]
wdk-build = "0.5.1"

[lib]
crate-type = ["cdylib"]

[package.metadata.wdk.driver-model]
driver-type              = "KMDF"
kmdf-version-major       = 1
target-kmdf-version-minor = 33

[features]
fault-injection = []

[profile.dev]
panic = "abort"

[profile.release]
panic = "abort"
"""

BUILD_RS = "fn main() -> Result<(), wdk_build::ConfigError> {\n    wdk_build::configure_wdk_binary_build()\n}\n"
CARGO_CONFIG = '[build]\nrustflags = ["-C", "target-feature=+crt-static"]\n'

INX = """\
;===================================================================
; WazabiEDR primitive driver INF (non-PnP; loaded by sc.exe or pnputil)
;===================================================================
[Version]
Signature   = "$WINDOWS NT$"
Class       = System
ClassGuid   = {4d36e97d-e325-11ce-bfc1-08002be10318}
Provider    = %ProviderString%
PnpLockDown = 1

[DestinationDirs]
DefaultDestDir = 13

[SourceDisksNames]
1 = %DiskId1%,,,""

[SourceDisksFiles]
WazabiEDR_Driver.sys = 1,,

[DefaultInstall.NT$ARCH$]
CopyFiles = Drivers_Dir

[Drivers_Dir]
WazabiEDR_Driver.sys

[DefaultInstall.NT$ARCH$.Services]
AddService = WazabiEDR,0x00000800,WazabiEDR_Service_Install ; ; inside a comment

[WazabiEDR_Service_Install]
DisplayName    = %ServiceDesc%
ServiceType    = 1               ; SERVICE_KERNEL_DRIVER
StartType      = 3               ; SERVICE_DEMAND_START
ErrorControl   = 1               ; SERVICE_ERROR_NORMAL
ServiceBinary  = %13%\\WazabiEDR_Driver.sys

[Strings]
ProviderString = "WazabiEDR; test"
DiskId1        = "WazabiEDR Installation Disk"
ServiceDesc    = "WazabiEDR kernel driver (KMDF $KMDFVERSION$)"
"""


def inx_bytes(text: str = INX, encoding: str = "utf-16-le") -> bytes:
    """CRLF text with a BOM, as the WDK samples ship."""
    crlf = text.replace("\r\n", "\n").replace("\n", "\r\n")
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff", "utf-8-sig": b""}[encoding]
    return bom + crlf.encode(encoding)


def write_crate(
    root: Path,
    *,
    cargo_toml: str = CARGO_TOML,
    build_rs: str | None = BUILD_RS,
    cargo_config: str | None = CARGO_CONFIG,
    lock: bool = True,
    inx: bytes | None = None,
) -> Path:
    crate = root / "driver"
    (crate / "src").mkdir(parents=True, exist_ok=True)
    (crate / "Cargo.toml").write_text(cargo_toml, encoding="utf-8")
    (crate / "src" / "lib.rs").write_text("#![no_std]\n", encoding="utf-8")
    if build_rs is not None:
        (crate / "build.rs").write_text(build_rs, encoding="utf-8")
    if cargo_config is not None:
        (crate / ".cargo").mkdir(exist_ok=True)
        (crate / ".cargo" / "config.toml").write_text(cargo_config, encoding="utf-8")
    if lock:
        (crate / "Cargo.lock").write_text("version = 4\n", encoding="utf-8")
    (root / "inf").mkdir(exist_ok=True)
    (root / "inf" / "WazabiEDR_Driver.inx").write_bytes(inx if inx is not None else inx_bytes())
    return crate
