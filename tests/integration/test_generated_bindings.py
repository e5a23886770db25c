"""The generated wdk-sys: regenerated and compared, its layout tests compiled, and what a driver
meets when it reaches past it (a routine mingw-w64's headers do not declare, a KMDF crate).

Real: cargo, bindgen built from crates.io (tools/wdk-bindgen), Debian's libclang
and clang, mingw-w64's DDK headers, rustc for the host and for
x86_64-pc-windows-msvc, Invoke in subprocesses. Markers: `bindgen` (the
regeneration: in CI a missing libclang fails it), `cargo`, `wdm`.
"""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

import pytest
from test_rust_echo import copy_example

from conftest import need, need_tool, run_invoke

REPO = Path(__file__).resolve().parents[2]
WDK_SYS = REPO / "src" / "driverpipe" / "kernel" / "wdk-sys"
EXAMPLE = REPO / "examples" / "rust-echo"
LIBCLANG = ("/usr/lib/llvm-*/lib/libclang*.so*", "/usr/lib/x86_64-linux-gnu/libclang*.so*")


def need_libclang() -> None:
    need_tool("clang")
    need(any(glob.glob(p) for p in LIBCLANG), "libclang is missing (apt-get install libclang-dev clang)")


@pytest.mark.bindgen
@pytest.mark.cargo
def test_the_committed_bindings_are_what_the_generator_writes(tmp_path: Path) -> None:
    need_libclang()
    need(Path("/usr/share/mingw-w64/include/ddk/ntifs.h").is_file(), "apt-get install mingw-w64-x86-64-dev")
    user = tmp_path / "user.toml"
    user.write_text("", encoding="utf-8")
    done = run_invoke(REPO, "bindings", "--check", env=dict(os.environ, DRIVERPIPE_CONFIG=str(user)), timeout=1500)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bindings up to date: types.rs, constants.rs, ntddk.rs" in done.stdout


@pytest.mark.cargo
def test_bindgens_layout_tests_hold_on_the_host_and_the_target(tmp_path: Path) -> None:
    """bindgen writes its layout tests as compile-time assertions: building the crate runs them."""
    cargo = need_tool("cargo")
    text = (WDK_SYS / "src" / "generated" / "types.rs").read_text(encoding="utf-8")
    assert text.count("Offset of field: ") > 4000 and '"Size of _IRP"' in text
    env = dict(os.environ, CARGO_TARGET_DIR=str(tmp_path / "target"))
    done = subprocess.run([str(cargo), "test", "-q", "--offline"], cwd=WDK_SYS, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    from driverpipe.image.build import target_std_installed

    need(target_std_installed("x86_64-pc-windows-msvc"), "rustup target add x86_64-pc-windows-msvc")
    argv = [str(cargo), "build", "-q", "--offline", "--target", "x86_64-pc-windows-msvc"]
    done = subprocess.run(argv, cwd=WDK_SYS, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def echo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from driverpipe.image.build import target_std_installed

    need_tool("cargo")
    need(target_std_installed("x86_64-pc-windows-msvc"), "rustup target add x86_64-pc-windows-msvc")
    return copy_example(tmp_path, monkeypatch)


def patch(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, done.stdout + done.stderr
    return errors[0]


@pytest.mark.wdm
@pytest.mark.cargo
def test_a_routine_the_headers_do_not_declare_is_a_compile_error_naming_it_and_the_header_set(echo: Path) -> None:
    lib = echo / "driver" / "src" / "lib.rs"
    patch(lib, "        ExAllocatePoolWithTag, ExDeleteNPagedLookasideList,", "        ExAllocatePool2, ExAllocatePoolWithTag, ExDeleteNPagedLookasideList,")
    done = run_invoke(echo, "build", timeout=600)
    assert done.returncode == 4, done.stdout + done.stderr
    line = one_error(done)
    assert "ExAllocatePool2 is not declared by mingw-w64's DDK headers (ddk/wdm.h, ddk/ntddk.h, ddk/ntifs.h)" in line


@pytest.mark.wdm
@pytest.mark.cargo
def test_a_kmdf_crate_on_the_linux_route_is_one_line(echo: Path) -> None:
    patch(echo / "driver" / "Cargo.toml", 'driver-type = "WDM"', 'driver-type = "KMDF"\nkmdf-version-major = 1\ntarget-kmdf-version-minor = 33')
    patch(
        echo / "driver" / "src" / "lib.rs",
        "mod dispatch;",
        "mod dispatch;\n#[allow(dead_code)]\nfn framework(driver: wdk_sys::PDRIVER_OBJECT) { let _ = wdk_sys::wdf::WdfDriverCreate; let _ = driver; }",
    )
    done = run_invoke(echo, "build", timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_error(done)
    assert "KMDF needs Windows and the WDK, and Wine has no WDF" in line and "lib.rs" in line
    assert not (echo / "driver" / "target" / "driverpipe-wdm").exists(), "refused before anything was written"
