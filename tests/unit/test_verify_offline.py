"""`invoke verify --log FILE` (offline), its outputs (table, --json, GitHub Actions), `invoke verify`/`logs` on a fake target."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from driverpipe import commands
from driverpipe.checks import verify
from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import ConfigError, StepFailed

READY = "[WazabiEDR] ready (device \\Device\\WazabiEDR, symlink \\DosDevices\\WazabiEDR)"
ENTRY = "[WazabiEDR] DriverEntry called"
GOOD = f"[\\\\WIN11]\r\n00000001\t0.00000000\t[880] svchost noise\r\n00000002\t0.01000000\t{ENTRY}\r\n00000003\t0.01200000\t{READY}\r\n"
BAD = f"00000001\t0.00000000\t{ENTRY}\t\n00000002\t0.00100000\t[WazabiEDR] IoCreateDevice failed (status 0xC0000035)\t\n"


class Out:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.err: list[str] = []

    @property
    def text(self) -> str:
        return "\n".join(self.out)


def make_ctx(project: Path, dry: bool = False) -> tuple[RunContext, Out]:
    o = Out()
    return RunContext(config=load(project), dry=dry, echo=o.out.append, progress=o.err.append), o


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_offline_pass_prints_a_table(project: Path) -> None:
    ctx, o = make_ctx(project)
    rc = verify.run(ctx, target=None, log=write(project / "good.log", GOOD), phase="load", as_json=False, step=None)
    assert rc == 0
    assert o.text.startswith("load: PASS") and "DriverEntry called" in o.text and "0.01200000" in o.text


def test_offline_fail_and_json(project: Path) -> None:
    ctx, o = make_ctx(project)
    rc = verify.run(ctx, target=None, log=write(project / "bad.log", BAD), phase="load", as_json=True, step=None)
    assert rc == 1
    data = json.loads(o.text)  # stdout is exactly one JSON document
    assert data["status"] == "fail" and data["forbidden"]["index"] == 2
    assert data["forbidden"]["line"]["message"].startswith("[WazabiEDR] IoCreateDevice failed")
    assert data["source"].endswith("bad.log")


def test_github_summary_and_annotation(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = project / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    ctx, o = make_ctx(project)
    assert verify.run(ctx, target=None, log=write(project / "bad.log", BAD), phase="load", as_json=False, step=None) == 1
    annotation = [ln for ln in o.out if ln.startswith("::error ")]
    assert len(annotation) == 1 and annotation[0].startswith("::error title=DbgPrint verify (load)::load: FAIL: forbidden line 2")
    text = summary.read_text(encoding="utf-8")
    assert "### ❌ DbgPrint verdict: load (fail)" in text and "| # | expected |" in text
    # With --json the annotation goes to stderr so stdout stays one JSON document.
    ctx, o = make_ctx(project)
    verify.run(ctx, target=None, log=project / "bad.log", phase="load", as_json=True, step=None)
    json.loads(o.text)
    assert any(ln.startswith("::error ") for ln in o.err)
    assert text.count("DbgPrint verdict") == 1 and summary.read_text(encoding="utf-8").count("DbgPrint verdict") == 2


def test_annotation_escapes_newlines_and_percent() -> None:
    assert verify._gh_escape("50%\r\nx") == "50%25%0D%0Ax"
    assert verify._gh_escape("a:b,c", prop=True) == "a%3Ab%2Cc"


def test_bad_inputs_are_one_line_errors(project: Path) -> None:
    ctx, _ = make_ctx(project)
    with pytest.raises(ConfigError, match="file not found"):
        verify.run(ctx, target=None, log=project / "nope.log", phase="load", as_json=False, step=None)
    with pytest.raises(ConfigError, match="not a file"):
        verify.run(ctx, target=None, log=project, phase="load", as_json=False, step=None)
    with pytest.raises(ConfigError, match="unknown phase"):
        verify.run(ctx, target=None, log=write(project / "g.log", GOOD), phase="reload", as_json=False, step=None)
    with pytest.raises(ConfigError, match="no such fault step"):
        verify.run(ctx, target=None, log=project / "g.log", phase="failed_load", as_json=False, step="3")


def test_garbage_log_is_a_verdict_not_a_traceback(project: Path) -> None:
    ctx, o = make_ctx(project)
    blob = bytes(range(256)) * 400 + b"\r\n\x00\x00\xff"
    assert verify.run(ctx, target=None, log=write(project / "junk.bin", blob), phase="load", as_json=False, step=None) == 1
    assert "load: FAIL: missing entry 1/2" in o.text and "unreadable" in o.text


def test_numeric_step_names_the_fault_step(project: Path) -> None:
    log = write(project / "f.log", f"00000001\t0.1\t{ENTRY}\r\n00000002\t0.2\t[WazabiEDR] IoCreateSymbolicLink failed (status 0xC0000001)\r\n")
    ctx, _ = make_ctx(project)
    assert verify.run(ctx, target=None, log=log, phase="failed-load", as_json=False, step="2") == 0
    assert verify.run(ctx, target=None, log=log, phase="failed_load", as_json=False, step="1") == 1


def test_task_wiring_exit_codes(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(project / "good.log", GOOD)
    assert commands.verify(False, target=None, log=str(good), phase="load", as_json=False, step=None) == 0
    with pytest.raises(SystemExit) as failed:
        commands.verify(False, target=None, log=str(write(project / "bad.log", BAD)), phase="load", as_json=False, step=None)
    assert failed.value.code == 1
    with pytest.raises(SystemExit) as missing:
        commands.verify(True, target=None, log=str(project / "missing.log"), phase="load", as_json=False, step=None)
    assert missing.value.code == 2
    err = capsys.readouterr().err
    assert "error: --log" in err and "Traceback" not in err


def test_dry_still_checks_a_saved_log(project: Path) -> None:
    ctx, _ = make_ctx(project, dry=True)
    assert verify.run(ctx, target=None, log=write(project / "good.log", GOOD), phase="load", as_json=False, step=None) == 0


def _big_log(path: Path, size: int, tail_lines: list[str]) -> int:
    """A DebugView log of about `size` bytes of other drivers' chatter, then tail_lines. Returns the line count."""
    row = "%08d\t%.8f\t[4412] PeriodicTimer: heartbeat from another driver, queue depth 3, nothing to see here\t\r\n"
    n = 0
    with path.open("wb") as fh:
        written = 0
        while written < size:
            block = "".join(row % (n + i + 1, (n + i) * 0.0001) for i in range(10_000)).encode()
            fh.write(block)
            written += len(block)
            n += 10_000
        for i, msg in enumerate(tail_lines):
            fh.write(f"{n + i + 1:08d}\t{n * 0.0001:.8f}\t{msg}\t\r\n".encode())
    return n + len(tail_lines)


