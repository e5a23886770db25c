"""The DebugView capture on a Windows guest, used by deploy and regress (and its log for `invoke verify`/`logs`).

Capture on the guest (nothing here ran against real Windows; see the README's
"verified where" table):
  - DebugView is installed if missing (debugview.source: local path pushed with
    guest.push, or an https URL downloaded on the guest; SHA-256 checked);
  - the capture runs in a scheduled task as SYSTEM, so it outlives the WinRM
    shell (pypsrp kills child processes when the pool closes), with
    `/accepteula /t /k /v /om /f /l <log> /m <MB>`: kernel + verbose kernel
    output (so the Debug Print Filter need not be set), clock time with ms,
    tray start, no filter prompt, a size limit;
  - the log is tailed by offset (guest.read_range) while the verdict is pending;
  - whether kernel capture works from session 0 is unknown (note 02): an empty
    log while the driver is loaded is reported as exactly that.
"""

from __future__ import annotations

import hashlib
import ntpath
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.context import RunContext
from ..core.errors import ConfigError, EnvironmentProblem, PipelineError, StepFailed
from ..core.files import safe_basename, write_atomic
from ..parse.dbgview import LogLine, LogTail
from ..parse.expect import Matcher, Verdict, expectation_for, follow
from .guestops import LogSource
from .state import _object, answer_of

TASK_PREFIX = "driverpipe-dbgview-"
LIMIT_MB = 64  # DebugView /m: a runaway driver cannot fill the guest's disk
READ_CHUNK = 1 << 20


def _guest_dir(ctx: RunContext, target: Any = None) -> str:
    own = str(target.get("guest_dir", "") or "") if target is not None else ""
    return own or str(ctx.config.project.deploy.guest_dir)


def log_dir(ctx: RunContext, target: Any = None) -> str:
    return ntpath.join(_guest_dir(ctx, target), "dbgview")


def _status_params(ctx: RunContext, target: Any, **extra: Any) -> dict[str, Any]:
    return {
        "LogDir": log_dir(ctx, target),
        "ServiceName": str(ctx.config.project.service_name),
        "DbgviewPath": str(ctx.config.project.debugview.guest_path),
        **extra,
    }


STATUS = "Get-DbgCaptureStatus.ps1"


@answer_of(STATUS)
def windows_log_source(ctx: RunContext, guest: Any, target: Any) -> LogSource:
    """The newest DebugView log on a Windows guest (Get-DbgCaptureStatus.ps1)."""
    params = _status_params(ctx, target)
    status = _object(STATUS, guest.run_script(STATUS, params)) or {}
    latest = status.get("latest_log")
    if latest is not None and not isinstance(latest, str):
        raise TypeError(f"latest_log is a {type(latest).__name__}")
    if not latest:
        raise StepFailed(
            f"no DebugView capture log in {params['LogDir']} on {getattr(guest, 'name', 'the guest')}",
            "run `invoke deploy` (it captures the driver's output), or check a saved log with --log FILE",
        )
    service = str(ctx.config.project.service_name)
    return LogSource(
        name=str(latest),
        read_range=lambda off, n: guest.read_range(latest, off, n),
        live=bool(status.get("capturing")),
        explain_empty=lambda verdict: _explain_empty(verdict, status, log_path=latest, service=service),
    )


@answer_of(STATUS)
def windows_collect_logs(ctx: RunContext, guest: Any, target: Any, dest: Path) -> list[Path]:
    """Every capture log and minidump of a Windows guest, pulled into dest."""
    params = _status_params(ctx, target)
    status = _object(STATUS, guest.run_script(STATUS, params)) or {}
    pulled: list[Path] = []
    for group, sub in (("logs", ""), ("minidumps", "minidumps")):
        for entry in status.get(group) or []:
            remote = str(entry.get("path", ""))
            if not remote:
                continue
            local = dest / sub / safe_basename(remote, "capture log")
            _pull_atomic(guest, remote, local)
            pulled.append(local)
    return pulled


def _pull_atomic(guest: Any, remote: str, local: Path) -> None:
    """guest.pull into a temp name, then rename: an interrupted pull never leaves a half file."""
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(local.name + ".part")
    try:
        guest.pull(remote, tmp)
        os.replace(tmp, local)
    finally:
        if tmp.exists():
            tmp.unlink()


