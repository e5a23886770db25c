"""The WDM route's crate derived from the driver's own Cargo.toml (image/wdm_crate.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from driverpipe.core.errors import ConfigError
from driverpipe.image import wdm_crate

MANIFEST = """\
[package]
name = "my-driver"
version.workspace = true
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
wdk = "0.4.1"
wdk-sys = { version = "0.5.1", features = ["nightly"] }
kernel_alloc = { path = "../alloc", package = "wdk-alloc" }
wdk-panic = { workspace = true }
helper = { path = "../helper" }
heapless = { workspace = true, features = ["serde"] }

[build-dependencies]
wdk-build = "0.5.1"

[features]
default = ["extra"]
extra = []

[package.metadata.wdk.driver-model]
driver-type = "WDM"
"""
WORKSPACE = """\
[workspace]
members = ["driver"]

[workspace.package]
version = "1.2.3"

[workspace.dependencies]
wdk-panic = "0.4.1"
heapless = { version = "0.8", default-features = false }

[profile.release]
panic = "abort"
lto = true
"""


def make(root: Path, manifest: str = MANIFEST) -> Path:
    crate = root / "driver"
    (crate / "src").mkdir(parents=True)
    (crate / "src" / "lib.rs").write_text("#![no_std]\n", encoding="utf-8")
    (crate / "Cargo.toml").write_text(manifest, encoding="utf-8")
    (root / "Cargo.toml").write_text(WORKSPACE, encoding="utf-8")
    (root / "Cargo.lock").write_text("version = 4\n", encoding="utf-8")
    return crate


def test_the_wdk_crates_are_replaced_and_everything_else_kept(tmp_path: Path) -> None:
    crate = make(tmp_path)
    before = (crate / "Cargo.toml").read_bytes()
    out = wdm_crate.derive(crate, tmp_path, "WDM")
    assert out == crate / "target" / "driverpipe-wdm"
    data = tomllib.loads((out / "Cargo.toml").read_text(encoding="utf-8"))
    deps = data["dependencies"]
    assert deps["wdk"] == {"path": str(wdm_crate.KERNEL / "wdk")}
    assert deps["wdk-sys"] == {"path": str(wdm_crate.KERNEL / "wdk-sys")}, "crates.io features of a replaced crate are dropped"
    assert deps["kernel_alloc"] == {"path": str(wdm_crate.KERNEL / "wdk-alloc"), "package": "wdk-alloc"}, "a renamed dependency keeps its key"
    assert deps["wdk-panic"] == {"path": str(wdm_crate.KERNEL / "wdk-panic")}, "workspace = true resolved, then replaced"
    assert deps["helper"] == {"path": str((tmp_path / "helper").resolve())}, "a relative path is made absolute"
    assert deps["heapless"] == {"version": "0.8", "default-features": False, "features": ["serde"]}
    assert "build-dependencies" not in data and data["package"]["build"] is False
    assert data["package"]["version"] == "1.2.3" and data["package"]["name"] == "my-driver"
    assert data["lib"] == {"name": "my_driver", "path": str((crate / "src" / "lib.rs").resolve()), "crate-type": ["cdylib"], "test": False, "doctest": False}
    assert data["features"] == {"default": ["extra"], "extra": []}
    assert data["profile"]["release"] == {"panic": "abort", "lto": True} and data["profile"]["dev"] == {"panic": "abort"}
    assert data["workspace"] == {}
    assert "/ENTRY:DriverEntry" in (out / ".cargo" / "config.toml").read_text(encoding="utf-8")
    assert (out / "Cargo.lock").read_text(encoding="utf-8") == "version = 4\n"
    assert (crate / "Cargo.toml").read_bytes() == before, "the driver's own manifest is never edited"


def test_an_unchanged_manifest_is_not_rewritten(tmp_path: Path) -> None:
    crate = make(tmp_path)
    out = wdm_crate.derive(crate, tmp_path, "WDM")
    stamp = (out / "Cargo.toml").stat().st_mtime_ns
    wdm_crate.derive(crate, tmp_path, "WDM")
    assert (out / "Cargo.toml").stat().st_mtime_ns == stamp, "cargo's no-op rebuild stays a no-op"


def test_a_kmdf_driver_is_refused_in_one_line_naming_the_source(tmp_path: Path) -> None:
    crate = make(tmp_path)
    (crate / "src" / "lib.rs").write_text("#![no_std]\nuse wdk_sys::wdf::WDFDRIVER;\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"KMDF needs Windows and the WDK, and Wine has no WDF") as info:
        wdm_crate.derive(crate, tmp_path, "KMDF")
    assert "src/lib.rs:2" in info.value.message
    assert not (crate / "target").exists()
    # The same sources declared WDM are not second-guessed by the scan; a KMDF crate making no WDF call builds.
    (crate / "src" / "lib.rs").write_text("#![no_std]\n// WdfDriverCreate( is mentioned in a comment only\n", encoding="utf-8")
    assert wdm_crate.derive(crate, tmp_path, "KMDF").is_dir()


def test_workspace_true_without_a_workspace_is_one_line(tmp_path: Path) -> None:
    crate = make(tmp_path, MANIFEST.replace("version.workspace = true", 'version = "0.1.0"'))
    (tmp_path / "Cargo.toml").unlink()
    with pytest.raises(ConfigError, match=r"wdk-panic says workspace = true, but no workspace is above the crate"):
        wdm_crate.derive(crate, crate, "WDM")
