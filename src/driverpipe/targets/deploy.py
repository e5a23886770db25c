"""`invoke deploy` / `invoke unload`: get the signed driver loaded and checked on a test guest.

The flow is a PLAN: a list of Step records (name, what it does, when it applies,
what state an interruption leaves) run by a small loop. `--dry` prints the plan
and runs it against the DryGuest (which prints every script with its bound
parameters); regress reuses the pieces (read_guest_state, load_driver,
unload_driver, set_fault_step, reboot_and_wait).

Round trips for an unchanged package on a prepared guest: (1) Get-GuestState.ps1,
(2) one batch = capture start + Invoke-DriverLoad.ps1 + Test-DeviceSmoke.ps1,
(3) the capture's log read. Everything Windows-side was only exercised against
tests/fakes (a fake guest keeping Windows' rules), never on a real guest.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..core.context import RunContext
from ..core.errors import CheckFailed, ConfigError, EnvironmentProblem, PipelineError, StepFailed
from ..core.files import sha256_file
from ..parse.winparse import (
    diagnose_sc_error,
    normalize_image_path,
    parse_bcdedit_set,
    parse_sc_output,
    sc_code,
    start_options_testsigning,
    testsigning_enabled,
)
from ..transports.base import GuestScriptError
from .guestops import GuestOps
from .reboot import Diagnosed, is_connection_error, reboot_and_wait

__all__ = [
    "GuestState",
    "LoadResult",
    "UnloadResult",
    "load_driver",
    "read_guest_state",
    "reboot_and_wait",
    "run",
    "set_fault_step",
    "unload",
    "unload_driver",
]

DEBUG_FILTER_WANTED = 0xF
ERROR_INVALID_FUNCTION = 1
ERROR_FILE_NOT_FOUND = 2
FAILED_LINE = re.compile(r"(\S*\]?\s*\S+ failed\b.*)$")


class GuestNotReady(Diagnosed, EnvironmentProblem):
    """The guest answered but lacks a prerequisite (elevation, Secure Boot off, HVCI off). Exit code 3."""


class DeployStepFailed(Diagnosed, StepFailed):
    """A deploy operation ran on the guest and failed (sc.exe code, bcdedit, push hash). Exit code 4."""


class PackageLike(Protocol):
    """What deploy needs of driverpipe.sign.SignedPackage."""

    dir: Path
    name: str
    files: list[Path]
    cert_path: Path


# --------------------------------------------------------------------------------------------
# Guest state
# --------------------------------------------------------------------------------------------


@dataclass
class ServiceInfo:
    exists: bool = False
    state: int | None = None  # 1 STOPPED, 4 RUNNING, ...
    state_name: str | None = None
    binary_path: str | None = None
    start_type: int | None = None
    type: int | None = None
    win32_exit_code: int | None = None

    @property
    def running(self) -> bool:
        return self.exists and self.state not in (None, 1)


@dataclass
class GuestState:
    """What Get-GuestState.ps1 found (one round trip). `synthetic` = a dry run's assumed first deploy."""

    elevated: bool = True
    os_caption: str = ""
    os_build: int = 0
    secure_boot: bool | None = False  # None: BIOS (no Secure Boot) or unknown (see secure_boot_detail)
    secure_boot_detail: str = ""  # "unsupported (BIOS)" or why it could not be read
    hvci: bool = False
    testsigning_configured: bool | None = None  # in the BCD store (bcdedit)
    testsigning_active: bool | None = None  # in the running boot (SystemStartOptions)
    debug_filter: int | None = None
    cert_root: bool = False
    cert_trusted_publisher: bool = False
    files: dict[str, str | None] = field(default_factory=dict)  # name -> sha256 in the guest dir (None: absent)
    debugview_present: bool | None = None
    service: ServiceInfo = field(default_factory=ServiceInfo)
    boot_time: int | None = None
    pending_reboot: bool = False
    synthetic: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def cert_trusted(self) -> bool:
        return self.cert_root and self.cert_trusted_publisher

    @property
    def testsigning(self) -> bool | None:
        """TESTSIGNING active in the running boot (what makes test-signed drivers load)."""
        return self.testsigning_active

    @property
    def debug_filter_ok(self) -> bool | None:
        return _filter_ok(self.debug_filter)

    def summary(self) -> str:
        ts = {True: "on", False: "off", None: "unknown"}
        active = ts[self.testsigning_active]
        if self.testsigning_configured and not self.testsigning_active:
            active = "off (on after reboot)"
        flt = "unset" if self.debug_filter is None else f"0x{self.debug_filter:X}"
        sb = "ON" if self.secure_boot is True else ("off" if self.secure_boot is False else (self.secure_boot_detail or "unknown"))
        return (
            f"{self.os_caption or 'Windows'} build {self.os_build}, elevated {'yes' if self.elevated else 'NO'}, Secure Boot {sb}, "
            f"HVCI {'on' if self.hvci else 'off'}, TESTSIGNING {active}, Debug Print Filter {flt}, "
            f"test cert {'trusted' if self.cert_trusted else 'not trusted'}"
        )


def _filter_ok(value: int | None) -> bool:
    return value is not None and (value & DEBUG_FILTER_WANTED) == DEBUG_FILTER_WANTED


def _dry_state(pkg: PackageLike | None) -> GuestState:
    """A dry run cannot ask the guest: plan a first deploy on an unprepared test machine."""
    names = [p.name for p in pkg.files] if pkg else []
    return GuestState(
        os_caption="(dry run: assumed)",
        testsigning_configured=False,
        testsigning_active=False,
        files=dict.fromkeys(names),
        synthetic=True,
    )


