"""The real driver image on Linux: `invoke build` links driver/src into a WDM image with rust-lld.

Real: cargo, rustc for x86_64-pc-windows-msvc, rust-lld, lief, osslsigncode.
Nothing is loaded here (the Wine target's tests do that); the linked file is
inspected against the rules a kernel image must keep, and the failure paths a
developer meets (a binding the bindings crate lacks, an undefined symbol at
link time, a user-mode import, a broken checksum) are provoked for real in a
copy of the crate.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import need, need_tool, run_invoke

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.wdm, pytest.mark.cargo]
BASE_IMPORTS = {"DbgPrint", "IoCreateDevice", "IoCreateSymbolicLink", "IoDeleteDevice", "IoDeleteSymbolicLink", "IofCompleteRequest", "RtlInitUnicodeString"}
REGISTRY_IMPORTS = {"ZwOpenKey", "ZwQueryValueKey", "ZwClose"}


def need_wdm_target() -> None:
    need_tool("cargo")
    from driverpipe.image.build import target_std_installed

    need(target_std_installed("x86_64-pc-windows-msvc"), "rustup target add x86_64-pc-windows-msvc")


@pytest.fixture
def checkout(project: Path) -> Path:
    need_wdm_target()
    shutil.copytree(REPO / "driver", project / "driver", ignore=shutil.ignore_patterns("target"))
    shutil.copytree(REPO / "inf", project / "inf")
    return project


def invoke(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DRIVERPIPE_PFX_PASSWORD="pfx-Secret-42")
    return run_invoke(cwd, *args, env=env, timeout=300)


def manifest(checkout: Path) -> dict:
    return json.loads((checkout / "driver" / "target" / "release" / "driverpipe-build.json").read_text(encoding="utf-8"))


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in done.stderr, done.stderr
    return [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]


@pytest.mark.parametrize("features", [[], ["--features", "fault-injection"]], ids=["default", "fault-injection"])
def test_build_links_a_kernel_image_that_keeps_every_rule(checkout: Path, features: list[str]) -> None:
    done = invoke(checkout, "build", *features)
    assert done.returncode == 0, done.stderr
    assert "driver model wdm" in done.stdout
    data = manifest(checkout)
    assert data["model"] == "wdm" and data["source"] == "rust-lld"
    image = Path(data["artifact"])
    assert image.name == "WazabiEDR_Driver.dll" and image.is_file()

    import lief

    from driverpipe.image.imagecheck import pe_checksum, read_facts

    facts = read_facts(image)
    assert facts.subsystem == 1 and facts.magic == 0x20B and facts.machine == 0x8664
    assert facts.exports.get("DriverEntry") == facts.entry_rva
    want = BASE_IMPORTS | (REGISTRY_IMPORTS if features else set())
    assert facts.imports == {"ntoskrnl.exe": sorted(want)} or {k: set(v) for k, v in facts.imports.items()} == {"ntoskrnl.exe": want}
    raw = image.read_bytes()
    # Our checksum and lief's agree with what lld-link wrote.
    binary = lief.PE.parse(str(image))
    assert facts.checksum == pe_checksum(raw) == binary.optional_header.checksum
    if hasattr(binary, "compute_checksum"):
        assert binary.compute_checksum() == facts.checksum
    assert not facts.characteristics & 0x0001  # relocatable
    for text in ("[WazabiEDR] DriverEntry called", "[WazabiEDR] DriverUnload called", "[WazabiEDR] unloaded"):
        assert text.encode() in raw
    assert data["image"]["entry"] == "DriverEntry"

    # Unchanged: cargo has nothing to do, the manifest is rewritten with the same hash.
    again = invoke(checkout, "build", *features)
    assert again.returncode == 0, again.stderr
    assert manifest(checkout)["sha256"]["artifact"] == data["sha256"]["artifact"]


@pytest.mark.osslsigncode
def test_package_and_sign_the_real_image(checkout: Path, tmp_path: Path) -> None:
    need_tool("osslsigncode")
    done = invoke(checkout, "build", "sign")
    assert done.returncode == 0, done.stderr
    pkg = checkout / "driver" / "target" / "release" / "WazabiEDR_Driver_package"
    sys_file = pkg / "WazabiEDR_Driver.sys"
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = tmp_path / "cert.pem"
    pem.write_bytes(x509.load_der_x509_certificate(next(pkg.glob("*.cer")).read_bytes()).public_bytes(Encoding.PEM))
    verify = subprocess.run(["osslsigncode", "verify", "-CAfile", str(pem), "-in", str(sys_file)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    catalog = subprocess.run(
        ["osslsigncode", "verify", "-CAfile", str(pem), "-catalog", str(pkg / "WazabiEDR_Driver.cat"), "-in", str(sys_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert catalog.returncode == 0, catalog.stdout + catalog.stderr
    # The signed image still keeps the rules (osslsigncode rewrites the checksum).
    from driverpipe.image.imagecheck import check

    check(sys_file, model="wdm", arch="amd64", texts=["[WazabiEDR] DriverEntry called"])
    assert "wdm" in done.stdout


def test_a_kernel_item_missing_from_the_headers_is_a_compile_error_naming_it(checkout: Path) -> None:
    lib = checkout / "driver" / "src" / "lib.rs"
    text = lib.read_text(encoding="utf-8")
    text = text.replace("        RtlInitUnicodeString,\n    },", "        RtlInitUnicodeString, ExAllocatePool2,\n    },", 1)
    lib.write_text(text, encoding="utf-8")
    done = invoke(checkout, "build")
    assert done.returncode == 4, done.stderr
    errors = error_lines(done)
    assert len(errors) == 1 and "ExAllocatePool2 is not declared by mingw-w64's DDK headers" in errors[0], errors


def _add_to_driver_entry(checkout: Path, declaration: str, call: str) -> None:
    lib = checkout / "driver" / "src" / "lib.rs"
    src = lib.read_text(encoding="utf-8")
    src = src.replace("        print(messages::DRIVER_ENTRY_CALLED);", f"        print(messages::DRIVER_ENTRY_CALLED);\n        {call}", 1)
    lib.write_text(src + "\n" + declaration + "\n", encoding="utf-8")


def test_an_undefined_symbol_at_link_time_is_one_line_naming_it(checkout: Path) -> None:
    # A declaration with no import behind it: rust-lld cannot resolve it.
    _add_to_driver_entry(checkout, 'unsafe extern "C" {\n    fn WazabiNowhere();\n}', "WazabiNowhere();")
    done = invoke(checkout, "build")
    assert done.returncode == 4, done.stderr
    errors = error_lines(done)
    assert len(errors) == 1 and "undefined symbol" in errors[0] and "WazabiNowhere" in errors[0], errors


def test_a_user_mode_import_fails_the_image_check(checkout: Path) -> None:
    """The windows-sys trap (note 05): a routine bound to ntdll.dll links fine and never loads in a kernel."""
    _add_to_driver_entry(
        checkout,
        '#[link(name = "ntdll.dll", kind = "raw-dylib", modifiers = "+verbatim")]\nunsafe extern "C" {\n    fn NtYieldExecution() -> i32;\n}',
        "NtYieldExecution();",
    )
    done = invoke(checkout, "build")
    assert done.returncode == 1, done.stderr
    errors = error_lines(done)
    assert len(errors) == 1 and "ntdll.dll" in errors[0] and "NtYieldExecution" in errors[0], errors


def test_an_image_with_a_wrong_checksum_is_refused_by_name(checkout: Path, tmp_path: Path) -> None:
    assert invoke(checkout, "build").returncode == 0
    image = Path(manifest(checkout)["artifact"])
    data = bytearray(image.read_bytes())
    at = int.from_bytes(data[0x3C:0x40], "little") + 24 + 64
    data[at : at + 4] = b"\0\0\0\0"
    broken = tmp_path / "WazabiEDR_Driver.sys"
    broken.write_bytes(bytes(data))
    done = invoke(checkout, "build", "--from", str(broken))
    assert done.returncode == 2, done.stderr
    errors = error_lines(done)
    assert len(errors) == 1 and "PE checksum" in errors[0], errors


def test_dry_run_prints_the_cargo_command_and_writes_nothing(checkout: Path) -> None:
    done = invoke(checkout, "--dry", "build", "--features", "fault-injection")
    assert done.returncode == 0, done.stderr
    assert re.search(r"cargo build --release .*--features fault-injection", done.stdout), done.stdout
    assert not (checkout / "driver" / "target").exists()
