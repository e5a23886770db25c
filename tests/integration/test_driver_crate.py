"""The WazabiEDR driver crate (driver/), checked on a host without Windows.

What runs here for real (marker `cargo`): `cargo metadata --locked` (Cargo.lock is
consistent with the manifests and pins the article's wdk-* versions), `cargo fmt
--check` (the article's workspace and the WDM image's), and `cargo test` of the
WDK-free crate wazabi-core. The driver's sources are compiled and linked for real
by the WDM route (tests/integration/test_wdm_image.py); none of this compiles them
against the real WDK bindings: wdk-build refuses non-Windows hosts, so only a
Windows build proves the KMDF image.

The remaining tests are text checks on driver/src: they guard the article's
load-bearing decisions (ordering in DriverEntry and DriverUnload) against edits,
and prove nothing about behaviour.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from conftest import need, need_tool

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "driver"
LIB = DRIVER / "src" / "lib.rs"
ARTICLE_VERSIONS = {"wdk": "0.4.1", "wdk-sys": "0.5.1", "wdk-build": "0.5.1", "wdk-alloc": "0.4.1", "wdk-panic": "0.4.1"}


def cargo(*args: str) -> subprocess.CompletedProcess[str]:
    exe = need_tool("cargo")
    # Run inside driver/ so driver/.cargo/config.toml applies, as on the build host.
    return subprocess.run([str(exe), *args], cwd=DRIVER, capture_output=True, text=True, timeout=280, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{' '.join(map(str, result.args))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


# ----------------------------------------------------------------------------- cargo, for real


@pytest.mark.cargo
def test_lockfile_is_consistent_and_pins_the_article_versions() -> None:
    meta = json.loads(ok(cargo("metadata", "--locked", "--format-version", "1", "--manifest-path", str(DRIVER / "Cargo.toml"))).stdout)
    versions: dict[str, set[str]] = {}
    for package in meta["packages"]:
        versions.setdefault(package["name"], set()).add(package["version"])
    for name, version in ARTICLE_VERSIONS.items():
        # One version each: a second wdk-build (as a fresh resolve gives today) must not sneak in.
        assert versions.get(name) == {version}, f"{name}: locked {versions.get(name)}, article says {version}"
    root = next(p for p in meta["packages"] if p["name"] == "WazabiEDR_Driver")
    assert root["targets"][0]["crate_types"] == ["cdylib"]
    assert meta["resolve"]["root"] == root["id"]


@pytest.mark.cargo
def test_rustfmt_is_clean() -> None:
    if cargo("fmt", "--version").returncode != 0:
        need(False, "rustfmt is not installed (rustup component add rustfmt)")
    ok(cargo("fmt", "--all", "--", "--check"))


@pytest.mark.cargo
def test_wdk_free_core_unit_tests_pass() -> None:
    result = ok(cargo("test", "--locked", "-p", "wazabi-core"))
    assert re.search(r"test result: ok\. [1-9]\d* passed", result.stdout), result.stdout


@pytest.mark.cargo
@pytest.mark.parametrize("crate", ["wdk", "wdk-sys", "wdk-alloc", "wdk-panic"])
def test_the_linux_routes_kernel_crates_are_rustfmt_clean(crate: str) -> None:
    """The hand-written parts (the generated files are include!d, which rustfmt does not follow)."""
    exe = need_tool("cargo")
    folder = DRIVER.parent / "src" / "driverpipe" / "kernel" / crate
    done = subprocess.run([str(exe), "fmt", "--all", "--", "--check"], cwd=folder, capture_output=True, text=True, timeout=120, check=False)
    ok(done)


# ----------------------------------------------------------------------------- manifest and config text


def test_manifest_is_the_articles() -> None:
    manifest = tomllib.loads((DRIVER / "Cargo.toml").read_text(encoding="utf-8"))
    assert manifest["package"]["name"] == "WazabiEDR_Driver"
    assert manifest["package"]["edition"] == "2024"
    for name, version in ARTICLE_VERSIONS.items():
        table = "build-dependencies" if name == "wdk-build" else "dependencies"
        assert manifest[table][name] == version
    assert manifest["lib"]["crate-type"] == ["cdylib"]
    assert manifest["package"]["metadata"]["wdk"]["driver-model"] == {
        "driver-type": "KMDF",
        "kmdf-version-major": 1,
        "target-kmdf-version-minor": 33,
    }
    assert manifest["profile"]["dev"]["panic"] == "abort"
    assert manifest["profile"]["release"]["panic"] == "abort"
    assert manifest["features"]["default"] == []
    assert "fault-injection" in manifest["features"]


def test_build_script_crt_static_and_gitignore() -> None:
    assert "wdk_build::configure_wdk_binary_build()" in (DRIVER / "build.rs").read_text(encoding="utf-8")
    config = tomllib.loads((DRIVER / ".cargo" / "config.toml").read_text(encoding="utf-8"))
    assert "target-feature=+crt-static" in config["build"]["rustflags"]
    assert "/target/" in (DRIVER / ".gitignore").read_text(encoding="utf-8").split()


# ----------------------------------------------------------------------------- source structure (text checks)


def code(text: str) -> str:
    """Rust source without // comments (no string literal in these files contains //)."""
    return re.sub(r"//[^\n]*", "", text)