def cert_thumbprint(cert_path: Path) -> tuple[str, bytes]:
    """(SHA-1 thumbprint as Windows shows it, DER bytes) of a .cer (DER or PEM)."""
    data = Path(cert_path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        body = b"".join(line for line in data.splitlines() if line and not line.startswith(b"-----"))
        data = base64.b64decode(body)
    return hashlib.sha1(data).hexdigest().upper(), data


def _service_name(ctx: RunContext) -> str:
    return str(ctx.config.project.service_name)


def _guest_dir(ctx: RunContext, target: Any = None) -> str:
    override = str(target.get("guest_dir") or "") if target is not None else ""
    return override or str(ctx.config.project.deploy.guest_dir)


def _join(directory: str, name: str) -> str:
    return directory.rstrip("\\/") + "\\" + name


def read_guest_state(guest: Any, ctx: RunContext, *, pkg: PackageLike | None = None, guest_dir: str | None = None) -> GuestState:
    """The target's state, through its guest operations."""
    return ops_for(guest).read_state(ctx, pkg=pkg, guest_dir=guest_dir)


def _ps_read_state(guest: Any, ctx: RunContext, *, pkg: PackageLike | None = None, guest_dir: str | None = None) -> GuestState:
    """ONE round trip: elevation, OS, Secure Boot, HVCI, TESTSIGNING, filter, cert, file hashes, service, boot time."""
    params: dict[str, Any] = {"ServiceName": _service_name(ctx)}
    if pkg is not None:
        params["GuestDir"] = guest_dir or _guest_dir(ctx)
        params["FileNames"] = [p.name for p in pkg.files]
        if pkg.cert_path and Path(pkg.cert_path).is_file():
            params["CertThumbprint"] = cert_thumbprint(pkg.cert_path)[0]
    params["DebugViewPath"] = str(ctx.config.project.debugview.guest_path)
    raw = guest.run_script("Get-GuestState.ps1", params, timeout=float(ctx.config.project.deploy.script_timeout))
    if not isinstance(raw, dict):
        return _dry_state(pkg)
    return parse_guest_state(raw)


def parse_guest_state(raw: dict[str, Any]) -> GuestState:
    bcd = raw.get("bcdedit") or {}
    configured = testsigning_enabled(str(bcd.get("output") or "")) if bcd.get("rc") == 0 else None
    active = start_options_testsigning(raw.get("start_options"))
    if configured is None and active:
        configured = True
    qc = raw.get("sc_qc") or {}
    query = raw.get("sc_query") or {}
    q = parse_sc_output(str(query.get("output") or ""))
    c = parse_sc_output(str(qc.get("output") or ""))
    exists = sc_code(query.get("rc"), str(query.get("output") or "")) != 1060 and (q.state is not None or c.binary_path is not None)
    service = ServiceInfo(
        exists=exists,
        state=q.state,
        state_name=q.state_name,
        binary_path=c.binary_path,
        start_type=c.start_type,
        type=q.type if q.type is not None else c.type,
        win32_exit_code=q.win32_exit_code,
    )
    hvci = raw.get("hvci_running")
    if hvci is None:
        hvci = raw.get("hvci_configured")
    flt = raw.get("debug_filter")
    sb_raw = str(raw.get("secure_boot") or "unknown")
    secure_boot = {"on": True, "off": False}.get(sb_raw)
    sb_detail = "unsupported (BIOS)" if sb_raw == "unsupported" else str(raw.get("secure_boot_detail") or "")
    if secure_boot is None and sb_raw != "unsupported":
        sb_detail = "unknown" + (f": {sb_detail}" if sb_detail else "")
    dv = raw.get("debugview_present")
    return GuestState(
        elevated=bool(raw.get("elevated")),
        os_caption=str(raw.get("os_caption") or ""),
        os_build=int(raw.get("os_build") or 0),
        secure_boot=secure_boot,
        secure_boot_detail=sb_detail,
        hvci=bool(hvci),
        testsigning_configured=configured,
        testsigning_active=active,
        debug_filter=None if flt is None else int(flt),
        cert_root=bool(raw.get("cert_root")),
        cert_trusted_publisher=bool(raw.get("cert_trusted_publisher")),
        files={str(k): (str(v).lower() if v else None) for k, v in (raw.get("files") or {}).items()},
        debugview_present=None if dv is None else bool(dv),
        service=service,
        boot_time=None if raw.get("boot_time") is None else int(raw["boot_time"]),
        pending_reboot=bool(raw.get("pending_reboot")),
        raw=raw,
    )


# --------------------------------------------------------------------------------------------
# Load / unload / fault injection (reused by regress)
# --------------------------------------------------------------------------------------------


@dataclass
class ScOp:
    op: str  # query / stop / wait_stopped / create / config / start
    rc: int
    output: str

    @property
    def code(self) -> int:
        return sc_code(self.rc, self.output)


@dataclass
class SmokeResult:
    open_error: int
    ioctl_error: int
    read_error: int
    close_error: int

    @property
    def ok(self) -> bool:
        return self.open_error == 0 and self.close_error == 0 and self.ioctl_error == ERROR_INVALID_FUNCTION and self.read_error == ERROR_INVALID_FUNCTION

    def describe(self, device: str) -> str:
        if self.open_error != 0:
            return f"CreateFileW({device}) failed with Win32 error {self.open_error}" + (
                " (ERROR_FILE_NOT_FOUND: no symbolic link, the driver did not create its device)" if self.open_error == 2 else ""
            )
        parts = [f"CreateFileW ok, DeviceIoControl -> {self.ioctl_error}, ReadFile -> {self.read_error}, CloseHandle -> {self.close_error}"]
        if not self.ok:
            parts.append(f"(expected {ERROR_INVALID_FUNCTION} = ERROR_INVALID_FUNCTION for both, and a clean close)")
        return " ".join(parts)


@dataclass
class LoadResult:
    ok: bool  # sc start succeeded
    start_code: int | None  # Win32 code of sc start (None: start not reached)
    ops: list[ScOp] = field(default_factory=list)
    message: str = ""  # diagnosis when not ok
    error: str = ""  # script-level refusal: hash_mismatch / image_missing / stop_timeout
    smoke: SmokeResult | None = None
    verdict: Any = None  # driverpipe.verify Verdict when fetched here (sc 31)
    failed_line: str = ""  # the driver's `<step> failed` DbgPrint line, when captured
    driver_loaded: bool = False
    capture_error: str = ""  # the capture could not start (the load ran without it)
    dry: bool = False


@dataclass
class UnloadResult:
    stopped: bool  # the service is STOPPED (or not installed)
    stop_code: int
    device_gone: bool
    device_open_error: int | None
    deleted: bool | None = None
    delete_code: int | None = None
    message: str = ""
    dry: bool = False


def set_fault_step(guest: Any, ctx: RunContext, step: int) -> None:
    """Write REG_DWORD FailAtStep under HKLM\\...\\Services\\<svc>\\Parameters (0 clears it)."""
    if step < 0:
        raise ConfigError(f"fault step {step} is negative", "use 0 to clear, or a 1-based DriverEntry step index")
    ops_for(guest).set_fault_step(ctx, step)


def _ps_set_fault_step(guest: Any, ctx: RunContext, step: int) -> None:
    guest.run_script("Set-FaultStep.ps1", {"ServiceName": _service_name(ctx), "Step": int(step)})


def _sys_file(pkg: PackageLike) -> Path:
    for f in pkg.files:
        if f.suffix.lower() == ".sys":
            return f
    raise CheckFailed(f"the signed package {pkg.name} has no .sys file", "run `invoke build sign` again")


def _sha256(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _line_text(item: Any) -> str:
    return str(getattr(item, "message", None) or item)


def _failed_line(verdict: Any, prefix: str) -> str:
    """The driver's `<step> failed` line from a Verdict: its forbidden line, else any line that took part."""
    texts: list[str] = []
    forbidden = getattr(verdict, "forbidden", None)
    if forbidden is not None and getattr(forbidden, "line", None) is not None:
        texts.append(_line_text(forbidden.line))
    for attr in ("lines", "captured"):
        value = getattr(verdict, attr, None)
        if isinstance(value, list | tuple):
            texts.extend(_line_text(v) for v in value)
    texts.append(str(getattr(verdict, "message", "") or ""))
    for text in texts:
        for line in text.splitlines():
            if " failed" in line and (not prefix or prefix in line):
                start = line.find(prefix) if prefix and prefix in line else 0
                return line[start:].strip()
    return ""


def load_driver(
    ctx: RunContext,
    guest: Any,
    pkg: PackageLike,
    capture: Any = None,
    *,
    guest_dir: str | None = None,
    smoke: bool | None = None,
    state: GuestState | None = None,
) -> LoadResult:
    """Install when needed, start, smoke-test: through the target's guest operations."""
    want_smoke = bool(ctx.config.project.deploy.smoke_test) if smoke is None else smoke
    return ops_for(guest).load(ctx, pkg, capture, guest_dir=guest_dir or _guest_dir(ctx), smoke=want_smoke, state=state)


def _ps_load_driver(ctx: RunContext, guest: Any, pkg: PackageLike, capture: Any, guest_dir: str, smoke: bool, state: GuestState | None) -> LoadResult:
    """ONE batch: capture start items + Invoke-DriverLoad.ps1 (+ Test-DeviceSmoke.ps1). Does not raise on
    sc.exe failures: the result carries the code and a diagnosis. For sc 31 it also reads the capture
    to quote the driver's `<step> failed` line."""
    svc = _service_name(ctx)
    sys_file = _sys_file(pkg)
    binpath = _join(guest_dir, sys_file.name)
    device = str(ctx.config.project.device_path)
    want_smoke = smoke
    capture_items: list[tuple[str, dict[str, Any]]] = []
    if capture is not None:
        ensure = getattr(capture, "ensure_items", None)  # install DebugView when missing (real Capture)
        capture_items += list(ensure()) if callable(ensure) else []
        capture_items += list(capture.start_items())
    items = list(capture_items)
    load_params: dict[str, Any] = {"ServiceName": svc, "BinaryPath": binpath}
    digest = _sha256(sys_file)
    if digest:
        load_params["ExpectedSha256"] = digest
    items.append(("Invoke-DriverLoad.ps1", load_params))
    if want_smoke:
        items.append(("Test-DeviceSmoke.ps1", {"DevicePath": device}))
    timeout = float(ctx.config.project.deploy.script_timeout)
    capture_error = ""
    try:
        results = guest.run_batch(items, timeout=timeout)
    except GuestScriptError as exc:
        # Invoke-Batch stops at the first failing item: a capture that cannot start must not block
        # the load. Retry without it (one more round trip, only in this case); the caller is told.
        if not capture_items or not any(name in exc.message for name, _ in capture_items):
            raise
        capture_error = exc.message
        capture = None
        items = items[len(capture_items) :]
        results = guest.run_batch(items, timeout=timeout)
    n_capture = len(items) - 1 - (1 if want_smoke else 0)
    load = results[n_capture] if results and len(results) > n_capture else None
    if not isinstance(load, dict):
        return LoadResult(ok=True, start_code=None, dry=True)
    ops = [ScOp(str(o.get("op")), int(o.get("rc") or 0), str(o.get("output") or "")) for o in (load.get("ops") or [])]
    result = LoadResult(ok=bool(load.get("ok")), start_code=None, ops=ops, error=str(load.get("error") or ""), capture_error=capture_error)
    if want_smoke and len(results) > n_capture + 1 and isinstance(results[n_capture + 1], dict):
        s = results[n_capture + 1]
        result.smoke = SmokeResult(*(int(s.get(k, -1)) for k in ("open_error", "ioctl_error", "read_error", "close_error")))
    context = {
        "service": svc,
        "binpath": binpath,
        "hvci": state.hvci if state else None,
        "testsigning": state.testsigning_active if state else None,
    }
    if result.error == "hash_mismatch":
        result.message = f"{binpath} on the guest does not match the signed package (sha256 {load.get('actual_sha256')} != {digest}); the copy was not loaded"
        return result
    if result.error == "image_missing":
        result.message = f"{binpath} is missing on the guest; nothing was loaded"
        return result
    if result.error == "stop_refused":
        code = int(load.get("stop_code") or 0)
        result.message = diagnose_sc_error(code, context={**context, "op": "stop"}) + "; the old build is still loaded"
        result.driver_loaded = True
        return result
    if result.error == "stop_timeout":
        result.message = f"the running {svc} did not reach STOPPED in time; the old build is still loaded"
        result.driver_loaded = True
        return result
    for op in ops:
        if op.op in ("create", "config", "stop") and op.code not in (0, 1062):
            result.message = diagnose_sc_error(op.code, context={**context, "op": op.op})
            return result
    start = next((op for op in ops if op.op == "start"), None)
    if start is None:
        return result
    result.start_code = start.code
    final = load.get("final_query") or {}
    final_state = parse_sc_output(str(final.get("output") or "")).state
    result.driver_loaded = final_state == 4 or (final_state is None and start.code == 0)
    if start.code == 0:
        result.ok = True
        return result
    result.ok = False
    if start.code == 31 and capture is not None:
        try:
            result.verdict = capture.wait_for("load")
            result.failed_line = _failed_line(result.verdict, str(ctx.config.project.log_prefix))
        except PipelineError as exc:
            if is_connection_error(exc):
                raise
    result.message = diagnose_sc_error(start.code, context={**context, "op": "start", "failed_line": result.failed_line})
    return result


def unload_driver(ctx: RunContext, guest: Any, delete: bool = False) -> UnloadResult:
    """sc stop, wait for STOPPED, check the device path is gone (ERROR_FILE_NOT_FOUND), optionally sc delete."""
    return ops_for(guest).unload(ctx, delete=delete)


def _ps_unload_driver(ctx: RunContext, guest: Any, delete: bool = False) -> UnloadResult:
    svc = _service_name(ctx)
    device = str(ctx.config.project.device_path)
    raw = guest.run_script(
        "Invoke-DriverUnload.ps1",
        {"ServiceName": svc, "DevicePath": device, "Delete": bool(delete)},
        timeout=float(ctx.config.project.deploy.script_timeout),
    )
    if not isinstance(raw, dict):
        return UnloadResult(stopped=True, stop_code=0, device_gone=True, device_open_error=None, dry=True)
    stop = raw.get("stop") or {}
    stop_code = sc_code(stop.get("rc"), str(stop.get("output") or ""))
    final = raw.get("final_query") or {}
    final_parsed = parse_sc_output(str(final.get("output") or ""))
    not_installed = stop_code == 1060
    stopped = not_installed or final_parsed.state == 1 or stop_code == 1062
    open_error = raw.get("device_open_error")
    open_error = None if open_error is None else int(open_error)
    gone = open_error in (ERROR_FILE_NOT_FOUND, 3)  # 3: ERROR_PATH_NOT_FOUND, same meaning for a device path
    result = UnloadResult(stopped=stopped, stop_code=stop_code, device_gone=gone, device_open_error=open_error)
    if delete and isinstance(raw.get("delete"), dict):
        d = raw["delete"]
        result.delete_code = sc_code(d.get("rc"), str(d.get("output") or ""))
        result.deleted = result.delete_code in (0, 1060)
    messages = []
    if not stopped:
        messages.append(diagnose_sc_error(stop_code, context={"op": "stop", "service": svc}))
    if not gone:
        messages.append(
            f"{device} still opens (Win32 {open_error}) after the stop: the driver did not delete its symbolic link/device"
            if open_error == 0
            else f"{device}: CreateFileW gave Win32 error {open_error}, expected 2 (ERROR_FILE_NOT_FOUND)"
        )
    if delete and result.deleted is False and result.delete_code is not None:
        messages.append(diagnose_sc_error(result.delete_code, context={"op": "delete", "service": svc}))
    result.message = "; ".join(messages)
    return result


class PowerShellOps(GuestOps):
    """The guest operations of a real Windows guest: shipped .ps1 scripts over a transport."""

    kind = "windows"

    def __init__(self, transport: Any, target: Any = None):
        self.transport = transport
        self.target = target  # the target's config section, when known (log folder overrides)
        self.name = str(getattr(transport, "name", "guest"))

    @property
    def round_trips(self) -> int:
        return int(getattr(self.transport, "round_trips", 0))

    def read_state(self, ctx: RunContext, *, pkg: PackageLike | None = None, guest_dir: str | None = None) -> GuestState:
        return _ps_read_state(self.transport, ctx, pkg=pkg, guest_dir=guest_dir)

    def push(self, local: Path, remote: str) -> Any:
        return self.transport.push(local, remote)

    def load(self, ctx: RunContext, pkg: PackageLike, capture: Any, *, guest_dir: str, smoke: bool, state: GuestState | None) -> LoadResult:
        return _ps_load_driver(ctx, self.transport, pkg, capture, guest_dir, smoke, state)

    def unload(self, ctx: RunContext, *, delete: bool = False) -> UnloadResult:
        return _ps_unload_driver(ctx, self.transport, delete=delete)

    def set_fault_step(self, ctx: RunContext, step: int) -> None:
        _ps_set_fault_step(self.transport, ctx, step)

    def ready(self) -> bool:
        """The guest answers and is past logon (Test-GuestReady.ps1 after a fresh connection)."""
        try:
            self.transport.reconnect()
            ready = self.transport.run_script("Test-GuestReady.ps1", {}, timeout=30)
        except PipelineError:
            return False
        return bool(ready.get("ready", True)) if isinstance(ready, dict) else bool(ready)

    def log_source(self, ctx: RunContext) -> Any:
        from .capture import windows_log_source

        return windows_log_source(ctx, self.transport, self.target or {"name": self.name})

    def collect_logs(self, ctx: RunContext, dest: Path) -> list[Path]:
        from .capture import windows_collect_logs

        return windows_collect_logs(ctx, self.transport, self.target or {"name": self.name}, dest)

    def new_capture(self, ctx: RunContext, run_id: str, guest_dir: str) -> Any:
        from .capture import Capture

        return Capture(ctx, self.transport, run_id, guest_dir=guest_dir)

    def close(self) -> None:
        self.transport.close()


def ops_for(guest: Any, target: Any = None) -> GuestOps:
    """The guest operations of `guest`: itself when it implements them (Wine), else PowerShell over its transport."""
    return guest if isinstance(guest, GuestOps) else PowerShellOps(guest, target)


# --------------------------------------------------------------------------------------------
# The deploy plan
# --------------------------------------------------------------------------------------------


@dataclass
class Deployment:
    """Everything the steps share while a deploy runs."""

    ctx: RunContext
    guest: Any
    pkg: PackageLike
    target: Any  # config Section of the target
    verify: bool = True
    capture_factory: Callable[[RunContext, Any, str], Any] | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    state: GuestState = field(default_factory=GuestState)
    capture: Any = None
    load: LoadResult | None = None
    reboot_needed: bool = False
    to_push: list[Path] = field(default_factory=list)
    driver: str = "unknown"  # last known driver state on the guest, for interruption messages
    renew: Callable[[], None] | None = None  # renews the run's lease on the guest before each step
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))

    @property
    def dir(self) -> str:
        return _guest_dir(self.ctx, self.target)

    @property
    def name(self) -> str:
        return str(self.target.get("name") or getattr(self.guest, "name", "guest"))


