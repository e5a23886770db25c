"""The repository's second driver, RustEcho (examples/rust-echo), for real on Linux and Wine.

Real: cargo + rust-lld against the generated bindings, osslsigncode, Wine 8
(setupapi installs the service from RustEcho's PnP INF, winedevice.exe runs
DriverEntry, the IOCTLs and DriverUnload), the Wine agent the pipeline ships
(built into the user's cache), Invoke in subprocesses.

Its device checks are the `[[tool.driverpipe.device_check]]` table of its
pyproject.toml, run by the Wine agent on one handle during deploy; every check
is listed by name with its verdict. Not applicable on Wine, never counted as passed: the process/thread/image notify
routines (Wine 8 registers them but never calls them) and the MDL self-test
(Wine's MmBuildMdlForNonPagedPool and MmMapLockedPagesSpecifyCache are stubs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_wine_target import _stop, wine_state_folder

from conftest import need, run_invoke

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "rust-echo"
WINE_NTOSKRNL = Path("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows/ntoskrnl.exe")
NOT_APPLICABLE_ON_WINE = {
    "process/thread/image notify": "Wine 8 registers the routines but never calls them (events seen: 0)",
    "MDL self-test": "Wine 8's MmBuildMdlForNonPagedPool and MmMapLockedPagesSpecifyCache are stubs",
}
pytestmark = [pytest.mark.wine, pytest.mark.wdm, pytest.mark.cargo, pytest.mark.osslsigncode]


def copy_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, beside: tuple[str, ...] = ()) -> Path:
    """A copy of examples/rust-echo with an empty user config; `beside`: repository folders copied next to it, as in a checkout."""
    ignore = shutil.ignore_patterns("target", "artifacts", "__pycache__")
    project = tmp_path / "rust-echo"
    shutil.copytree(EXAMPLE, project, ignore=ignore)
    for folder in beside:
        shutil.copytree(REPO / folder, project / folder, ignore=ignore)
    user = tmp_path / "user-config.toml"
    user.write_text("", encoding="utf-8")
    for var in list(os.environ):
        if var.startswith("DRIVERPIPE_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DRIVERPIPE_CONFIG", str(user))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return project


@pytest.fixture(scope="module")
def wine_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One Wine prefix for the module's tests, stopped at its end."""
    yield from wine_state_folder(tmp_path_factory, "echo-state")


