"""Fakes of the DebugView capture scripts (Install-DebugView, Start/Stop-DbgCapture, Get-DbgCaptureStatus).

Windows rules kept (from the shared notes, 02; nothing here ran on real Windows):
  - the capture sees only DbgPrint output printed WHILE it runs (start it before sc start);
  - DbgPrint reaches it only with DebugView's /v or a Debug Print Filter DEFAULT with bit 0x8;
  - DebugView must exist at the path the task runs; one capture at a time (stale ones are ended);
  - the log file is written in DebugView's format: `%08d<TAB><time><TAB><message>` + CRLF,
    time per /om (clock with ms, 24h or 12h locale) or elapsed seconds.
Knobs (plain attributes set on the FakeWindows; read with defaults here):
  - machine.capture_works = False: DebugView runs but its log stays empty (session-0 case);
  - machine.capture_delay = seconds: a printed line reaches the log only after that much
    virtual time (advance(machine, dt) moves the clock; pass it as Capture's sleep);
  - machine.capture_clock = "24h" | "12h" | "elapsed";
  - machine.web = {url: bytes}: what an https download on the guest returns.
"""

from __future__ import annotations

import hashlib
import io
import ntpath
import zipfile
from dataclasses import dataclass, field
from typing import Any

from driverpipe.transports.base import GuestScriptError

from .guest import DEBUG_FILTER_KEY, FakeWindows, handler

BASE_CLOCK = 10 * 3600 + 15 * 60  # 10:15:00 on the guest when the virtual clock is 0


@dataclass
class FakeTask:
    name: str
    exe: str
    args: str
    log: str
    state: str = "Ready"
    last_result: int = 0x41303  # SCHED_S_TASK_HAS_NOT_RUN
    pid: int = 0


@dataclass
class CaptureState:
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    now: float = 0.0  # virtual seconds
    started_at: float = 0.0
    pending: list[tuple[float, str, str]] = field(default_factory=list)  # (due, log, line)
    seq: int = 0
    next_pid: int = 4100
    mtime: dict[str, float] = field(default_factory=dict)
    listener: Any = None
    downloads: list[str] = field(default_factory=list)


def state(machine: FakeWindows) -> CaptureState:
    st = machine.__dict__.get("_capture_state")
    if st is None:
        st = CaptureState()
        machine.__dict__["_capture_state"] = st
    return st


def _running(machine: FakeWindows) -> FakeTask | None:
    return next((t for t in state(machine).tasks.values() if t.state == "Running"), None)