@dataclass(frozen=True)
class Step:
    name: str
    summary: str
    action: Callable[[Deployment], None]
    when: Callable[[Deployment], bool] = lambda d: True
    if_interrupted: str = ""  # what the guest is left with when this step is cut short ("" = the last known state)


def _missing_preparation(state: GuestState) -> list[str]:
    missing = []
    if not state.testsigning_configured:
        missing.append("TESTSIGNING")
    if not _filter_ok(state.debug_filter):
        missing.append("Debug Print Filter DEFAULT=0xF")
    if not state.cert_trusted:
        missing.append("test certificate in LocalMachine Root + TrustedPublisher")
    return missing


def _secure_boot_fix(d: Deployment) -> str:
    host = str(d.target.get("vm_host") or "")
    kind = ""
    if host:
        try:
            kind = str(d.ctx.config.user.vm_hosts[host]["kind"])
        except (KeyError, AttributeError, TypeError):
            kind = ""
    vm = str(d.target.get("vm_name") or "<vm_name>")
    if kind == "hyperv":
        return f"on the Hyper-V host, with the VM off: Set-VMFirmware -VMName {vm} -EnableSecureBoot Off"
    if kind == "qemu":
        return (
            f"boot the VM with OVMF firmware without Secure Boot: set vm_hosts.{host}.ovmf_code to OVMF_CODE_4M.fd "
            "(not the .secboot.fd / .ms.fd variants) and use a vars file without enrolled keys"
        )
    if kind == "libvirt":
        return f"give domain {vm} a non-Secure-Boot OVMF loader (OVMF_CODE_4M.fd, <loader secure='no'>) and a fresh NVRAM"
    return "turn Secure Boot off in the VM's firmware settings (Hyper-V: Set-VMFirmware -EnableSecureBoot Off; QEMU: non-secure OVMF_CODE_4M.fd)"


