"""The Wine capture's record and log are shared by processes (a deploy, `invoke verify`/`logs`): two
real processes pumping one capture append each line once, a capture start is never overwritten by a
stale record; and start() ends only Wine processes the pipeline started (a real wineserver of the
user's own, beside a stale recorded pid, is refused and left alive)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import need_tool
from driverpipe.core.errors import EnvironmentProblem
from driverpipe.targets.wine.capture import Pump
from driverpipe.targets.wine.prefix import WinePrefix

LINES = 600


def _raw(i: int) -> str:
    return f"0{i % 10}2a:warn:debugstr:vDbgPrintExWithPrefix 00000000:00000001: [WazabiEDR] line {i}\n"


def _writer(prefix: str) -> None:
    raw = WinePrefix(Path(prefix)).raw_log
    for i in range(LINES):
        with raw.open("a", encoding="utf-8") as fh:
            fh.write(_raw(i))
        if i % 7 == 0:
            time.sleep(0.001)
    Path(prefix, "written").touch()


def _pumper(prefix: str) -> None:
    pump = Pump(WinePrefix(Path(prefix)))
    while True:
        done = Path(prefix, "written").exists()
        pump.pump()
        if done and pump.prefix.recorded("raw_offset") == pump.prefix.raw_log.stat().st_size:
            return


def _starter(prefix: str) -> None:
    p = WinePrefix(Path(prefix))
    for i in range(1, 200):
        p.record(capture_start=i, capture_run=f"run-{i}")


def test_two_processes_pumping_one_capture_append_each_line_once(tmp_path: Path) -> None:
    prefix = tmp_path / "pfx"
    WinePrefix(prefix).state_dir.mkdir(parents=True)
    WinePrefix(prefix).raw_log.write_bytes(b"")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=f, args=(str(prefix),)) for f in (_writer, _pumper, _pumper, _starter)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    log = WinePrefix(prefix).state_dir / "dbgprint.log"
    rows = [line.split("\t") for line in log.read_text(encoding="utf-8").splitlines()]
    texts = [row[2] for row in rows]
    assert len(texts) == LINES and len(set(texts)) == LINES, "every line once, none twice"
    assert [int(row[0]) for row in rows] == list(range(1, LINES + 1)), "sequence numbers in order, no gap, no repeat"
    record = json.loads((WinePrefix(prefix).state_dir / "run.json").read_text(encoding="utf-8"))
    assert record["capture_start"] == 199 and record["capture_run"] == "run-199", "no pump overwrote the newer capture start"


@pytest.mark.wine
def test_start_refuses_a_foreign_wineserver_beside_a_stale_recorded_pid(tmp_path: Path) -> None:
    need_tool("wineserver")
    prefix = WinePrefix(tmp_path / "pfx", say=lambda _s: None)
    prefix.path.mkdir()
    prefix.record(server_pid=2**22 + 7, run_token="left-by-an-earlier-run")  # a pid that cannot be alive
    env = {k: v for k, v in os.environ.items() if k != "DRIVERPIPE_WINE_RUN"}
    env["WINEPREFIX"] = str(prefix.path)
    subprocess.run(["wineserver", "-p"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=True)
    foreign = prefix._wait_for(prefix.server_pid, 10.0)
    assert foreign, "the user's own wineserver runs"
    try:
        with pytest.raises(EnvironmentProblem) as refused:
            prefix.start()
        message = refused.value.message
        assert f"Wine process {foreign} (wineserver" in message and "not started by driverpipe" in message and "\n" not in message
        assert Path(f"/proc/{foreign}").exists() and prefix.server_pid() == foreign, "the foreign process is alive"
        assert prefix.recorded("run_token") == "left-by-an-earlier-run", "nothing of ours was started or recorded"
    finally:
        try:
            os.kill(foreign, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_pump_killed_between_its_append_and_its_record_leaves_no_line_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or a kill right after the append to dbgprint.log, before the raw offset is recorded:
    the next pump cuts the log back to the recorded size and converts those lines once."""
    prefix = WinePrefix(tmp_path / "pfx")
    prefix.state_dir.mkdir(parents=True)
    prefix.raw_log.write_text("".join(_raw(i) for i in range(5)), encoding="utf-8")
    assert Pump(prefix).pump() == 5
    with prefix.raw_log.open("a", encoding="utf-8") as fh:
        fh.write("".join(_raw(i) for i in range(5, 9)))
    real_record = WinePrefix.record

    def interrupted(self: WinePrefix, **changes: object) -> object:
        if "raw_offset" in changes:
            raise KeyboardInterrupt  # the append is done, the offset not yet recorded
        return real_record(self, **changes)

    monkeypatch.setattr(WinePrefix, "record", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Pump(prefix).pump()
    monkeypatch.setattr(WinePrefix, "record", real_record)
    assert Pump(WinePrefix(prefix.path)).pump() == 4
    rows = [line.split("\t") for line in (prefix.state_dir / "dbgprint.log").read_text(encoding="utf-8").splitlines()]
    assert [row[2] for row in rows] == [f"[WazabiEDR] line {i}" for i in range(9)], "every line once, in order"
    assert [int(row[0]) for row in rows] == list(range(1, 10))


def test_a_recreated_raw_log_shorter_than_the_capture_start_is_capture_lost_never_a_pass(project: Path, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from driverpipe.core.config import load
    from driverpipe.core.context import RunContext
    from driverpipe.core.errors import CheckFailed
    from driverpipe.targets.wine.capture import WineCapture

    prefix = WinePrefix(tmp_path / "pfx")
    prefix.state_dir.mkdir(parents=True)
    prefix.raw_log.write_text("".join(_raw(i) for i in range(50)), encoding="utf-8")
    ctx = RunContext(config=load(root=project), echo=lambda _l: None, progress=lambda _l: None)
    capture = WineCapture(ctx, SimpleNamespace(pump=Pump(prefix)), "fault-1", sleep=lambda _s: None)
    assert capture._raw_start == prefix.raw_log.stat().st_size > 0
    prefix.raw_log.write_text(_raw(0), encoding="utf-8")  # recreated (a reset): shorter than where the capture started
    with pytest.raises(CheckFailed) as lost:
        capture.unwind_leak()
    assert lost.value.message.startswith("capture lost: ") and "\n" not in lost.value.message
    prefix.raw_log.unlink()
    with pytest.raises(CheckFailed, match="capture lost"):
        capture.unwind_leak()
