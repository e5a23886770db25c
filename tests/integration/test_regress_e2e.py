"""`invoke regress` end to end: the fake guest (Windows' rules) plus a REAL QEMU VM host.

The QEMU VM is an OS-less boot sector (tests/qemu_guest.py): the VM operations
(start, save the clean state, revert, stop) are real; the Windows side is the
fake guest. Scenarios: a clean pass, a bugcheck mid-cycle, a leaking unwind, Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import need_tool
from driverpipe.checks import regress
from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import ExitCode
from driverpipe.vmhosts.base import VmState
from driverpipe.vmhosts.factory import open_vm_host
from fakes.guest import FakeGuest, FakeWindows
from fakes.package import StubPackage
from qemu_guest import IDLE, make_base_image

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(240)]

DBGVIEW = "C:\\Tools\\Dbgview.exe"


Pkg = StubPackage


@pytest.fixture
def lab(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    need_tool("qemu-system-x86_64")
    need_tool("qemu-img")
    base = make_base_image(project, IDLE)
    # The suite is the project's own tests/vm, as `invoke regress` finds it in a checkout.
    (project / "tests").mkdir()
    (project / "tests" / "vm").symlink_to(Path(__file__).resolve().parents[1] / "vm", target_is_directory=True)
    (project / "user-config.toml").write_text(
        textwrap.dedent(
            f"""
            [targets.lab]
            transport = "local"
            test_machine = true
            vm_host = "q"
            vm_name = "regress"
            clean_state = "clean"
            [vm_hosts.q]
            kind = "qemu"
            accel = "tcg"
            memory_mb = 32
            cpus = 1
            base_image = "{base}"
            state_dir = "{project / "s"}"
            forward_winrm = 0
            """
        ),
        encoding="utf-8",
    )
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    # A signed package stands in: signing itself is tested with real osslsigncode elsewhere.
    pkg_dir = project / "pkg"
    pkg_dir.mkdir()
    files = []
    for suffix, data in ((".sys", b"MZ driver"), (".inf", b"[Version]\r\n"), (".cat", b"0\x82")):
        path = pkg_dir / f"WazabiEDR_Driver{suffix}"
        path.write_bytes(data)
        files.append(path)
    cert = pkg_dir / "test.cer"
    cert.write_bytes(b"0\x82 not a real cert")
    pkg = Pkg(pkg_dir, "WazabiEDR_Driver", files, cert)
    monkeypatch.setattr("driverpipe.signing.sign.check_signed_package", lambda ctx: pkg)
    monkeypatch.setattr(regress, "build_manifest_features", lambda ctx: ["fault-injection"])
    for where in ("steps", "operations"):
        monkeypatch.setattr(f"driverpipe.targets.{where}.cert_thumbprint", lambda path: ("AB" * 20, b""))

    # The OS-less guest ignores the ACPI power button: don't wait long for a graceful stop.
    monkeypatch.setenv("DRIVERPIPE_REGRESS_STOP_TIMEOUT", "1")
    machine = FakeWindows.prepared(cert_thumbprint="AB" * 20)
    machine.files[DBGVIEW] = b"MZ fake Dbgview.exe"
    out: list[str] = []
    ctx = RunContext(config=load(root=project), echo=out.append, progress=out.append)
    target = ctx.config.target("lab")
    host = open_vm_host(ctx, target)
    assert host is not None
    host.start()
    host.snapshot("clean")
    host.close()  # QEMU serves one QMP client at a time: the run's own host object takes over
    hosts = [host]

    def vm_factory() -> Any:
        h = open_vm_host(ctx, target)
        hosts.append(h)
        return h

    yield {"ctx": ctx, "machine": machine, "out": out, "vm_factory": vm_factory, "host": host, "project": project}
    for h in hosts:
        h.close()
    inst = host._instance()
    if inst and isinstance(inst.get("pid"), int) and host._alive(inst)[0]:
        os.kill(inst["pid"], signal.SIGKILL)


def run_regress(lab: dict[str, Any], guest_factory: Any = None, **kw: Any) -> tuple[int, dict[str, Any], Path]:
    report_dir = lab["project"] / "report"
    machine = lab["machine"]
    code = regress.run(
        lab["ctx"],
        target="lab",
        report_dir=report_dir,
        guest_factory=guest_factory or (lambda: FakeGuest(machine, "lab")),
        vm_factory=lab["vm_factory"],
        **kw,
    )
    data = json.loads((report_dir / "regress.json").read_text(encoding="utf-8"))
    return code, data, report_dir


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["status"] for p in data["phases"]}


def test_clean_pass(lab: dict[str, Any]) -> None:
    code, data, report_dir = run_regress(lab)
    assert code == ExitCode.OK, (statuses(data), lab["out"][-20:])
    st = statuses(data)
    assert st["test_revert_to_clean_state"] == "pass"
    assert st["test_deploy_and_smoke_test"] == "pass"
    assert st["test_load_unload_cycles"] == "pass"
    assert st["test_fault_injection[IoCreateDevice]"] == "pass"
    assert st["test_fault_injection[IoCreateSymbolicLink]"] == "pass"
    assert st["test_driver_verifier"] == "skipped"
    # 10 cycles + fault sweep: the machine saw every load and unload.
    assert lab["machine"].debug_output.count("[WazabiEDR] DriverUnload called") >= 10
    junit = ET.parse(report_dir / "regress.junit.xml").getroot()
    assert junit.iter("testcase")
    html = (report_dir / "regress.html").read_text(encoding="utf-8")
    assert "DriverEntry called" in html
    assert lab["host"].status().state == VmState.STOPPED, "the VM must be left stopped"


def test_bugcheck_mid_cycle_is_reported_with_code_and_dumps(lab: dict[str, Any]) -> None:
    machine = lab["machine"]
    loads = []

    def crash_on_fourth_load(line: str) -> None:
        if line.endswith("DriverEntry called"):
            loads.append(line)
            if len(loads) == 3:
                machine.crash_on_load = True  # the next sc start bugchecks

    machine.debug_listeners.append(crash_on_fourth_load)
    code, data, report_dir = run_regress(lab)
    assert code == ExitCode.CHECK_FAILED
    cycles = next(p for p in data["phases"] if p["name"] == "test_load_unload_cycles")
    assert cycles["status"] == "fail"
    assert cycles["bugcheck"]["code"] == "0x0000009f"
    assert len(cycles["bugcheck"]["params"]) == 4
    dumps = cycles["bugcheck"]["dump_files"]
    assert dumps and all((report_dir / d).is_file() for d in dumps)
    later = [p for p in data["phases"] if p["name"].startswith("test_fault_injection")]
    assert later and all(p["status"] == "skipped" for p in later), "phases after a bugcheck are not run"
    assert lab["host"].status().state == VmState.STOPPED


def test_leaking_unwind_is_reported_as_an_unwind_bug(lab: dict[str, Any]) -> None:
    lab["machine"].leaky_unwind = True
    code, data, _ = run_regress(lab)
    assert code == ExitCode.CHECK_FAILED
    # Failing step 1 leaves nothing to release; failing step 2 must delete the device from step 1.
    first = next(p for p in data["phases"] if p["name"] == "test_fault_injection[IoCreateDevice]")
    assert first["status"] == "pass"
    phase = next(p for p in data["phases"] if p["name"] == "test_fault_injection[IoCreateSymbolicLink]")
    assert phase["status"] == "fail"
    assert "unwind bug" in phase["message"] and "step 2 (IoCreateSymbolicLink)" in phase["message"]


def test_known_issue_is_reported_not_hidden(lab: dict[str, Any]) -> None:
    import tomlkit

    pyproject = lab["project"] / "pyproject.toml"
    doc = tomlkit.parse(pyproject.read_text(encoding="utf-8"))
    doc["tool"]["driverpipe"]["regress"]["known_issues"] = [{"id": "WEDR-7", "match": "unwind bug", "reason": "leaks the device name"}]
    pyproject.write_text(tomlkit.dumps(doc), encoding="utf-8")
    lab["ctx"].config = load(root=lab["project"])
    lab["machine"].leaky_unwind = True
    code, data, _ = run_regress(lab)
    phase = next(p for p in data["phases"] if p["name"] == "test_fault_injection[IoCreateSymbolicLink]")
    assert phase["status"] == "known-issue" and phase["known_issue_id"] == "WEDR-7"
    assert code == ExitCode.OK, "a known issue alone does not fail the run, but it is in the report"


def test_ctrl_c_leaves_the_vm_stopped(lab: dict[str, Any]) -> None:
    machine = lab["machine"]

    class InterruptingGuest(FakeGuest):
        def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
            if script == "Invoke-DriverUnload.ps1":
                raise KeyboardInterrupt
            return super().run_script(script, params, timeout=timeout)

    code, data, _ = run_regress(lab, guest_factory=lambda: InterruptingGuest(machine, "lab"))
    assert code == ExitCode.INTERRUPTED
    assert data["environment"]["interrupted"] is True
    assert lab["host"].status().state == VmState.STOPPED


def test_hang_forces_a_dump_through_a_real_nmi(lab: dict[str, Any]) -> None:
    from driverpipe.transports.errors import GuestTimeout

    machine = lab["machine"]
    hung = {"done": False}

    class HangingGuest(FakeGuest):
        def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
            if script == "Invoke-DriverUnload.ps1" and not hung["done"]:
                hung["done"] = True
                raise GuestTimeout(f"{script} did not finish within {timeout:g} s")
            return super().run_script(script, params, timeout=timeout)

    def vm_factory() -> Any:
        host = lab["vm_factory"]()
        real_nmi = host.inject_nmi

        def nmi() -> None:
            real_nmi()  # the real QMP inject-nmi on the running QEMU
            machine.bugcheck(0x80)  # what Windows does with NMICrashDump=1

        host.inject_nmi = nmi
        return host

    lab_with_nmi = dict(lab, vm_factory=vm_factory)
    code, data, report_dir = run_regress(lab_with_nmi, guest_factory=lambda: HangingGuest(machine, "lab"))
    assert code == ExitCode.CHECK_FAILED
    phase = next(p for p in data["phases"] if p["name"] == "test_load_unload_cycles")
    assert "NMI injected" in phase["message"]
    assert phase["bugcheck"]["code"] == "0x00000080"
    assert all((report_dir / d).is_file() for d in phase["bugcheck"]["dump_files"])
    assert lab["host"].status().state == VmState.STOPPED