def step_read_state(d: Deployment) -> None:
    d.state = read_guest_state(d.guest, d.ctx, pkg=d.pkg, guest_dir=d.dir)
    s = d.state
    d.driver = "loaded" if s.service.running else ("stopped" if s.service.exists else "not installed")
    if not s.synthetic:
        d.ctx.say(f"{d.name}: {ops_for(d.guest).summary(s)}")


def step_check(d: Deployment) -> None:
    s = d.state
    if s.synthetic:
        d.ctx.say("[dry] the checks run on the real state; planning as for an unprepared test machine")
        return
    if not s.elevated:
        raise GuestNotReady(
            f"{d.name}: the remote session is not elevated (not an administrator)",
            "use an account in the guest's Administrators group (local accounts: LocalAccountTokenFilterPolicy=1)",
        )
    if s.secure_boot is True:
        raise GuestNotReady(f"{d.name}: Secure Boot is on, so TESTSIGNING cannot be enabled and test-signed drivers cannot load", _secure_boot_fix(d))
    if s.hvci:
        raise GuestNotReady(
            f"{d.name}: HVCI (memory integrity) is on; it blocks test-signed drivers (sc start would fail with 1275)",
            "turn off Windows Security > Device security > Core isolation > Memory integrity "
            "(or HypervisorEnforcedCodeIntegrity Enabled=0 under HKLM\\SYSTEM\\CurrentControlSet\\Control\\DeviceGuard\\Scenarios), then reboot",
        )
    if s.os_build and s.os_build < 10240:
        d.ctx.say(f"warning: {d.name} runs build {s.os_build}; the driver targets Windows 10/11")
    missing = _missing_preparation(s)
    pending = bool(s.testsigning_configured) and not s.testsigning_active  # set, but this boot predates it
    if not bool(d.target.get("test_machine")):
        if "TESTSIGNING" in missing or pending:
            need = "TESTSIGNING (bcdedit /set testsigning on + reboot)" if "TESTSIGNING" in missing else "a reboot to activate TESTSIGNING"
            raise ConfigError(
                f"{d.name} needs {need}, but targets.{d.name}.test_machine is not true, so deploy will neither change nor reboot it",
                f"set targets.{d.name}.test_machine = true for a throwaway test VM, or do it yourself on the guest",
            )
        if missing:
            d.ctx.say(f"note: {d.name} lacks {', '.join(missing)}; not changing it (targets.{d.name}.test_machine is false)")
        return
    if pending:
        d.reboot_needed = True