@answer_of(STATUS)
def _explain_empty(verdict: Verdict, status: dict[str, Any], *, log_path: str, service: str, waited: float | None = None, read_error: str = "") -> None:
    """Replace 'no lines' by what the guest says about why (the exact explanation people need)."""
    svc = status.get("service") or {}
    state = str(svc.get("state") or "").upper() or ("MISSING" if svc.get("exists") is False else "UNKNOWN")
    dbg = status.get("dbgview") or {}
    task = status.get("task") or {}
    flt = status.get("print_filter")
    filt = f"Debug Print Filter DEFAULT={flt:#x}" if isinstance(flt, int) else "Debug Print Filter DEFAULT not set"
    stayed = f"stayed empty for {waited:.0f} s" if waited is not None else "is empty"
    if read_error:
        why = f"the DebugView log {log_path} could not be read ({read_error})"
    elif not dbg.get("running"):
        why = (
            f"DebugView is not running on the guest (task {task.get('name') or '?'}: state {task.get('state') or 'missing'}, "
            f"last result {task.get('last_result', '?')}): the capture never started or ended early"
        )
    elif state == "RUNNING":
        why = (
            f"the DebugView log {log_path} {stayed} although service {service} is RUNNING (the driver loaded): "
            f"kernel capture is not working in this session type (DebugView started by a SYSTEM scheduled task in session 0), "
            f"or the Debug Print Filter is not active until reboot ({filt})"
        )
    else:
        why = f"the DebugView log {log_path} {stayed} and service {service} is {state}: the driver did not load, so it printed nothing"
    verdict.message = f"{verdict.phase}: EMPTY LOG: {why}"
    verdict.notes.append(why)