def _stamp(machine: FakeWindows, st: CaptureState) -> str:
    fmt = getattr(machine, "capture_clock", "24h")
    if fmt == "elapsed":
        return f"{st.now - st.started_at:.8f}"
    t = BASE_CLOCK + st.now
    h, m, s, ms = int(t // 3600) % 24, int(t % 3600 // 60), int(t % 60), int(t * 1000) % 1000
    if fmt == "12h":
        return f"{(h % 12) or 12:02d}:{m:02d}:{s:02d}.{ms:03d} {'PM' if h >= 12 else 'AM'}"
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _append(machine: FakeWindows, log: str, text: str) -> None:
    st = state(machine)
    machine.files[log] = machine.files.get(log, b"") + text.encode("cp1252", errors="replace")
    st.mtime[log.lower()] = st.now


def _on_print(machine: FakeWindows, msg: str) -> None:
    task = _running(machine)
    if task is None or not getattr(machine, "capture_works", True):
        return
    verbose = "/v" in task.args.split()
    flt = machine.reg_get(DEBUG_FILTER_KEY, "DEFAULT")
    if not verbose and not (isinstance(flt, int) and flt & 0x8):
        return  # filtered out since Vista: only error-level DbgPrint passes
    st = state(machine)
    st.seq += 1
    line = f"{st.seq:08d}\t{_stamp(machine, st)}\t{msg[:511]}\r\n"
    delay = float(getattr(machine, "capture_delay", 0.0))
    if delay > 0:
        st.pending.append((st.now + delay, task.log, line))
    else:
        _append(machine, task.log, line)


def advance(machine: FakeWindows, seconds: float) -> None:
    """Move the guest's virtual clock; lines whose delay has passed reach the log."""
    st = state(machine)
    st.now += max(0.0, seconds)
    due = [p for p in st.pending if p[0] <= st.now]
    st.pending = [p for p in st.pending if p[0] > st.now]
    for _, log, line in due:
        if _running(machine) is not None:
            _append(machine, log, line)


def _end(machine: FakeWindows, task: FakeTask) -> None:
    task.state = "Ready"
    task.last_result = 0x41306  # SCHED_S_TASK_TERMINATED
    task.pid = 0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@handler("Install-DebugView.ps1")
def install_debugview(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    path, want, url, archive = p["Path"], str(p.get("Sha256", "")).lower(), str(p.get("Url", "")), str(p.get("Archive", ""))
    from_zip = bool(archive) or url.lower().split("?")[0].endswith(".zip")
    present = path in m.files
    action = "present"
    if present and want and not from_zip and _sha(m.files[path]) != want:
        present, action = False, "replaced"

    def unzip(blob: bytes) -> None:
        leaf = ntpath.basename(path).lower()
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            name = next((n for n in zf.namelist() if ntpath.basename(n.replace("/", "\\")).lower() == leaf), None)
            if name is None:
                raise GuestScriptError(f"the DebugView archive has no {ntpath.basename(path)}")
            m.files[path] = zf.read(name)

    if archive and not present:
        if archive not in m.files:
            raise GuestScriptError(f"DebugView archive {archive} is missing on the guest")
        if want and _sha(m.files[archive]) != want:
            raise GuestScriptError(f"DebugView archive {archive} does not have SHA-256 {want}")
        unzip(m.files[archive])
        action = "unpacked"
    elif not present:
        if not url:
            raise GuestScriptError(f"DebugView is not installed at {path} and no source is configured (set debugview.source to a local path or an https URL)")
        if not want:
            raise GuestScriptError(f"refusing to download {url} without a checksum (set debugview.sha256)")
        web: dict[str, bytes] = getattr(m, "web", {})
        if url not in web:
            raise GuestScriptError(f"The remote name could not be resolved: '{url}'")
        state(m).downloads.append(url)
        blob = web[url]
        if _sha(blob) != want:
            raise GuestScriptError(f"download of {url} has SHA-256 {_sha(blob)}, expected {want}")
        if from_zip:
            unzip(blob)
        else:
            m.files[path] = blob
        action = "downloaded"
    return {"path": path, "action": action, "sha256": _sha(m.files[path]), "version": "4.90"}


@handler("Start-DbgCapture.ps1")
def start_capture(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    exe, log, name = p["DbgviewPath"], p["LogPath"], p["TaskName"]
    prefix = str(p.get("TaskPrefix", "driverpipe-dbgview-"))
    if exe not in m.files:
        raise GuestScriptError(f"DebugView is not installed at {exe} (the install step runs first; set debugview.source)")
    st = state(m)
    stale = [t for t in st.tasks.values() if t.name.lower().startswith(prefix.lower())]
    for t in stale:
        _end(m, t)
        del st.tasks[t.name]
    if log in m.files:
        del m.files[log]
    args = f'/accepteula /t /k /v /om /f /l "{log}" /m {int(p.get("LimitMB", 64))}'
    task = FakeTask(name=name, exe=exe, args=args, log=log)
    st.tasks[name] = task
    task.state, task.last_result = "Running", 0x41301  # SCHED_S_TASK_RUNNING
    task.pid = st.next_pid
    st.next_pid += 4
    st.started_at = st.now
    m.files[log] = b""  # DebugView opens its log at start (unsure)
    st.mtime[log.lower()] = st.now
    if st.listener is None:
        st.listener = lambda msg: _on_print(m, msg)
        m.debug_listeners.append(st.listener)
    return {
        "task": name,
        "log": log,
        "arguments": args,
        "task_state": task.state,
        "last_result": task.last_result,
        "pids": [task.pid],
        "log_exists": True,
        "stale_removed": len(stale),
    }


@handler("Stop-DbgCapture.ps1")
def stop_capture(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    st = state(m)
    task = st.tasks.pop(p["TaskName"], None)
    killed = []
    if task is not None:
        if task.pid:
            killed.append(task.pid)
        _end(m, task)
    if not any(t.state == "Running" for t in st.tasks.values()) and st.listener in m.debug_listeners:
        m.debug_listeners.remove(st.listener)
        st.listener = None
    log = p["LogPath"]
    return {
        "task_removed": task is not None,
        "killed": killed,
        "log": log,
        "log_exists": log in m.files,
        "log_size": len(m.files.get(log, b"")),
    }


@handler("Get-DbgCaptureStatus.ps1")
def capture_status(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    st = state(m)
    log_dir = p["LogDir"].rstrip("\\").lower()
    found = sorted(
        (
            (st.mtime.get(path.lower(), 0.0), path, len(data))
            for path, data in m.files.items()
            if ntpath.dirname(path).lower() == log_dir and path.lower().endswith(".log")
        ),
        reverse=True,
    )  # newest first, like Sort-Object LastWriteTimeUtc -Descending
    logs = [{"path": path, "size": size, "modified": mtime} for mtime, path, size in found]
    name = str(p.get("TaskName", ""))
    prefix = str(p.get("TaskPrefix", "driverpipe-dbgview-")).lower()
    tasks = [t for t in st.tasks.values() if (t.name == name if name else t.name.lower().startswith(prefix))]
    svc = m.services.get(p["ServiceName"])
    running = [t for t in st.tasks.values() if t.state == "Running"]
    flt = m.reg_get(DEBUG_FILTER_KEY, "DEFAULT")
    log_path = str(p.get("LogPath", ""))
    exe = str(p.get("DbgviewPath", ""))
    return {
        "log_dir": p["LogDir"],
        "logs": logs,
        "latest_log": logs[0]["path"] if logs else None,
        "capturing": any(t.state == "Running" for t in tasks),
        "task": {"name": tasks[0].name, "state": tasks[0].state, "last_result": tasks[0].last_result} if tasks else None,
        "dbgview": {"running": bool(running), "pids": [t.pid for t in running], "path": exe, "present": bool(exe) and exe in m.files},
        "service": {"exists": svc is not None, "state": {1: "STOPPED", 4: "RUNNING"}.get(svc.state, "UNKNOWN") if svc is not None else None},
        "print_filter": flt if isinstance(flt, int) else None,
        "log_size": len(m.files[log_path]) if log_path and log_path in m.files else None,
        "minidumps": [{"path": path, "size": len(data)} for path, data in m.files.items() if ntpath.dirname(path).lower() == "c:\\windows\\minidump"],
    }