def step_prepare(d: Deployment) -> None:
    s = d.state
    params: dict[str, Any] = {}
    if not s.testsigning_configured:
        params["EnableTestSigning"] = True
    if not _filter_ok(s.debug_filter):
        params["SetDebugFilter"] = True
        params["DebugFilterValue"] = DEBUG_FILTER_WANTED
    if not s.cert_trusted and d.pkg.cert_path and Path(d.pkg.cert_path).is_file():
        thumb, der = cert_thumbprint(d.pkg.cert_path)
        params["CertBase64"] = base64.b64encode(der).decode()
        params["CertThumbprint"] = thumb
    result = d.guest.run_script("Set-GuestPrepared.ps1", params, timeout=float(d.ctx.config.project.deploy.script_timeout))
    if not isinstance(result, dict):
        d.reboot_needed = "EnableTestSigning" in params
        return
    bcd = result.get("bcdedit") or {}
    if params.get("EnableTestSigning") and bcd and int(bcd.get("rc") or 0) != 0:
        outcome = parse_bcdedit_set(int(bcd.get("rc") or 0), str(bcd.get("output") or ""))
        why = {"secure-boot": "the value is protected by Secure Boot policy", "access-denied": "access denied (not elevated)"}.get(outcome.outcome, "")
        fix = (
            _secure_boot_fix(d)
            if outcome.outcome == "secure-boot" or (outcome.outcome == "error" and s.secure_boot is not False)
            else (
                "use an account in the guest's Administrators group"
                if outcome.outcome == "access-denied"
                else "run it by hand in an elevated prompt to see why"
            )
        )
        raise DeployStepFailed(f"{d.name}: bcdedit /set testsigning on failed (exit {bcd.get('rc')}): {why or outcome.message or 'no output'}", fix)
    changed = result.get("changed") or []
    if changed:
        d.ctx.say(f"{d.name}: prepared {', '.join(str(c) for c in changed)}")
    if result.get("reboot_required"):
        d.reboot_needed = True


