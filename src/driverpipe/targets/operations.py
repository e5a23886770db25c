"""The guest operations of a Windows guest (PowerShellOps: shipped .ps1 scripts over a
transport), and the calls every step makes through whatever target it holds
(`ops_for`): read_guest_state, load_driver, unload_driver, set_fault_step.

Round trips for an unchanged package on a prepared guest: (1) Get-GuestState.ps1,
(2) one batch = capture start + Invoke-DriverLoad.ps1 + Test-DeviceChecks.ps1,
(3) the capture's log read. Everything Windows-side was only exercised against
tests/fakes (a fake guest keeping Windows' rules), never on a real guest.

A guest's answer is untrusted input: one that is not a JSON object, or whose values
do not have the types the script returns, is "unreadable" and fails the step with
one line naming the script (`answer_of`), never a traceback and never read as a
dry run's empty answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.context import RunContext
from ..core.errors import ConfigError, PipelineError
from ..parse.bcdedit import start_options_testsigning, testsigning_enabled
from ..parse.text import native_text
from ..parse.winparse import diagnose_sc_error, parse_sc_output, sc_code
from ..transports.base import GuestScriptError
from ..transports.errors import GuestTimeout
from . import devicechecks, pnp
from .guestops import GuestOps
from .reboot import is_connection_error
from .state import (
    ERROR_FILE_NOT_FOUND,
    GuestState,
    LoadResult,
    PackageLike,
    ScOp,
    ServiceInfo,
    UnloadResult,
    _dry_state,
    _failed_line,
    _guest_dir,
    _join,
    _object,
    _service_name,
    _sha256,
    _sys_file,
    answer_of,
    cert_thumbprint,
)


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
    raw = _object("Get-GuestState.ps1", guest.run_script("Get-GuestState.ps1", params, timeout=float(ctx.config.project.deploy.script_timeout)))
    if raw is None:
        return _dry_state(pkg)
    return parse_guest_state(raw)


@answer_of("Get-GuestState.ps1")
def parse_guest_state(raw: dict[str, Any]) -> GuestState:
    bcd = raw.get("bcdedit") or {}
    configured = testsigning_enabled(native_text(bcd)) if bcd.get("rc") == 0 else None
    active = start_options_testsigning(raw.get("start_options"))
    if configured is None and active:
        configured = True
    qc = raw.get("sc_qc") or {}
    query = raw.get("sc_query") or {}
    q = parse_sc_output(native_text(query))
    c = parse_sc_output(native_text(qc))
    exists = sc_code(query.get("rc"), native_text(query)) != 1060 and (q.state is not None or c.binary_path is not None)
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


def set_fault_step(guest: Any, ctx: RunContext, step: int) -> None:
    """Write REG_DWORD FailAtStep under HKLM\\...\\Services\\<svc>\\Parameters (0 clears it)."""
    if step < 0:
        raise ConfigError(f"fault step {step} is negative", "use 0 to clear, or a 1-based DriverEntry step index")
    ops_for(guest).set_fault_step(ctx, step)


def _ps_set_fault_step(guest: Any, ctx: RunContext, step: int) -> None:
    guest.run_script("Set-FaultStep.ps1", {"ServiceName": _service_name(ctx), "Step": int(step)})


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


@answer_of("Invoke-DriverLoad.ps1")
def _ps_load_driver(ctx: RunContext, guest: Any, pkg: PackageLike, capture: Any, guest_dir: str, smoke: bool, state: GuestState | None) -> LoadResult:
    """ONE batch: capture start items + Invoke-DriverLoad.ps1 (+ Test-DeviceChecks.ps1). Does not raise on
    sc.exe failures: the result carries the code and a diagnosis. For sc 31 it also reads the capture
    to quote the driver's `<step> failed` line."""
    svc = _service_name(ctx)
    sys_file = _sys_file(pkg)
    binpath = _join(guest_dir, sys_file.name)
    device = devicechecks.device_path(ctx.config.project)
    checks = devicechecks.from_config(ctx.config.project)
    want_smoke = smoke and bool(device)  # a driver without a device: no checks (the step says so)
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
    route = pnp.package_route(pkg)  # a PnP INF: pnputil and a root-enumerated device node, not sc create
    if route is not None:
        load_params.update(InfPath=_join(guest_dir, route[0]), HardwareId=route[1])
    items.append(("Invoke-DriverLoad.ps1", load_params))
    if want_smoke:
        items.append(("Test-DeviceChecks.ps1", {"DevicePath": device, "ChecksJson": devicechecks.checks_json(checks)}))
    timeout = float(ctx.config.project.deploy.script_timeout)
    capture_error = ""
    waits = f"`sc start {svc}` (the driver's DriverEntry)" + (f" or the smoke test's calls on {device}" if want_smoke else "")
    try:
        with _naming_the_wait(waits):
            results = guest.run_batch(items, timeout=timeout)
    except GuestScriptError as exc:
        # Invoke-Batch stops at the first failing item: a capture that cannot start must not block
        # the load. Retry without it (one more round trip, only in this case); the caller is told.
        if not capture_items or not any(name in exc.message for name, _ in capture_items):
            raise
        capture_error = exc.message
        capture = None
        items = items[len(capture_items) :]
        with _naming_the_wait(waits):
            results = guest.run_batch(items, timeout=timeout)
    n_capture = len(items) - 1 - (1 if want_smoke else 0)
    load = _object("Invoke-DriverLoad.ps1", results[n_capture] if results and len(results) > n_capture else None)
    if load is None:
        return LoadResult(ok=True, start_code=None, dry=True)
    ops = [ScOp(str(o.get("op")), int(o.get("rc") or 0), native_text(o)) for o in (load.get("ops") or [])]
    result = LoadResult(ok=bool(load.get("ok")), start_code=None, ops=ops, error=str(load.get("error") or ""), capture_error=capture_error)
    if want_smoke and len(results) > n_capture + 1 and isinstance(results[n_capture + 1], dict):
        result.smoke = devicechecks.parse_result(results[n_capture + 1], checks, source="Test-DeviceChecks.ps1")
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
    failure = pnp.load_failure(load, route[0]) if route is not None else None
    if failure:
        result.ok, result.message = False, failure
        return result
    for op in ops:
        # A stop answered 1061 (already stopping) was waited for by the script, like a 0: the
        # outcome to report is the start's, never "sc stop failed with 1061".
        accepted = (0, 1061, 1062) if op.op == "stop" else (0, 1062)
        if op.op in ("create", "config", "stop") and op.code not in accepted:
            result.message = diagnose_sc_error(op.code, context={**context, "op": op.op, "output": op.output})
            return result
    start = next((op for op in ops if op.op == "start"), None)
    if start is None:
        return result
    code = result.start_code = pnp.start_code(load, start.code)
    final = load.get("final_query") or {}
    final_state = parse_sc_output(native_text(final)).state
    # sc start returns 0 once DriverEntry succeeded: the driver is loaded, whatever a racing query says.
    result.driver_loaded = code == 0 or final_state == 4
    if code == 0:
        result.ok = True
        return result
    result.ok = False
    if code == 31 and capture is not None:
        try:
            result.verdict = capture.wait_for("load")
            result.failed_line = _failed_line(result.verdict, str(ctx.config.project.log_prefix))
        except PipelineError as exc:
            if is_connection_error(exc):
                raise
    result.message = diagnose_sc_error(code, context={**context, "op": "start", "failed_line": result.failed_line, "output": start.output})
    return result