@pytest.fixture
def echo(tmp_path: Path, wine_state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example with the regression suite beside it (regress looks for it in the project; the agent comes with the pipeline)."""
    project = copy_example(tmp_path, monkeypatch, beside=("tests/vm",))
    monkeypatch.setenv("XDG_STATE_HOME", str(wine_state))
    yield project
    for prefix in (wine_state / "driverpipe" / "wine").glob("*"):
        _stop(prefix)


def invoke(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DRIVERPIPE_PFX_PASSWORD="pfx-Secret-42")
    return run_invoke(cwd, *args, env=env, timeout=600)  # --search-root <repository>, from the project folder


def checks_table() -> list[dict]:
    return tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["driverpipe"]["device_check"]


def test_the_table_covers_buffered_and_direct_echo_length_checks_and_errors() -> None:
    table = checks_table()
    assert len({c["name"] for c in table}) == len(table) == 10
    methods = {c["ctl_code"]["method"] for c in table if "ctl_code" in c}
    assert {"buffered", "out_direct"} <= methods
    assert {122, 87, 1} <= {int(c.get("expect_error", 0)) for c in table}
    assert any("expect_output" in c and "expect_returned" in c for c in table)


def test_rust_echo_builds_from_its_own_manifest_and_imports_only_what_wine_exports(echo: Path) -> None:
    manifest = echo / "driver" / "Cargo.toml"
    before = manifest.read_bytes()
    done = invoke(echo, "build")
    assert done.returncode == 0, done.stdout + done.stderr
    assert manifest.read_bytes() == before, "the driver's own Cargo.toml is never edited"
    derived = (echo / "driver" / "target" / "driverpipe-wdm" / "Cargo.toml").read_text(encoding="utf-8")
    assert "wdk-build" not in derived and re.search(r"\[dependencies\.wdk-sys\]\npath = \".*kernel/wdk-sys\"", derived)
    data = json.loads((echo / "driver" / "target" / "release" / "driverpipe-build.json").read_text(encoding="utf-8"))
    from driverpipe.image.imagecheck import read_facts

    imports = set(read_facts(Path(data["artifact"])).imports["ntoskrnl.exe"])
    routines = imports - {"memcpy", "memset", "memmove", "memcmp"}
    declared = int(re.search(r"KERNEL_ROUTINES: u32 = (\d+)", (EXAMPLE / "driver" / "src" / "names.rs").read_text(encoding="utf-8")).group(1))
    assert len(routines) == declared >= 40
    need(WINE_NTOSKRNL.is_file(), "Wine 8's ntoskrnl.exe (apt-get install wine64)")
    import lief

    ntoskrnl = lief.PE.parse(str(WINE_NTOSKRNL))  # kept alive while its export entries are read
    exported = {e.name for e in ntoskrnl.get_export().entries}
    assert imports <= exported, f"imports Wine's ntoskrnl lacks: {sorted(imports - exported)}"
    wanted = {"PsSetCreateProcessNotifyRoutineEx", "PsRemoveLoadImageNotifyRoutine", "IoQueueWorkItem", "KeSetTimer", "ZwQueryValueKey", "ExFreePoolWithTag"}
    assert wanted <= imports


def test_rust_echo_deploys_on_wine_passes_its_device_checks_and_unloads_without_leaks(echo: Path, wine_state: Path) -> None:
    done = invoke(echo, "build", "sign", "deploy")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "package echodrv" in out, "the package is named after the INF's SourceDisksFiles binary, not the crate"
    assert "install RustEcho from echodrv.inf" in out and "wine: RustEcho is RUNNING" in out
    assert "load: PASS: 10/10 lines in order" in out
    prefix = wine_state / "driverpipe" / "wine" / "wine"

    table = checks_table()
    lines = [ln for ln in out.splitlines() if ln.startswith("wine: device check ")]
    print("\n".join(lines))
    for what, why in NOT_APPLICABLE_ON_WINE.items():
        print(f"{what}: not applicable on wine ({why})")
    assert [ln.split(":")[1].removeprefix(" device check ") for ln in lines] == [c["name"] for c in table], out[-4000:]
    assert all(": ok: " in ln for ln in lines), "\n".join(lines)
    assert "wine: smoke test ok: CreateFileW ok," in out and "CloseHandle -> 0" in out
    assert "wine: device check echo_buffered: ok: DeviceIoControl(0x00222004) -> 0, 11 bytes" in lines

    unload = invoke(echo, "unload")
    assert unload.returncode == 0, unload.stdout + unload.stderr
    assert "unload: PASS: 3/3 lines in order" in unload.stdout and "\\\\.\\RustEcho is gone" in unload.stdout
    log = (prefix / ".driverpipe" / "dbgprint.log").read_text(encoding="utf-8")
    assert "[RustEcho] notify routines removed (events seen: process 0, thread 0, image 0)" in log, "Wine never calls notify routines"
    assert "[RustEcho] unloaded (pool allocations outstanding: 0)" in log
    created = len(re.findall(r'trace:IoCreateDevice \(.*L"\\\\Device\\\\RustEcho"', log))
    deleted = len(re.findall(r"trace:IoDeleteDevice ", log))
    assert created >= 1 and deleted >= created, f"IoCreateDevice {created}x, IoDeleteDevice {deleted}x: a device leaked"


def test_rust_echo_regress_three_cycles_and_its_fault_sweep_on_wine(echo: Path) -> None:
    built = invoke(echo, "build", "--features", "fault-injection", "sign")
    assert built.returncode == 0, built.stderr
    done = invoke(echo, "regress", "--cycles", "3")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    report_dir = next((echo / "artifacts" / "regress").glob("wine-*"))
    data = json.loads((report_dir / "regress.json").read_text(encoding="utf-8"))
    status = {p["name"]: p["status"] for p in data["phases"]}
    steps = ["IoCreateDevice", "IoCreateSymbolicLink", "IoAllocateWorkItem", "PsSetLoadImageNotifyRoutine"]
    assert status == {
        "test_revert_to_clean_state": "pass",
        "test_deploy_and_smoke_test": "pass",
        "test_load_unload_cycles": "pass",
        **{f"test_fault_injection[{step}]": "pass" for step in steps},
        "test_driver_verifier": "skipped",
    }, status
    lines = [text for p in data["phases"] for _, text in p["dbgprint"]]
    assert lines.count("[RustEcho] DriverUnload called") >= 3
    assert lines.count("[RustEcho] unloaded (pool allocations outstanding: 0)") >= 3
    for number, step in enumerate(steps, 1):
        assert f"[RustEcho] fault injection: failing step {number} ({step})" in lines
        assert f"[RustEcho] {step} failed (status 0xC0000001)" in lines


def test_an_import_wine_lacks_is_listed_by_doctor_and_named_from_wines_loader_message(echo: Path, wine_state: Path) -> None:
    lib = echo / "driver" / "src" / "lib.rs"
    text = lib.read_text(encoding="utf-8")
    probe = (
        '    println!("[RustEcho] DriverEntry called");\n'
        "    // SAFETY: a registration Wine 8 does not implement (the test wants its loader message).\n"
        "    unsafe {\n"
        "        let mut cookie: wdk_sys::LARGE_INTEGER = core::mem::zeroed();\n"
        "        let _ = wdk_sys::ntddk::CmRegisterCallbackEx(None, ptr::null(), driver.cast(), ptr::null_mut(), &mut cookie, ptr::null_mut());\n"
        "    }\n"
    )
    lib.write_text(text.replace('    println!("[RustEcho] DriverEntry called");\n', probe, 1), encoding="utf-8")
    built = invoke(echo, "build", "sign")
    assert built.returncode == 0, built.stdout + built.stderr
    doctor = invoke(echo, "doctor", "--target", "wine")
    assert "image imports" in doctor.stdout and "does not export: CmRegisterCallbackEx" in doctor.stdout, doctor.stdout

    deploy = invoke(echo, "deploy")
    assert deploy.returncode != 0 and "Traceback" not in deploy.stderr, deploy.stdout + deploy.stderr
    errors = [ln for ln in deploy.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, deploy.stdout[-3000:] + deploy.stderr
    assert "the driver called CmRegisterCallbackEx, which Wine's ntoskrnl.exe does not export" in errors[0], errors[0]