def function_body(text: str, signature: str) -> str:
    """The text between the braces of the first function whose header contains `signature`."""
    start = text.index(signature)
    open_at = text.index("{", text.index(")", start))
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1 : i]
    raise AssertionError(f"unbalanced braces after {signature}")


def statements(body: str) -> list[str]:
    """Top-level statements, looking through one leading `unsafe {` block."""
    stripped = body.strip()
    if stripped.startswith("unsafe {"):
        stripped = stripped[len("unsafe {") :]
    return [s.strip() for s in stripped.split(";") if s.strip()]


def in_order(text: str, *needles: str) -> bool:
    at = -1
    for needle in needles:
        at = text.find(needle, at + 1)
        if at < 0:
            return False
    return True


@pytest.fixture(scope="module")
def lib() -> str:
    return LIB.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def entry(lib: str) -> str:
    return code(function_body(lib, "fn driver_entry("))


@pytest.fixture(scope="module")
def unload(lib: str) -> str:
    return function_body(lib, "fn driver_unload(")


def test_no_std_and_the_three_test_gates(lib: str) -> None:
    assert "#![no_std]" in lib
    for gated in ("extern crate wdk_panic;", "use wdk_alloc::WdkAllocator;", "#[global_allocator]"):
        assert re.search(r"#\[cfg\(not\(test\)\)\]\s*" + re.escape(gated), lib), f"{gated} is not behind #[cfg(not(test))]"


def test_entry_point_signature(lib: str) -> None:
    assert re.search(
        r'#\[unsafe\(export_name = "DriverEntry"\)\]\s*pub unsafe extern "system" fn driver_entry\(\s*'
        r"driver: PDRIVER_OBJECT,\s*_registry_path: PCUNICODE_STRING,?\s*\) -> NTSTATUS",
        lib,
    )


def test_driver_unload_is_wired_first(entry: str) -> None:
    assert statements(entry)[0] == "(*driver).DriverUnload = Some(driver_unload)"


def test_every_irp_slot_defaults_before_the_four_overrides(entry: str) -> None:
    loop = re.search(r"for i in 0\.\.=IRP_MJ_MAXIMUM_FUNCTION as usize \{\s*\*mj\.add\(i\) = Some\(dispatch_invalid\);\s*\}", entry)
    assert loop, "MajorFunction loop over 0..=IRP_MJ_MAXIMUM_FUNCTION setting dispatch_invalid"
    overrides = [
        "*mj.add(IRP_MJ_CREATE as usize) = Some(dispatch_create_close)",
        "*mj.add(IRP_MJ_CLOSE as usize) = Some(dispatch_create_close)",
        "*mj.add(IRP_MJ_CLEANUP as usize) = Some(dispatch_cleanup)",
        "*mj.add(IRP_MJ_DEVICE_CONTROL as usize) = Some(dispatch_device_control)",
    ]
    for line in overrides:
        assert entry.find(line) > loop.end(), f"{line} must follow the default loop"
    assert entry.index("dispatch_invalid") < entry.index("IoCreateDevice(")


def test_unwind_ladder(entry: str) -> None:
    # One failure branch per step, in step order, each printing that step's line;
    # the later one deletes the device the earlier step created.
    failures = [m.start() for m in re.finditer(r"if !nt_success\(status\) \{", entry)]
    assert len(failures) == 2
    first = entry[failures[0] : failures[1]]
    second = entry[failures[1] :]
    assert "print_failure(Step::IoCreateDevice, status)" in first
    assert "IoDeleteDevice" not in first.split("return status")[0]
    assert in_order(second, "print_failure(Step::IoCreateSymbolicLink, status)", "IoDeleteDevice(device)", "return status")
    assert entry.index("IoCreateDevice(") < failures[0] < entry.index("IoCreateSymbolicLink(") < failures[1]
    # Faults are injected in place of the real call, never next to it.
    assert "faults.inject(Step::IoCreateDevice)" in entry and "faults.inject(Step::IoCreateSymbolicLink)" in entry