def step_reboot(d: Deployment) -> None:
    reboot_and_wait(d.ctx, d.guest, float(d.ctx.config.project.deploy.reboot_timeout), clock=d.clock, sleep=d.sleep)
    d.driver = "stopped" if d.state.service.exists else "not installed"
    if d.ctx.dry:
        return
    d.state = read_guest_state(d.guest, d.ctx, pkg=d.pkg, guest_dir=d.dir)
    if not d.state.testsigning_active:
        raise DeployStepFailed(
            f"{d.name}: TESTSIGNING is still not active after the reboot",
            "check `bcdedit /enum {current}` on the guest and that Secure Boot is off",
        )


def _plan_push(d: Deployment) -> bool:
    d.to_push = [f for f in d.pkg.files if d.state.files.get(f.name) is None or d.state.files.get(f.name) != _sha256(f)]
    return bool(d.to_push)


def _old_build_in_the_way(d: Deployment) -> bool:
    # A loaded driver's image cannot be replaced: stop it before copying over it (unsure: Windows locks it).
    svc = d.state.service
    sys_name = _sys_file(d.pkg).name
    target = normalize_image_path(_join(d.dir, sys_name))
    return svc.running and any(f.name == sys_name for f in d.to_push) and normalize_image_path(svc.binary_path or target) == target


def step_stop_old(d: Deployment) -> None:
    d.driver = "unknown (stopping the old build)"
    result = unload_driver(d.ctx, d.guest)
    if not result.stopped:
        d.driver = "loaded (old build)"
        raise DeployStepFailed(f"{d.name}: cannot stop the loaded older build: {result.message}", "reboot the guest, then deploy again")
    d.driver = "stopped"


def step_push(d: Deployment) -> None:
    for f in d.to_push:
        remote = _join(d.dir, f.name)
        d.ctx.step(f"push {f.name} -> {remote}")
        res = ops_for(d.guest).push(f, remote)
        want = _sha256(f)
        got = str(getattr(res, "sha256", "") or "").lower()
        if not d.ctx.dry and want and got and got != want:
            raise DeployStepFailed(f"{d.name}: {remote} has sha256 {got} after the copy, expected {want}", "run `invoke deploy` again")


def step_load(d: Deployment) -> None:
    d.capture = _make_capture(d) if d.verify else None
    d.driver = "unknown (load in progress)"
    d.load = load_driver(d.ctx, d.guest, d.pkg, d.capture, guest_dir=d.dir, state=d.state)
    r = d.load
    if r.capture_error:
        d.ctx.say(f"note: the DbgPrint capture did not start ({r.capture_error}); loading without it, not verified")
        d.capture = None
    d.driver = "loaded" if r.driver_loaded else "stopped"
    if r.dry:
        return
    if not r.ok:
        raise DeployStepFailed(f"{d.name}: {r.message}" if r.message else f"{d.name}: loading the driver failed")
    d.ctx.say(f"{d.name}: {_service_name(d.ctx)} is RUNNING")