@contextmanager
def _naming_the_wait(waits: str) -> Iterator[None]:
    """A guest timeout here says what the script was waiting on (the transport knows only its name)."""
    try:
        yield
    except GuestTimeout as hung:
        raise GuestTimeout(f"{hung.message} (it was waiting on {waits})", hung.hint) from None


def unload_driver(ctx: RunContext, guest: Any, delete: bool = False) -> UnloadResult:
    """sc stop, wait for STOPPED, check the device path is gone (ERROR_FILE_NOT_FOUND), optionally sc delete."""
    return ops_for(guest).unload(ctx, delete=delete)


@answer_of("Invoke-DriverUnload.ps1")
def _ps_unload_driver(ctx: RunContext, guest: Any, delete: bool = False) -> UnloadResult:
    svc = _service_name(ctx)
    device = devicechecks.device_path(ctx.config.project)
    params: dict[str, Any] = {"ServiceName": svc, "DevicePath": device, "Delete": bool(delete)}
    hwid = pnp.project_hardware_id(ctx)  # a PnP package: its device node goes, and on delete its driver-store package
    if hwid:
        params["HardwareId"] = hwid
    with _naming_the_wait(f"`sc stop {svc}` (the driver's DriverUnload)" + (f" or opening {device}" if device else "")):
        raw = _object(
            "Invoke-DriverUnload.ps1",
            guest.run_script(
                "Invoke-DriverUnload.ps1",
                params,
                timeout=float(ctx.config.project.deploy.script_timeout),
            ),
        )
    if raw is None:
        return UnloadResult(stopped=True, stop_code=0, device_gone=True, device_open_error=None, dry=True)
    stop = raw.get("stop") or {}
    stop_code = sc_code(stop.get("rc"), native_text(stop))
    final = raw.get("final_query") or {}
    final_parsed = parse_sc_output(native_text(final))
    not_installed = stop_code == 1060
    stopped = not_installed or final_parsed.state == 1 or stop_code == 1062
    open_error = raw.get("device_open_error")
    open_error = None if open_error is None else int(open_error)
    # 3: ERROR_PATH_NOT_FOUND, same meaning for a device path. No device declared: not applicable.
    gone = not device or open_error in (ERROR_FILE_NOT_FOUND, 3)
    result = UnloadResult(stopped=stopped, stop_code=stop_code, device_gone=gone, device_open_error=open_error)
    if delete and isinstance(raw.get("delete"), dict):
        d = raw["delete"]
        result.delete_code = sc_code(d.get("rc"), native_text(d))
        result.deleted = result.delete_code in (0, 1060)
    messages = []
    if not stopped:
        messages.append(diagnose_sc_error(stop_code, context={"op": "stop", "service": svc, "output": native_text(stop)}))
    if not gone:
        messages.append(
            f"{device} still opens (Win32 {open_error}) after the stop: the driver did not delete its symbolic link/device"
            if open_error == 0
            else f"{device}: CreateFileW gave Win32 error {open_error}, expected 2 (ERROR_FILE_NOT_FOUND)"
        )
    if delete and result.deleted is False and result.delete_code is not None:
        messages.append(diagnose_sc_error(result.delete_code, context={"op": "delete", "service": svc}))
    left = pnp.unload_failures(raw)
    if left:
        messages += left
        result.deleted = False if delete else result.deleted
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