def test_device_published_only_after_both_steps(entry: str) -> None:
    assert in_order(
        entry,
        "IoCreateSymbolicLink(",
        "(*device).Flags |= DO_BUFFERED_IO",
        "CONTROL_DEVICE.store(device, Ordering::Release)",
        "print(messages::READY)",
        "STATUS_SUCCESS",
    )
    assert entry.count("print(messages::READY)") == 1


def test_unload_order_and_swap(unload: str) -> None:
    assert in_order(
        unload,
        "print(messages::DRIVER_UNLOAD_CALLED)",
        "// callbacks deregistration — Part 2",
        "// pending IRP cancellation, queue drain — Part 4",
        "IoDeleteSymbolicLink(",
        "CONTROL_DEVICE.swap(ptr::null_mut(), Ordering::AcqRel)",
        "IoDeleteDevice(dev)",
        "print(messages::UNLOADED)",
    )
    assert "CONTROL_DEVICE.load" not in unload


def test_dispatch_routines_complete_each_irp(lib: str) -> None:
    dispatch = code((DRIVER / "src" / "ipc" / "dispatch.rs").read_text(encoding="utf-8"))
    helper = function_body(dispatch, "unsafe fn complete(")
    assert in_order(helper, "IoStatus.__bindgen_anon_1.Status = status", "IoStatus.Information = 0", "IofCompleteRequest(irp")
    for name, status in (
        ("dispatch_invalid", "STATUS_INVALID_DEVICE_REQUEST"),
        ("dispatch_create_close", "STATUS_SUCCESS"),
        ("dispatch_cleanup", "STATUS_SUCCESS"),
        ("dispatch_device_control", "STATUS_INVALID_DEVICE_REQUEST"),
    ):
        assert f"complete(irp, {status})" in function_body(dispatch, f'pub unsafe extern "C" fn {name}(')


def test_state_is_ready_for_part_2() -> None:
    state = (DRIVER / "src" / "state.rs").read_text(encoding="utf-8")
    assert "pub static CONTROL_DEVICE: AtomicPtr<DEVICE_OBJECT>" in state
    assert len(re.findall(r"pub static \w+_REGISTERED: AtomicBool = AtomicBool::new\(false\);", state)) == 5


# ----------------------------------------------------------------------------- DbgPrint texts vs the pipeline


def c_literals(path: Path) -> dict[str, str]:
    """`NAME: &CStr = c"..."` constants and match-arm c"..." literals, unescaped, keyed by text."""
    text = path.read_text(encoding="utf-8")
    found = {}
    for raw in re.findall(r'c"((?:[^"\\]|\\.)*)"', text):
        value = raw.encode().decode("unicode_escape")
        found[value] = raw
    return found


def rendered(fmt: str, *args: int) -> str:
    out = fmt.replace("%08X", "{:08X}").replace("%u", "{}")
    return out.format(*args).removesuffix("\n")


def test_dbgprint_texts_match_the_pipeline_expectations() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["driverpipe"]
    core = DRIVER / "core" / "src"
    lines = {**c_literals(core / "messages.rs"), **c_literals(core / "steps.rs")}
    assert all(text.endswith("\n") for text in lines), "every line ends with a newline (DebugView line break)"
    plain = {rendered(t) for t in lines if "%" not in t}
    assert {
        "[WazabiEDR] DriverEntry called",
        r"[WazabiEDR] ready (device \Device\WazabiEDR, symlink \DosDevices\WazabiEDR)",
        "[WazabiEDR] DriverUnload called",
        "[WazabiEDR] unloaded",
    } <= plain

    load = config["expect"]["load"]["sequence"]
    assert load[0] in plain
    ready = re.compile(load[1].removeprefix("re:"))
    assert any(ready.match(line) for line in plain)
    assert all(line in plain for line in config["expect"]["unload"]["sequence"])

    steps = config["regress"]["fault_steps"]
    assert steps == ["IoCreateDevice", "IoCreateSymbolicLink"]
    failed_pattern = config["expect"]["failed_load"]["sequence"][1].removeprefix("re:")
    formats = [t for t in lines if "%" in t]
    for number, step in enumerate(steps, start=1):
        failed = rendered(f"[WazabiEDR] {step} failed (status 0x%08X)\n", 0xC0000001)
        assert f"[WazabiEDR] {step} failed (status 0x%08X)\n" in formats
        assert re.match(failed_pattern.format(step=step), failed)
        assert failed == f"[WazabiEDR] {step} failed (status 0xC0000001)"
        injected = f"[WazabiEDR] fault injection: failing step %u ({step})\n"
        assert injected in formats
        assert rendered(injected, number) == f"[WazabiEDR] fault injection: failing step {number} ({step})"
