"""The live capture flow through the fake guest: install, start before sc start, tail, verdicts, stop, pull.

Virtual time: Capture gets `sleep=advance(machine, dt)` and the fake's clock, so slow
logs and timeouts run instantly and deterministically (no timing in assertions).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import ConfigError
from driverpipe.core.scripts import script_path
from driverpipe.parse.psgrammar import check_bound_params
from driverpipe.targets.capture import Capture
from driverpipe.transports.base import GuestScriptError
from fakes.capture_handlers import advance, state
from fakes.guest import FakeGuest, FakeService, FakeWindows

DBGVIEW = "C:\\Tools\\Dbgview.exe"
IMAGE = "C:\\WazabiEDR\\WazabiEDR.sys"
EXE = b"MZ fake Dbgview.exe"


def make_ctx(project: Path, *, dry: bool = False, extra: str = "") -> tuple[RunContext, list[str]]:
    if extra:
        pyproject = project / "pyproject.toml"
        pyproject.write_text(pyproject.read_text(encoding="utf-8") + "\n" + extra, encoding="utf-8")
    out: list[str] = []
    return RunContext(config=load(project), dry=dry, echo=out.append, progress=out.append), out


@pytest.fixture
def machine() -> FakeWindows:
    m = FakeWindows.prepared()
    m.files[IMAGE] = b"MZ driver"
    m.services["WazabiEDR"] = FakeService(name="WazabiEDR", binpath=IMAGE)
    return m


class Recorder(FakeGuest):
    """FakeGuest that records every read_range (offset, bytes returned)."""

    def __init__(self, machine: FakeWindows) -> None:
        super().__init__(machine)
        self.reads: list[tuple[int, int]] = []

    def read_range(self, remote: str, offset: int, max_bytes: int) -> bytes:
        data = super().read_range(remote, offset, max_bytes)
        self.reads.append((offset, len(data)))
        return data


def capture(ctx: RunContext, guest: FakeGuest, run_id: str = "run1") -> Capture:
    m = guest.machine
    return Capture(ctx, guest, run_id, sleep=lambda s: advance(m, s), clock=lambda: state(m).now)


def start(guest: FakeGuest, cap: Capture, *, with_install: bool = True) -> list[Any]:
    items = [*(cap.ensure_items() if with_install else []), *cap.start_items()]
    return guest.run_batch(items)


def test_clean_load_passes_and_the_log_is_pulled(project: Path, machine: FakeWindows, tmp_path: Path) -> None:
    machine.files[DBGVIEW] = EXE
    ctx, _ = make_ctx(project)
    guest = Recorder(machine)
    cap = capture(ctx, guest)
    installed, started = start(guest, cap)
    assert installed["action"] == "present"
    assert started["arguments"] == f'/accepteula /t /k /v /om /f /l "{cap.remote_log}" /m 64'
    assert cap.task_name == "driverpipe-dbgview-run1" and cap.remote_log == "C:\\WazabiEDR\\dbgview\\run1.log"
    assert machine.sc("start", "WazabiEDR")[0] == 0
    trips = guest.round_trips
    verdict = cap.wait_for("load")
    assert verdict.status == "pass", verdict.message
    assert verdict.captures["detail"].startswith("device \\Device\\WazabiEDR")
    assert guest.round_trips - trips == 1  # the lines were there: one read, no status query
    saved = cap.save(tmp_path / "saved")  # what the tail read, kept without another round trip
    assert saved is not None and saved.read_bytes() == machine.files[cap.remote_log]
    assert guest.round_trips - trips == 1
    stopped = guest.run_batch(cap.stop_items())[0]
    assert stopped["task_removed"] and stopped["log_size"] > 0 and state(machine).tasks == {}
    local = cap.pull(tmp_path / "art")
    assert local.read_bytes() == machine.files[cap.remote_log]
    assert b"[WazabiEDR] DriverEntry called\r\n" in local.read_bytes()


def test_polls_read_only_new_bytes(project: Path, machine: FakeWindows) -> None:
    machine.files[DBGVIEW] = EXE
    machine.capture_delay = 1.2  # type: ignore[attr-defined]
    ctx, _ = make_ctx(project)
    guest = Recorder(machine)
    cap = capture(ctx, guest)
    start(guest, cap)
    for i in range(40):
        machine.kernel_print(f"[Other] chatter {i}")
    machine.sc("start", "WazabiEDR")
    verdict = cap.wait_for("load")
    assert verdict.passed
    offsets = [off for off, _ in guest.reads]
    assert offsets == sorted(offsets)
    assert sum(n for _, n in guest.reads) == len(machine.files[cap.remote_log]) == cap.tail.bytes_read
    assert len(guest.reads) >= 3  # several polls before the delayed lines arrived
    assert verdict.waited_s is not None and 1.2 <= verdict.waited_s <= 1.2 + cap.poll_interval


def test_slow_log_beyond_timeout_explains_the_empty_log(project: Path, machine: FakeWindows) -> None:
    machine.files[DBGVIEW] = EXE
    machine.capture_delay = 100.0  # type: ignore[attr-defined]
    ctx, _ = make_ctx(project)
    guest = FakeGuest(machine)
    cap = capture(ctx, guest)
    start(guest, cap)
    machine.sc("start", "WazabiEDR")
    verdict = cap.wait_for("load", timeout=3)
    assert verdict.status == "empty-log" and verdict.waited_s == pytest.approx(3.0)


def test_empty_log_while_driver_loaded_says_so(project: Path, machine: FakeWindows) -> None:
    machine.files[DBGVIEW] = EXE
    machine.capture_works = False  # type: ignore[attr-defined]
    ctx, _ = make_ctx(project)
    guest = FakeGuest(machine)
    cap = capture(ctx, guest)
    start(guest, cap)
    machine.sc("start", "WazabiEDR")
    verdict = cap.wait_for("load")
    assert verdict.status == "empty-log" and not verdict.passed
    assert "stayed empty for 30 s although service WazabiEDR is RUNNING (the driver loaded)" in verdict.message
    assert "kernel capture is not working in this session type" in verdict.message
    assert "Debug Print Filter is not active until reboot (Debug Print Filter DEFAULT=0xf)" in verdict.message
    assert "sequence" not in verdict.message and "missing entry" not in verdict.message


def test_capture_started_after_sc_start_misses_the_lines(project: Path, machine: FakeWindows) -> None:
    machine.files[DBGVIEW] = EXE
    ctx, _ = make_ctx(project)
    guest = FakeGuest(machine)
    machine.sc("start", "WazabiEDR")
    cap = capture(ctx, guest)
    start(guest, cap)
    assert cap.wait_for("load", timeout=1).status == "empty-log"


def test_driver_that_did_not_load(project: Path, machine: FakeWindows) -> None:
    machine.files[DBGVIEW] = EXE
    machine.bcd_active["testsigning"] = "No"
    ctx, _ = make_ctx(project)
    guest = FakeGuest(machine)
    cap = capture(ctx, guest)
    start(guest, cap)
    assert machine.sc("start", "WazabiEDR")[0] == 577
    verdict = cap.wait_for("load", timeout=1)
    assert verdict.status == "empty-log" and "service WazabiEDR is STOPPED: the driver did not load" in verdict.message


def test_fault_injection_and_successive_phases(project: Path, machine: FakeWindows) -> None:
    machine.files[DBGVIEW] = EXE
    ctx, _ = make_ctx(project)
    guest = FakeGuest(machine)
    cap = capture(ctx, guest)
    start(guest, cap)
    machine.reg_set(machine.params_key(), "FailAtStep", 2)
    assert machine.sc("start", "WazabiEDR")[0] == 31
    failed = cap.wait_for("failed_load", step="2")
    assert failed.passed and failed.captures["step"] == "IoCreateSymbolicLink"
    machine.reg_set(machine.params_key(), "FailAtStep", 0)
    assert machine.sc("start", "WazabiEDR")[0] == 0
    loaded = cap.wait_for("load")  # this window starts after the failed load's lines
    assert loaded.passed, loaded.message
    assert loaded.entries[0].line is not None and loaded.entries[0].line.seq == 4
    assert machine.sc("stop", "WazabiEDR")[0] == 0
    unloaded = cap.wait_for("unload")
    assert unloaded.passed and [ln.message for ln in unloaded.lines][-1] == "[WazabiEDR] unloaded"
    quiet = cap.wait_for("unload", timeout=1)
    assert quiet.status == "fail" and "no new DebugView lines" in quiet.message


def test_load_with_a_failed_step_is_a_forbidden_line(project: Path, machine: FakeWindows) -> None:
    machine.files[DBGVIEW] = EXE
    ctx, _ = make_ctx(project)
    guest = FakeGuest(machine)
    cap = capture(ctx, guest)
    start(guest, cap)
    machine.reg_set(machine.params_key(), "FailAtStep", 1)
    machine.sc("start", "WazabiEDR")
    verdict = cap.wait_for("load")
    assert verdict.status == "fail" and verdict.forbidden is not None
    assert verdict.forbidden.line.message == "[WazabiEDR] IoCreateDevice failed (status 0xC0000001)"
    assert verdict.waited_s == 0.0  # decided on the first poll, not at the timeout


def test_one_capture_at_a_time(project: Path, machine: FakeWindows) -> None:
    machine.files[DBGVIEW] = EXE
    ctx, _ = make_ctx(project)
    guest = FakeGuest(machine)
    first = capture(ctx, guest, "a")
    start(guest, first)
    second = capture(ctx, guest, "b")
    assert start(guest, second, with_install=False)[0]["stale_removed"] == 1
    assert list(state(machine).tasks) == ["driverpipe-dbgview-b"]
    # Stopping is idempotent.
    guest.run_batch(second.stop_items())
    assert guest.run_batch(second.stop_items())[0]["task_removed"] is False


def test_dbgview_missing_without_source(project: Path, machine: FakeWindows) -> None:
    ctx, _ = make_ctx(project)
    guest = FakeGuest(machine)
    with pytest.raises(GuestScriptError, match=r"set debugview\.source"):
        start(guest, capture(ctx, guest))


def test_install_from_url_checks_the_checksum(project: Path, machine: FakeWindows) -> None:
    url = "https://download.example/DebugView.zip"
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as zf:
        zf.writestr("Dbgview.exe", EXE)
        zf.writestr("Eula.txt", "eula")
    machine.web = {url: blob.getvalue()}  # type: ignore[attr-defined]
    good = hashlib.sha256(blob.getvalue()).hexdigest()
    ctx, _ = make_ctx(project, extra=f'[tool.driverpipe.debugview]\nsource = "{url}"\nsha256 = "{good}"\n')
    guest = FakeGuest(machine)
    installed = guest.run_batch(capture(ctx, guest).ensure_items())[0]
    assert installed["action"] == "downloaded" and machine.files[DBGVIEW] == EXE
    assert guest.run_batch(capture(ctx, guest).ensure_items())[0]["action"] == "present"
    assert state(machine).downloads == [url]

    del machine.files[DBGVIEW]
    machine.web = {url: b"tampered"}  # type: ignore[attr-defined]
    with pytest.raises(GuestScriptError, match="expected " + good):
        guest.run_batch(capture(ctx, guest).ensure_items())
    assert DBGVIEW not in machine.files


def test_install_from_a_local_exe_is_pushed(project: Path, machine: FakeWindows) -> None:
    (project / "tools").mkdir()
    (project / "tools" / "Dbgview.exe").write_bytes(EXE)
    ctx, _ = make_ctx(project, extra='[tool.driverpipe.debugview]\nsource = "tools/Dbgview.exe"\n')
    guest = FakeGuest(machine)
    cap = capture(ctx, guest)
    items = cap.ensure_items()
    assert machine.files[DBGVIEW] == EXE
    assert items == [("Install-DebugView.ps1", {"Path": DBGVIEW, "Sha256": hashlib.sha256(EXE).hexdigest()})]
    assert guest.run_batch(items)[0]["action"] == "present"


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ('source = "http://x.example/Dbgview.exe"\nsha256 = "' + "a" * 64 + '"', "plain http"),
        ('source = "https://x.example/Dbgview.exe"', "sha256 is empty"),
        ('source = "missing/Dbgview.exe"', "no such file"),
        ('sha256 = "xyz"', "not a SHA-256"),
    ],
)
def test_bad_debugview_config(project: Path, machine: FakeWindows, extra: str, match: str) -> None:
    ctx, _ = make_ctx(project, extra="[tool.driverpipe.debugview]\n" + extra + "\n")
    with pytest.raises(ConfigError, match=match):
        capture(ctx, FakeGuest(machine)).ensure_items()


def test_run_id_must_be_a_simple_name(project: Path, machine: FakeWindows) -> None:
    ctx, _ = make_ctx(project)
    with pytest.raises(ConfigError, match="run id"):
        Capture(ctx, FakeGuest(machine), "a b;c")


def test_dry_capture_runs_nothing(project: Path, machine: FakeWindows) -> None:
    (project / "Dbgview.exe").write_bytes(EXE)
    ctx, out = make_ctx(project, dry=True, extra='[tool.driverpipe.debugview]\nsource = "Dbgview.exe"\n')
    guest = FakeGuest(machine)
    cap = capture(ctx, guest)
    cap.ensure_items()
    verdict = cap.wait_for("load")
    cap.pull(project / "art")
    assert guest.round_trips == 0 and DBGVIEW not in machine.files
    assert verdict.status == "pending" and any("[dry] push" in line for line in out)


def test_every_item_binds_declared_parameters(project: Path, machine: FakeWindows) -> None:
    """The bound parameters of every batch item are ones the real script declares (tree-sitter-powershell)."""
    (project / "DebugView.zip").write_bytes(b"PK zip")
    ctx, _ = make_ctx(project, dry=True, extra='[tool.driverpipe.debugview]\nsource = "DebugView.zip"\n')
    cap = capture(ctx, FakeGuest(machine))
    items = [*cap.ensure_items(), *cap.start_items(), *cap.stop_items(), *cap.status_items()]
    assert [name for name, _ in items] == ["Install-DebugView.ps1", "Start-DbgCapture.ps1", "Stop-DbgCapture.ps1", "Get-DbgCaptureStatus.ps1"]
    assert items[0][1]["Archive"] == "C:\\Tools\\DebugView.zip"
    for name, params in items:
        assert check_bound_params(script_path(name), params) == []


def test_a_transport_failure_while_reading_the_log_is_an_environment_error_not_an_empty_log(project: Path, machine: FakeWindows) -> None:
    from driverpipe.core.errors import EnvironmentProblem
    from driverpipe.transports.errors import GuestTimeout

    machine.files[DBGVIEW] = EXE

    class Dropping(Recorder):
        def read_range(self, remote: str, offset: int, max_bytes: int) -> bytes:
            raise GuestTimeout("Read-FileRange.ps1 did not finish within 30 s on fake; stopped")

    ctx, _ = make_ctx(project)
    guest = Dropping(machine)
    cap = capture(ctx, guest)
    start(guest, cap)
    machine.sc("start", "WazabiEDR")
    with pytest.raises(EnvironmentProblem, match=r"reading the DebugView log .* failed: Read-FileRange\.ps1 did not finish"):
        cap.wait_for("load")