def step_smoke(d: Deployment) -> None:
    r = d.load
    if r is None or r.dry or r.smoke is None:
        return
    device = str(d.ctx.config.project.device_path)
    if not r.smoke.ok:
        raise CheckFailed(f"{d.name}: smoke test: {r.smoke.describe(device)}", "see the driver's DbgPrint lines: `invoke logs`")
    d.ctx.say(f"{d.name}: smoke test ok: {r.smoke.describe(device)}")


def step_verify(d: Deployment) -> None:
    if d.capture is None:
        d.ctx.say(f"note: DbgPrint sequence not verified on {d.name} (capture unavailable)")
        return
    verdict = d.capture.wait_for("load")
    if d.ctx.dry:
        return  # the capture printed what it would wait for
    d.ctx.say(_render(verdict))
    save = getattr(d.capture, "save", None)
    saved = save(d.ctx.artifacts / "logs" / d.name) if callable(save) else None
    if saved is not None:
        d.ctx.say(f"DbgPrint log saved: {saved} (the capture keeps running until the next deploy starts one; `invoke logs` pulls it)")
    if not getattr(verdict, "passed", False):
        raise CheckFailed(f"{d.name}: DbgPrint check failed: {getattr(verdict, 'message', '')}", "`invoke logs` pulls the full capture")


def _render(verdict: Any) -> str:
    method = getattr(verdict, "render_table", None)
    if callable(method):
        return str(method())
    try:
        from ..parse.expect import render_table  # the real Verdict is rendered by a function

        return str(render_table(verdict))
    except (ImportError, AttributeError, TypeError):
        return str(getattr(verdict, "message", ""))


def _make_capture(d: Deployment) -> Any:
    if d.capture_factory is not None:
        return d.capture_factory(d.ctx, d.guest, d.run_id)
    try:
        return ops_for(d.guest).new_capture(d.ctx, d.run_id, d.dir)
    except ConfigError:
        raise  # a wrong [debugview] setting is the user's to fix, not to skip silently
    except PipelineError as exc:
        d.ctx.say(f"note: DbgPrint capture unavailable ({exc.message}); the DbgPrint check is skipped")
        return None


PLAN: list[Step] = [
    Step("state", "read the guest's state (Get-GuestState.ps1: one round trip)", step_read_state),
    Step("check", "check elevation, OS, Secure Boot, HVCI, TESTSIGNING, Debug Print Filter, test cert", step_check),
    Step(
        "prepare",
        "test machines only: bcdedit testsigning on, Debug Print Filter 0xF, trust the test cert (Set-GuestPrepared.ps1)",
        step_prepare,
        when=lambda d: bool(_missing_preparation(d.state)) and bool(d.target.get("test_machine")),
    ),
    Step(
        "reboot",
        "reboot when TESTSIGNING is pending; wait for a new boot time, then readiness",
        step_reboot,
        when=lambda d: d.reboot_needed,
        if_interrupted="guest rebooting or rebooted; the driver is not loaded",
    ),
    Step(
        "stop-old",
        "stop the loaded older build before replacing its image",
        step_stop_old,
        when=lambda d: _plan_push(d) and _old_build_in_the_way(d),
    ),
    Step(
        "push",
        "copy package files whose hash differs (temp name + rename, hashes checked)",
        step_push,
        when=_plan_push,
        if_interrupted="package partly copied (no file is half-written in place); the driver is not loaded from it yet",
    ),
    Step(
        "load",
        "one batch: start capture, stop old + sc create/config + sc start (Invoke-DriverLoad.ps1), smoke test",
        step_load,
        if_interrupted="driver state unknown: the load may have completed",
    ),
    Step("smoke", "CreateFileW on the device must work; DeviceIoControl/ReadFile -> ERROR_INVALID_FUNCTION", step_smoke),
    Step("verify", "read the DbgPrint capture and check the `load` expectations", step_verify, when=lambda d: d.verify),
]


def print_plan(ctx: RunContext, plan: list[Step]) -> None:
    ctx.say("[dry] deploy plan (steps apply when needed; a dry run assumes a first deploy):")
    for i, step in enumerate(plan, 1):
        ctx.say(f"[dry]   {i}. {step.name}: {step.summary}")


def _driver_state_now(d: Deployment) -> str:
    """Best effort after an interruption: ask the guest (one round trip) what the service is doing."""
    try:
        s = read_guest_state(d.guest, d.ctx)
    except (PipelineError, KeyboardInterrupt):
        return f"unknown: connection lost (last known: {d.driver})"
    if s.synthetic:
        return d.driver
    if s.service.running:
        return "driver left loaded (RUNNING)"
    return "driver stopped" if s.service.exists else "driver not installed"


def execute(plan: list[Step], d: Deployment) -> int:
    """Run the plan's applicable steps in order; interruptions and lost connections say what state remains."""
    for step in plan:
        if not step.when(d):
            continue
        if d.renew is not None:
            d.renew()
        d.ctx.step(f"{step.name}: {step.summary}")
        try:
            step.action(d)
        except KeyboardInterrupt:
            d.ctx.say(f"interrupted during '{step.name}': {_driver_state_now(d)} on {d.name}")
            raise
        except PipelineError as exc:
            if not is_connection_error(exc) or step.name == "state":
                raise  # unreachable from the start: the transport's own message says it best
            left = step.if_interrupted or f"driver {d.driver}"
            raise EnvironmentProblem(
                f"{d.name}: connection lost during '{step.name}' ({exc.message}); guest left: {left}",
                "check the VM (bugcheck? reboot?) with `invoke status`/`invoke logs`, then run `invoke deploy` again",
            ) from None
    return 0