def test_fifty_megabyte_log(project: Path) -> None:
    path = project / "big.log"
    total = _big_log(path, 50 * 1024 * 1024, [ENTRY, READY, "[WazabiEDR] IoCreateDevice failed (status 0xC0000001)"])
    assert path.stat().st_size >= 50 * 1024 * 1024
    ctx, o = make_ctx(project)
    assert verify.run(ctx, target=None, log=path, phase="load", as_json=True, step=None) == 1
    data = json.loads(o.text)
    assert data["forbidden"]["index"] == total and data["total_lines"] == total
    assert data["entries"][1]["line"]["lineno"] == total - 1 and len(data["entries"]) == 2


# --------------------------------------------------------------------------- live verify / logs on a fake target

LOG_DIR = "C:\\WazabiEDR\\dbgview"


@pytest.fixture
def fake_target(project: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from fakes.guest import FakeGuest, FakeWindows

    (project / "user-config.toml").write_text('[targets.fake]\ntransport = "local"\n', encoding="utf-8")
    machine = FakeWindows.prepared()
    opened: list[Any] = []

    def open_guest(ctx: RunContext, target: Any) -> Any:
        guest = FakeGuest(machine, name=str(target.name))
        opened.append(guest)
        return guest

    module = types.ModuleType("driverpipe.transports.connect")
    module.open_guest = open_guest  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "driverpipe.transports.connect", module)
    return {"machine": machine, "opened": opened}


def test_live_verify_checks_the_newest_capture_log(project: Path, fake_target: dict[str, Any]) -> None:
    from fakes.capture_handlers import state

    m = fake_target["machine"]
    m.files[LOG_DIR + "\\old.log"] = BAD.encode()
    m.files[LOG_DIR + "\\new.log"] = GOOD.encode()
    state(m).mtime[(LOG_DIR + "\\new.log").lower()] = 5.0
    ctx, o = make_ctx(project)
    assert verify.run(ctx, target="fake", log=None, phase="load", as_json=False, step=None) == 0
    assert "load: PASS" in o.text
    assert fake_target["opened"][0].closed


def test_live_verify_without_any_capture(project: Path, fake_target: dict[str, Any]) -> None:
    ctx, _ = make_ctx(project)
    with pytest.raises(StepFailed, match="no DebugView capture log"):
        verify.run(ctx, target="fake", log=None, phase="load", as_json=False, step=None)


def test_live_verify_and_logs_dry_run_nothing(project: Path, fake_target: dict[str, Any]) -> None:
    ctx, o = make_ctx(project, dry=True)
    assert verify.run(ctx, target="fake", log=None, phase="load", as_json=False, step=None) == 0
    verify.pull_logs(ctx, target="fake", out=None)
    assert fake_target["opened"] == []
    assert "[dry] guest fake: Get-DbgCaptureStatus.ps1" in o.text and "[dry]   | [CmdletBinding()]" in o.text


def test_logs_pulls_capture_logs_and_minidumps(project: Path, fake_target: dict[str, Any]) -> None:
    m = fake_target["machine"]
    m.files[LOG_DIR + "\\run1.log"] = GOOD.encode()
    m.files["C:\\Windows\\Minidump\\112326-01.dmp"] = b"PAGEDU64"
    ctx, o = make_ctx(project)
    dest = verify.pull_logs(ctx, target="fake", out=None)
    assert dest == project / "artifacts" / "logs" / "fake"
    assert (dest / "run1.log").read_bytes() == GOOD.encode()
    assert (dest / "minidumps" / "112326-01.dmp").read_bytes() == b"PAGEDU64"
    assert not list(dest.rglob("*.part")) and "pulled 2 file(s)" in o.text
