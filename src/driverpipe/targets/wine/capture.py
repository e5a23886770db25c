"""The driver's DbgPrint lines on Wine: Wine's debug channel -> a DebugView-shaped log.

Wine prints each DbgPrint as one line of its debug output (no timestamp):

    0164:warn:debugstr:vDbgPrintExWithPrefix 00000000:00000001: [WazabiEDR] DriverEntry called

The pump reads what the service manager and driver hosts wrote since last time
(<prefix>/.driverpipe/wine-debug.log, offsets kept in run.json), and appends
each DbgPrint line, stamped with the time it was read, to dbgprint.log in
DebugView's own layout (`seq<TAB>clock<TAB>message`). So the same parser,
expectations, `invoke verify --log` and reports serve a Wine run and a Windows
one. Wine's own errors and its IoCreateDevice/IoDeleteDevice traces go in too,
as `[wine] ...` lines (they never match the driver's prefix), so a log shows
why a load failed; the traces also reveal unwind leaks, which a reload on Wine
does not (Wine removes a failed driver's devices itself).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.errors import CheckFailed
from ...core.files import write_atomic
from ...core.owned import is_count
from ...parse.dbgview import LogLine, LogTail
from ..capture import READ_CHUNK, Capture

if TYPE_CHECKING:
    from ...core.context import RunContext
    from .prefix import WinePrefix

RAW_LINE = re.compile(r"^([0-9a-f]{4}):(trace|warn|err|fixme):(\w+):(\S+) ?(.*)$")
COMPONENT_LEVEL = re.compile(r"^[0-9a-f]{8}:[0-9a-f]{8}: ")
KEPT_TRACES = ("IoCreateDevice", "IoDeleteDevice", "ZwLoadDriver", "ZwUnloadDriver")
MAX_PUMP_BYTES = 16 << 20


@dataclass
class WineEvent:
    """One line of Wine's debug output that the capture keeps, with its thread id."""

    tid: str
    kind: str  # "dbgprint" | "trace" | "err"
    function: str
    text: str


@dataclass
class Pump:
    """Moves new lines from Wine's raw debug log into the DebugView-shaped log."""

    prefix: WinePrefix
    events: list[WineEvent] = field(default_factory=list)  # what this process pumped, in order
    clock: Callable[[], float] = time.time

    @property
    def log(self) -> Path:
        return self.prefix.state_dir / "dbgprint.log"

    def size(self) -> int:
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def pump(self) -> int:
        """Convert what Wine wrote since the last pump; returns how many lines were added. Under the
        prefix's record lock, the offsets re-read under it: two processes pumping one capture (a
        deploy and `invoke logs`) never append a line twice or skip one."""
        if not self.prefix.raw_log.exists():
            return 0
        with self.prefix.record_lock():
            return self._pump_held()

    def _pump_held(self) -> int:
        raw = self.prefix.raw_log
        offset = int(self.prefix.recorded("raw_offset", 0) or 0)
        seq = int(self.prefix.recorded("seq", 0) or 0)
        self._cut_unrecorded()
        try:
            size = raw.stat().st_size
        except OSError:
            return 0
        if size < offset:  # a new raw log (prefix reset): start over
            offset = 0
        if size == offset:
            return 0
        with raw.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(min(size - offset, MAX_PUMP_BYTES))
        end = data.rfind(b"\n")
        if end < 0:
            return 0  # an unfinished line: wait for its newline
        chunk = data[: end + 1]
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock())) + f".{int(self.clock() * 1000) % 1000:03d}"
        out: list[str] = []
        for line in chunk.decode("utf-8", "replace").splitlines():
            event = parse_raw_line(line)
            if event is None:
                continue
            self.events.append(event)
            seq += 1
            out.append(f"{seq:08d}\t{stamp}\t{render(event)}\n")
        if out:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with self.log.open("a", encoding="utf-8", newline="") as fh:
                fh.write("".join(out))
        self.prefix.record(raw_offset=offset + len(chunk), seq=seq, log_size=self.size())
        return len(out)

    def _cut_unrecorded(self) -> None:
        """Lines appended by a pump that was killed (Ctrl-C, kill) before it recorded its raw offset are
        cut off: this pump converts them again from that offset, so each line is in the log once."""
        recorded = self.prefix.recorded("log_size")
        if is_count(recorded) and self.size() > recorded:
            with self.log.open("r+b") as fh:
                fh.truncate(recorded)

    def read(self, offset: int, max_bytes: int) -> bytes:
        self.pump()
        try:
            with self.log.open("rb") as fh:
                fh.seek(offset)
                return fh.read(max_bytes)
        except FileNotFoundError:
            return b""


def _lost(why: str) -> CheckFailed:
    return CheckFailed(f"capture lost: {why}; the unwind cannot be checked", "run the phase again; nothing may reset the Wine prefix while it runs")


def parse_raw_line(line: str) -> WineEvent | None:
    """A DbgPrint line, a kept ntoskrnl trace or an err line; None for the rest."""
    match = RAW_LINE.match(line.rstrip("\r"))
    if not match:
        return None
    tid, level, channel, function, rest = match.groups()
    if channel == "debugstr" and level == "warn":
        return WineEvent(tid, "dbgprint", function, COMPONENT_LEVEL.sub("", rest, count=1))
    if level == "trace" and channel == "ntoskrnl" and function in KEPT_TRACES:
        return WineEvent(tid, "trace", function, rest)
    if level == "err":
        return WineEvent(tid, "err", f"{channel}:{function}", rest)
    return None