def deploy_to(
    ctx: RunContext,
    guest: Any,
    pkg: PackageLike,
    target: Any,
    *,
    verify: bool = True,
    capture_factory: Callable[[RunContext, Any, str], Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    plan: list[Step] | None = None,
    renew: Callable[[], None] | None = None,
) -> int:
    """Deploy `pkg` through an already open guest (tests and regress call this; `run` opens the guest)."""
    steps = plan if plan is not None else ops_for(guest).deploy_plan()
    if ctx.dry:
        print_plan(ctx, steps)
    d = Deployment(ctx, guest, pkg, target, verify=verify, capture_factory=capture_factory, clock=clock, sleep=sleep, renew=renew)
    code = execute(steps, d)
    if not ctx.dry:
        ctx.say(f"deploy ok: {pkg.name} loaded on {d.name} ({getattr(guest, 'round_trips', '?')} round trips)")
    return code


# --------------------------------------------------------------------------------------------
# Task entry points
# --------------------------------------------------------------------------------------------


@dataclass
class _PlaceholderPackage:
    """--dry without a signed package: show what a deploy of the configured driver would do."""

    dir: Path
    name: str
    files: list[Path]
    cert_path: Path
    manifest: dict[str, Any] = field(default_factory=dict)


def _signed_package(ctx: RunContext) -> PackageLike:
    from ..signing.sign import check_signed_package

    try:
        return check_signed_package(ctx)
    except PipelineError as exc:
        if not ctx.dry:
            raise
        name = f"{_service_name(ctx)}_Driver"
        base = ctx.artifacts / "package"
        ctx.say(f"[dry] no signed package yet ({exc.message}); planning with {name}.sys/.inf/.cat")
        return _PlaceholderPackage(base, name, [base / f"{name}.sys", base / f"{name}.inf", base / f"{name}.cat"], base / "test.cer")


def _open_guest(ctx: RunContext, target: Any) -> Any:
    try:
        from .open import open_target as open_guest
    except ImportError as exc:
        raise EnvironmentProblem("the guest transports (driverpipe.guest.connect) are not available", "update driverpipe") from exc
    return open_guest(ctx, target)


def run(ctx: RunContext, *, target: str | None, verify: bool = True) -> int:
    """`invoke deploy`: 0 when the driver is loaded, smoke-tested and (with verify) its DbgPrint lines checked."""
    from ..core.locks import held, target_lock
    from .leases import lease_for

    section = ctx.config.target(target)
    pkg = _signed_package(ctx)
    with held(target_lock(ctx, section), ctx):
        guest = _open_guest(ctx, section)
        lease = lease_for(ctx, section, guest)
        try:
            if lease is not None:
                lease.acquire(float(ctx.config.project.deploy.lock_wait), ctx.step)
            code = deploy_to(ctx, guest, pkg, section, verify=verify, renew=lease.renew if lease is not None else None)
            if code == 0 and not ctx.dry:
                ops_for(guest).deployed()
            return code
        finally:
            if lease is not None:
                lease.release()
            try:
                guest.close()
            except Exception:  # closing a dead connection must not mask the real outcome
                pass


def unload(ctx: RunContext, *, target: str | None, delete: bool = False) -> None:
    """`invoke unload`: sc stop, wait STOPPED, device path gone, optionally sc delete."""
    from ..core.locks import held, target_lock
    from .leases import lease_for

    section = ctx.config.target(target)
    with held(target_lock(ctx, section), ctx):
        guest = _open_guest(ctx, section)
        lease = lease_for(ctx, section, guest)
        try:
            if lease is not None:
                lease.acquire(float(ctx.config.project.deploy.lock_wait), ctx.step)
            _unload_on(ctx, section, guest, delete)
        finally:
            if lease is not None:
                lease.release()
            try:
                guest.close()
            except Exception:  # closing a dead connection must not mask the real outcome
                pass


def _unload_on(ctx: RunContext, section: Any, guest: Any, delete: bool) -> None:
    name = str(section.get("name") or getattr(guest, "name", "guest"))
    ctx.step(f"unload {_service_name(ctx)} on {name}")
    ops = ops_for(guest, section)
    capture = ops.new_capture(ctx, time.strftime("unload-%Y%m%d-%H%M%S"), _guest_dir(ctx, section)) if ops.capture_always_on else None
    try:
        result = unload_driver(ctx, guest, delete=delete)
    except KeyboardInterrupt:
        ctx.say(f"interrupted during unload on {name}: driver state unknown (sc stop may have run)")
        raise
    if result.dry:
        return
    if not result.stopped:
        raise DeployStepFailed(f"{name}: {result.message}")
    if not result.device_gone:
        raise CheckFailed(f"{name}: {result.message}", "the driver's DriverUnload must delete its symbolic link and device")
    if delete and result.deleted is False:
        raise DeployStepFailed(f"{name}: {result.message}")
    if capture is not None and result.stop_code == 0 and not ctx.dry:
        verdict = capture.wait_for("unload")
        ctx.say(_render(verdict))
        if not getattr(verdict, "passed", False):
            raise CheckFailed(f"{name}: DbgPrint check failed: {getattr(verdict, 'message', '')}", "the driver's DriverUnload lines did not appear")
    what = "not installed" if result.stop_code == 1060 else ("already stopped" if result.stop_code == 1062 else "stopped")
    ctx.say(f"{name}: {_service_name(ctx)} {what}; {ctx.config.project.device_path} is gone" + ("; service deleted" if result.deleted else ""))