class Capture:
    """One DebugView capture on a guest for one run (deploy, a regress cycle).

    Usage: guest.run_batch([*cap.ensure_items(), *cap.start_items(), <load scripts>]);
    cap.wait_for("load"); ...; guest.run_batch(cap.stop_items()); cap.pull(dir).
    Successive wait_for calls check successive windows of the same log: each
    starts after the line the previous phase matched last.
    """

    def __init__(
        self,
        ctx: RunContext,
        guest: Any,
        run_id: str,
        *,
        guest_dir: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", run_id or ""):
            raise ConfigError(f"capture run id {run_id!r} is not a simple name", "use letters, digits, '-', '_' or '.'")
        self.ctx = ctx
        self.guest = guest
        self.run_id = run_id
        dv = ctx.config.project.debugview
        self.dbgview_path = str(dv.guest_path)
        self.poll_interval = float(dv.poll_interval)
        if self.poll_interval <= 0:
            raise ConfigError(f"debugview.poll_interval = {dv.poll_interval!r}: must be above 0", "e.g. poll_interval = 0.5")
        base = guest_dir or str(ctx.config.project.deploy.guest_dir)
        self.log_dir = ntpath.join(base, "dbgview")
        self.remote_log = ntpath.join(self.log_dir, f"{run_id}.log")
        self.task_name = TASK_PREFIX + run_id
        self._sleep = sleep
        self._clock = clock
        self.tail = LogTail(self._read, chunk_size=READ_CHUNK)
        self.read_error = ""
        self._window: list[LogLine] = []  # lines not yet claimed by a phase
        self.lines_total = 0
        self._received = bytearray()

    # ---- batch items -----------------------------------------------------------------------
    def ensure_items(self) -> list[tuple[str, dict[str, Any]]]:
        """Install DebugView if missing. A local source is pushed now (skipped when the hash matches)."""
        dv = self.ctx.config.project.debugview
        source = str(dv.source or "").strip()
        want = str(dv.sha256 or "").strip().lower()
        if want and not re.fullmatch(r"[0-9a-f]{64}", want):
            raise ConfigError(f"debugview.sha256 = {dv.sha256!r} is not a SHA-256 hex digest", "paste the 64 hex digits of the file's SHA-256")
        params: dict[str, Any] = {"Path": self.dbgview_path}
        if not source:
            return [("Install-DebugView.ps1", params)]  # must already be there: the script says so if not
        if re.match(r"(?i)https?://", source):
            if not source.lower().startswith("https://"):
                raise ConfigError(f"debugview.source {source!r}: plain http download", "use an https URL, or a local path")
            if not want:
                raise ConfigError("debugview.source is a URL but debugview.sha256 is empty", "set debugview.sha256 to the SHA-256 of that file")
            return [("Install-DebugView.ps1", {**params, "Url": source, "Sha256": want})]
        local = self.ctx.config.path(source)
        if not local.is_file():
            raise ConfigError(f"debugview.source {source!r}: no such file ({local})", "point it at Dbgview.exe or DebugView.zip, or an https URL")
        digest = hashlib.sha256(local.read_bytes()).hexdigest()
        if want and digest != want:
            raise ConfigError(f"debugview.source {local.name}: SHA-256 {digest} does not match debugview.sha256 {want}", "use the right file or fix sha256")
        if local.suffix.lower() == ".zip":
            remote = ntpath.join(ntpath.dirname(self.dbgview_path), "DebugView.zip")
            params.update({"Archive": remote, "Sha256": digest})
        else:
            remote = self.dbgview_path
            params["Sha256"] = digest
        if self.ctx.dry:
            self.ctx.say(f"[dry] push {local} -> {remote}")
        else:
            self.guest.push(local, remote)
        return [("Install-DebugView.ps1", params)]

    def start_items(self) -> list[tuple[str, dict[str, Any]]]:
        """Start the capture (returns at once; the task runs on after the shell closes)."""
        return [
            (
                "Start-DbgCapture.ps1",
                {
                    "DbgviewPath": self.dbgview_path,
                    "LogPath": self.remote_log,
                    "TaskName": self.task_name,
                    "TaskPrefix": TASK_PREFIX,
                    "LimitMB": LIMIT_MB,
                },
            )
        ]

    def stop_items(self) -> list[tuple[str, dict[str, Any]]]:
        return [("Stop-DbgCapture.ps1", {"TaskName": self.task_name, "LogPath": self.remote_log, "DbgviewPath": self.dbgview_path})]

    def status_items(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (
                "Get-DbgCaptureStatus.ps1",
                {
                    "LogDir": self.log_dir,
                    "ServiceName": str(self.ctx.config.project.service_name),
                    "DbgviewPath": self.dbgview_path,
                    "TaskName": self.task_name,
                    "LogPath": self.remote_log,
                },
            )
        ]

    # ---- tailing ---------------------------------------------------------------------------
    def _read(self, offset: int, max_bytes: int) -> bytes:
        from ..transports.base import GuestScriptError
        from ..transports.errors import RemoteFileNotFound

        try:
            data = self.guest.read_range(self.remote_log, offset, max_bytes)
        except (RemoteFileNotFound, GuestScriptError) as exc:  # the log may not exist yet: DebugView creates it when it starts (unsure)
            self.read_error = exc.message
            return b""
        except PipelineError as exc:
            # A transport failure (timeout, closed connection) says nothing about the driver: never an "EMPTY LOG" verdict.
            raise EnvironmentProblem(
                f"reading the DebugView log {self.remote_log} failed: {exc.message}", "check the guest and the connection, then `invoke verify` again"
            ) from None
        self.read_error = ""
        if offset == len(self._received):  # keep what the tail read: the artifact costs no extra round trip
            self._received += data
        return bytes(data)

    def save(self, local_dir: Path) -> Path | None:
        """Write the log bytes read so far into local_dir (atomically); None when nothing was read."""
        if not self._received:
            return None
        local = Path(local_dir) / f"dbgview-{self.run_id}.log"
        write_atomic(local, bytes(self._received))
        return local

    def _collect(self, lines: list[LogLine]) -> None:
        self._window.extend(lines)
        self.lines_total += sum(1 for ln in lines if ln.kind != "header")

    def wait_for(self, phase: str, step: str | None = None, timeout: float | None = None) -> Verdict:
        """Tail the log every poll_interval until the phase's verdict is pass/fail, or timeout."""
        expectation = expectation_for(self.ctx, phase, step)
        limit = expectation.timeout if timeout is None else float(timeout)
        matcher = Matcher(expectation)
        if self.ctx.dry:
            verdict = matcher.verdict(final=False)
            verdict.message = f"{expectation.phase}: [dry] nothing captured; would wait up to {limit:g} s for {self.remote_log}"
            self.ctx.say(verdict.message)
            return verdict
        # Lines read during an earlier phase but after its last match belong to this one.
        earlier = self.lines_total - sum(1 for ln in self._window if ln.kind != "header")
        matcher.feed(self._window)
        verdict = follow(
            self.tail, matcher, timeout=limit, poll_interval=self.poll_interval, live=True,
            sleep=self._sleep, clock=self._clock, on_lines=self._collect,
        )  # fmt: skip
        # The next phase starts after this phase's last matched line.
        last = verdict.last_matched
        if last is not None:
            cut = next((i for i, ln in enumerate(self._window) if ln is last), -1)
            self._window = self._window[cut + 1 :]
        if verdict.status == "empty-log":
            if earlier > 0:
                verdict.status = "fail"
                verdict.message = f"{expectation.phase}: FAIL: no new DebugView lines after the previous phase; waited {verdict.waited_s or 0:.1f} s"
            else:
                self.explain_empty(verdict)
        return verdict

    def explain_empty(self, verdict: Verdict) -> None:
        """Say why the log stayed empty (the capture's status, read on the guest)."""
        status = _object(STATUS, (self.guest.run_batch(self.status_items()) or [{}])[0]) or {}
        _explain_empty(verdict, status, log_path=self.remote_log, service=str(self.ctx.config.project.service_name),
                       waited=verdict.waited_s, read_error=self.read_error)  # fmt: skip

    def stop(self) -> None:
        """Stop the capture on the guest (one round trip)."""
        self.guest.run_batch(self.stop_items())

    def unwind_leak(self) -> str:
        """A leak DriverEntry's unwind left, when the log can show one ('' otherwise). On Windows the
        clean reload after a failed one is the check (a leaked device name makes it fail)."""
        return ""

    def pull(self, local_dir: Path) -> Path:
        """Copy this run's log into local_dir (atomically); returns the local path."""
        local = Path(local_dir) / f"dbgview-{self.run_id}.log"
        if self.ctx.dry:
            self.ctx.say(f"[dry] pull {self.remote_log} -> {local}")
            return local
        try:
            _pull_atomic(self.guest, self.remote_log, local)
        except StepFailed as exc:
            raise StepFailed(f"cannot pull the DebugView log {self.remote_log}: {exc.message}", "see `invoke logs` and the capture status") from None
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write {local} ({exc.strerror})", "check the artifacts folder") from None
        return local