def render(event: WineEvent) -> str:
    if event.kind == "dbgprint":
        return event.text
    return f"[wine] {event.tid} {event.kind}:{event.function} {event.text}".rstrip()


def unwind_leak(events: list[WineEvent], entry_line: str) -> str:
    """'' when the last DriverEntry deleted every device it created before failing; else what leaked.

    The thread that printed `entry_line` ran DriverEntry: count its IoCreateDevice and
    IoDeleteDevice calls until Wine reports the failed load (ZwLoadDriver's err line).
    """
    start = next((i for i in range(len(events) - 1, -1, -1) if events[i].kind == "dbgprint" and events[i].text == entry_line), None)
    if start is None:
        return ""
    tid = events[start].tid
    created = deleted = 0
    for event in events[start + 1 :]:
        if event.kind == "err" and event.function.endswith("ZwLoadDriver"):
            break
        if event.tid != tid or event.kind != "trace":
            continue
        if event.function == "IoCreateDevice":
            created += 1
        elif event.function == "IoDeleteDevice":
            deleted += 1
    if created > deleted:
        return f"DriverEntry created {created} device(s) and deleted {deleted} before failing"
    return ""


class WineCapture(Capture):
    """The DbgPrint capture of a Wine target: same windows and verdicts as the DebugView capture."""

    def __init__(
        self,
        ctx: RunContext,
        target: Any,
        run_id: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ctx = ctx
        self.guest = target
        self.run_id = run_id
        self.pump: Pump = target.pump
        self.poll_interval = min(float(ctx.config.project.debugview.poll_interval), 0.1)  # a local file: poll fast
        self.remote_log = str(self.pump.log)
        self._sleep = sleep
        self._clock = clock
        self.read_error = ""
        self._window: list[LogLine] = []
        self.lines_total = 0
        self._received = bytearray()
        self._raw_start = 0
        if ctx.dry:
            self._start = self.pump.size()
        else:
            # Pumped, measured and recorded in one hold of the record lock: no other process's
            # pump or capture start lands in between.
            with self.pump.prefix.record_lock():
                self.pump.pump()
                self._start = self.pump.size()  # this run's lines start here
                self._raw_start = int(self.pump.prefix.recorded("raw_offset", 0) or 0)
                if run_id != "verify":
                    self.pump.prefix.record(capture_start=self._start, capture_run=run_id)  # `invoke verify` reads from here
        self.tail = LogTail(self._read, chunk_size=READ_CHUNK)
        self.tail.offset = self._start

    def ensure_items(self) -> list[tuple[str, dict[str, Any]]]:
        return []

    def start_items(self) -> list[tuple[str, dict[str, Any]]]:
        return []

    def stop_items(self) -> list[tuple[str, dict[str, Any]]]:
        return []

    def stop(self) -> None:
        """Nothing to stop: Wine's debug channel is the capture."""

    def _read(self, offset: int, max_bytes: int) -> bytes:
        data = self.pump.read(offset, max_bytes)
        if offset == self._start + len(self._received):
            self._received += data
        return data

    def explain_empty(self, verdict: Any) -> None:
        why = (
            f"no DbgPrint line reached Wine's debug channel ({self.pump.log}): the driver did not load, "
            "or the Wine service manager runs without the capture environment (`invoke vm.stop --target TARGET`, then deploy again)"
        )
        verdict.message = f"{verdict.phase}: EMPTY LOG: {why}"
        verdict.notes.append(why)

    def pull(self, local_dir: Path) -> Path:
        local = Path(local_dir) / f"dbgview-{self.run_id}.log"
        if self.ctx.dry:
            self.ctx.say(f"[dry] copy {self.pump.log} (this run's lines) -> {local}")
            return local
        self.pump.pump()
        try:
            with self.pump.log.open("rb") as fh:
                fh.seek(self._start)
                write_atomic(local, fh.read())
        except FileNotFoundError:
            write_atomic(local, b"")
        return local

    def unwind_leak(self) -> str:
        """After a failed load: did DriverEntry's unwind delete what it created? ('' = yes)."""
        entry = self._entry_line()
        deadline = time.monotonic() + 5.0
        while True:  # the unwind's traces follow the failure line: read until Wine reports the failed load
            self.pump.pump()
            events = self._events()
            if any(e.kind == "err" and e.function.endswith("ZwLoadDriver") for e in events[-200:]) or time.monotonic() > deadline:
                break
            self._sleep(0.05)
        return unwind_leak(events, entry)

    def _events(self) -> list[WineEvent]:
        """Every kept line of this capture, read back from Wine's raw log: another process may have
        pumped some of them (this process's own pump list would miss those)."""
        raw = self.pump.prefix.raw_log
        try:
            end = raw.stat().st_size if raw.exists() else 0
            if end < self._raw_start:
                # Recreated or deleted (a reset): this capture's lines are gone. Never "no leak".
                raise _lost(f"Wine's debug log {raw} is {end} bytes, shorter than where this capture started ({self._raw_start})")
            with raw.open("rb") as fh:
                fh.seek(max(self._raw_start, end - MAX_PUMP_BYTES))
                data = fh.read(MAX_PUMP_BYTES)
        except OSError as exc:
            raise _lost(f"Wine's debug log {raw} cannot be read ({exc.strerror or exc})") from None
        lines = data[: data.rfind(b"\n") + 1].decode("utf-8", "replace").splitlines()
        return [e for e in (parse_raw_line(line) for line in lines) if e is not None]

    def _entry_line(self) -> str:
        sequence = list(self.ctx.config.project.expect.failed_load.get("sequence") or [])
        return str(sequence[0]) if sequence else "[WazabiEDR] DriverEntry called"
