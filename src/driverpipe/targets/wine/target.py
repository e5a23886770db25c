"""The Wine target's guest operations and deploy plan.

Every Windows-side action goes through the target's agent (agent.py: one
wazabi-wine-client.exe per task, built on Linux from the package's agent crate, driven
over stdin/stdout): service query/stop/start through the SCM API with sc.exe's
numbers, the ImagePath value, the device checks, FailAtStep, the certificate
trust and WinVerifyTrust. Wine's own programs remain where only they do the
job: setupapi's InstallHinfSection and reg.exe for the INF install, sc.exe
for `delete`.

Deploy leaves the prefix's Wine processes running (the driver stays loaded, as
on a VM), so `invoke verify`, `logs` and `unload` find it; `invoke unload`,
`vm.stop`, `regress` and any failed or interrupted deploy end them, by pid.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PureWindowsPath
from typing import Any

from ...core.config import Section
from ...core.context import RunContext
from ...core.errors import CheckFailed, PipelineError, StepFailed
from ...core.files import copy_atomic, sha256_file
from ...parse.winparse import diagnose_sc_error
from ...transports.base import PushResult
from .. import devicechecks
from ..devicechecks import DeviceCheckResult
from ..guestops import GuestOps, LogSource
from ..state import (
    ERROR_FILE_NOT_FOUND,
    DeployStepFailed,
    GuestState,
    LoadResult,
    PackageLike,
    ScOp,
    ServiceInfo,
    Step,
    UnloadResult,
    _failed_line,
    _sys_file,
)
from ..steps import _old_build_in_the_way, _plan_push, step_load, step_push, step_read_state, step_smoke, step_stop_old, step_verify
from . import imports, inf_install
from .agent import AGENT_NAME as CLIENT_NAME
from .agent import STATE_NAMES, Agent, AgentTimeout, answer_number, build_agent, status_text, unreadable
from .capture import Pump, WineCapture
from .prefix import Completed, WinePrefix

SERVICES_KEY = "HKLM\\System\\CurrentControlSet\\Services\\"
SERVICES_SUBKEY = SERVICES_KEY[len("HKLM\\") :]  # the agent's keys are under HKLM already
STOP_WAIT_MS = 30_000
HOST_EXIT_TIMEOUT = 10.0  # seconds a stopped driver's winedevice.exe may take to end
HOST_WAKE_AFTER = 2.0  # seconds after which a host that still has the image is sent a request (see _stop)
TOOLS_DIR = "C:\\driverpipe"
# Wine's sc.exe prints its failures on the err channel: "failed to start service 1060",
# "failed to query service status 1060", "failed to open service manager: 5".
SC_FAILED = re.compile(r"failed to (?:\w+ ){0,3}?(?:service(?: status)?|service manager):? (\d+)")
HRESULTS = {
    0: "S_OK",
    0x80096010: "TRUST_E_BAD_DIGEST (the file changed after signing)",
    0x800B0100: "TRUST_E_NOSIGNATURE (no embedded signature)",
    0x800B0109: "CERT_E_UNTRUSTEDROOT",
    0x80096004: "TRUST_E_CERT_SIGNATURE",
}
NOT_APPLICABLE = {
    "TESTSIGNING": "Wine does not enforce driver signatures",
    "Secure Boot / HVCI": "no firmware, no hypervisor",
    "Debug Print Filter": "Wine's debug channel prints every DbgPrint",
    "reboot": "nothing to boot",
    "bugcheck detection": "a driver fault ends its winedevice.exe, it cannot stop a kernel",
    "Driver Verifier": "no verifier in Wine",
    "IRP_MJ_CLEANUP": "Wine sends IRP_MJ_CLOSE only",
}


SC_UNKNOWN = -1  # sc.exe failed without printing its Win32 code


def wine_sc_code(done: Completed) -> int:
    """sc.exe's Win32 code on Wine: 0 on success, else the number in its err line.

    Never the exit status as a fallback: Unix keeps its low byte only (1060 & 0xFF = 36,
    a different Win32 error), so without the err line the code is SC_UNKNOWN."""
    if done.returncode == 0:
        return 0
    match = SC_FAILED.search(done.stderr)
    return int(match.group(1)) if match else SC_UNKNOWN


def prefix_path(ctx: RunContext, section: Section) -> Path:
    """The target's prefix (config.wine_prefix: never inside the project)."""
    return ctx.config.wine_prefix(section)


class WineTarget(GuestOps):
    """A Wine prefix on this machine, as a target."""

    kind = "wine"
    capture_always_on = True

    def __init__(self, ctx: RunContext, section: Section):
        self.ctx = ctx
        self.section = section
        self.name = str(section.name)
        w = section.wine
        self.prefix = WinePrefix(
            prefix_path(ctx, section), wine=str(w["wine"]), wineserver=str(w["wineserver"]), start_timeout=float(w["start_timeout"]), say=ctx.step
        )
        self.pump = Pump(self.prefix)
        self.service = str(ctx.config.project.service_name)
        self._agent: Agent | None = None
        self._trips = 0
        self.keep_running = False  # set by a successful deploy: the driver stays loaded
        self.changed = False  # this task loaded, unloaded or reconfigured the driver

    @property
    def round_trips(self) -> int:
        return self._trips

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> WineTarget:
        """Create the prefix once, start our persistent server with the capture (reused when it runs)."""
        if self.ctx.dry:
            self.ctx.say(f"[dry] Wine prefix {self.prefix.path}: create if missing (wineboot -i), wineserver -p, start services with the capture")
            return self
        self.prefix.ensure()
        self.prefix.start()
        return self

    def close(self) -> None:
        """End Wine when this task started it or changed the driver (unload, a failed or interrupted deploy),
        unless a deploy succeeded (the driver stays loaded, documented). Read-only tasks leave it as they found it."""
        if self._agent is not None:
            self._agent.close()
        if self.ctx.dry or self.keep_running:
            return
        if self.prefix.started_here or self.changed:
            self.prefix.stop()

    def deployed(self) -> None:
        """Documented: a deploy leaves the driver loaded, so Wine keeps running until unload/vm.stop/regress."""
        self.keep_running = True

    def _wine(self, args: list[str], *, during: str, timeout: float | None = None, debug: str | None = None) -> Completed:
        if self.ctx.dry:
            self.ctx.say("[dry] wine " + " ".join(args))
            return Completed(argv=["wine", *args], returncode=0, stdout="", stderr="", seconds=0.0)
        self._trips += 1
        kwargs: dict[str, Any] = {"during": during, "timeout": float(timeout or self.ctx.config.project.deploy.script_timeout)}
        if debug:
            kwargs["debug"] = debug
        return self.prefix.run(args, **kwargs)

    # ------------------------------------------------------------------ the agent
    def _ask(self, fields: list[str], *, during: str, timeout: float = 60.0, may_time_out: bool = False) -> dict[str, Any]:
        """One agent request (see agent.py); {} in a dry run. No answer in time is a failed step,
        or AgentTimeout for the caller that handles it (`may_time_out`: a DriverEntry that hangs)."""
        if self.ctx.dry:
            self.ctx.say(f"[dry] wine {CLIENT_NAME} " + " ".join(fields))
            return {}
        if self._agent is None:
            self._agent = Agent(self.prefix, self.client())
        self._trips += 1
        try:
            return self._agent.request(fields, during=during, timeout=timeout)
        except AgentTimeout:
            if may_time_out:
                raise
            raise DeployStepFailed(f"{self.name}: the Wine agent did not answer {during} within {timeout:g} s", f"see {self.prefix.raw_log}") from None

    def _service_info(self, data: dict[str, Any]) -> ServiceInfo:
        if not data.get("exists"):
            return ServiceInfo(exists=False)
        try:
            state = int(data["state"])
            return ServiceInfo(
                exists=True, state=state, state_name=STATE_NAMES.get(state), type=int(data["type"]), win32_exit_code=int(data["win32_exit_code"])
            )
        except (KeyError, TypeError, ValueError):
            raise unreadable(self.name, "service status", data) from None

    def _query(self) -> ServiceInfo:
        return self._service_info(self._ask(["query", self.service], during="the service query"))

    def _image_path(self) -> str | None:
        data = self._ask(["get_string", SERVICES_SUBKEY + self.service, "ImagePath"], during="reading ImagePath")
        return str(data["value"]) if data.get("error") == 0 and "value" in data else None

    def _stop(self, image_name: str) -> tuple[int, dict[str, Any], list[int]]:
        """Stop, wait for STOPPED, then for the driver's winedevice.exe to end: (Win32 code, answer, hosts still alive).

        Wine reports STOPPED once the driver unloaded, while its host process is still
        shutting down (seen in about half of the stops here); a start in that window
        meets a dying host (agent.py). So the next start never does."""
        hosts = self.prefix.driver_hosts(image_name) if image_name and not self.ctx.dry else []
        data = self._ask(["stop", self.service, str(STOP_WAIT_MS)], during="the service stop", timeout=STOP_WAIT_MS / 1000 + 30)
        code = answer_number(self.name, data, "error", 0)
        left = self.prefix.wait_ended(hosts, HOST_WAKE_AFTER) if hosts and code == 0 else []
        device = devicechecks.device_path(self.ctx.config.project)
        if left and device:
            # Seen once in about 400 stops: STOPPED came back, yet the host ran DriverUnload only 10 s
            # later, right when the next request (opening the device) reached it. So a host that still
            # has the image after HOST_WAKE_AFTER gets that request now, said aloud, never silently.
            raw = data.get("state")
            state = STATE_NAMES.get(raw, raw) if isinstance(raw, int) else raw
            self.ctx.say(
                f"note: {self.service} answered the stop ({state}) but its winedevice.exe (pid {', '.join(map(str, left))}) still has "
                f"{image_name} after {HOST_WAKE_AFTER:g} s; opening {device} once to wake it"
            )
            self._open_error(self.ctx)
        left = self.prefix.wait_ended(left, HOST_EXIT_TIMEOUT) if left else []
        return code, data, left

    def read_state(self, ctx: RunContext, *, pkg: PackageLike | None = None, guest_dir: str | None = None) -> GuestState:
        if ctx.dry:
            return GuestState(synthetic=True, os_caption="Wine", secure_boot=None, secure_boot_detail="not applicable on wine", files={})
        self.pump.pump()
        service = self._query()
        if service.exists:
            service.binary_path = self._image_path()
        files: dict[str, str | None] = {}
        if pkg is not None:
            base = guest_dir or _guest_dir(ctx, self.section)
            for f in pkg.files:
                local = self.prefix.host_path(_join(base, f.name))
                files[f.name] = sha256_file(local) if local.is_file() else None
        return GuestState(
            elevated=True,
            os_caption=f"Wine ({self.prefix.version()})",
            secure_boot=None,
            secure_boot_detail="not applicable on wine",
            hvci=False,
            files=files,
            service=service,
            raw={"prefix": str(self.prefix.path)},
        )

    # ------------------------------------------------------------------ files
    def push(self, local: Path, remote: str) -> PushResult:
        dest = self.prefix.host_path(remote)
        if self.ctx.dry:
            self.ctx.say(f"[dry] copy {local} -> {dest} (temp name + rename; skipped when the hash matches)")
            return PushResult(remote, "", True, 0)
        want = sha256_file(local)
        size = local.stat().st_size
        if dest.is_file() and sha256_file(dest) == want:
            return PushResult(remote, want, False, size)
        copy_atomic(local, dest)  # temp name + rename: never half-written in place
        return PushResult(remote, sha256_file(dest), True, size)

    def pull(self, remote: str, local: Path) -> None:
        copy_atomic(self.prefix.host_path(remote), local)

    # ------------------------------------------------------------------ the client
    def client(self) -> str:
        """The Windows path of the agent in the prefix (agent.py builds it, in the user's cache, when needed)."""
        exe = build_agent(dry=self.ctx.dry, say=self.ctx.say)
        remote = f"{TOOLS_DIR}\\{CLIENT_NAME}"
        if self.ctx.dry:
            self.ctx.say(f"[dry] copy {CLIENT_NAME} -> {remote}")
            return remote
        self.push(exe, remote)
        return remote

    def smoke(self, ctx: RunContext) -> DeviceCheckResult | None:
        """The project's device checks (targets/devicechecks.py) on one handle; None: no device declared, or dry."""
        device = devicechecks.device_path(ctx.config.project)
        if not device:
            return None
        checks = devicechecks.from_config(ctx.config.project)
        data = self._ask(devicechecks.agent_fields(device, checks), during="the device checks")
        return devicechecks.parse_result(data, checks, source="the Wine agent") if data else None

    def _open_error(self, ctx: RunContext) -> int | None:
        """CreateFileW's Win32 error on the device (0: it opened); None: no device declared, or dry."""
        device = devicechecks.device_path(ctx.config.project)
        if not device:
            return None
        data = self._ask(["checks", device], during="opening the device")
        return answer_number(self.name, data, "open_error", None) if data else None

    def check_signature(self, ctx: RunContext, pkg: PackageLike) -> str:
        """Trust the package's test certificate in the prefix, then WinVerifyTrust on the pushed .sys."""
        base = _guest_dir(ctx, self.section)
        sys_file = _sys_file(pkg)
        remote = _join(base, sys_file.name)
        if ctx.dry:
            self._ask(["trust", "<package .cer>"], during="trusting the test certificate")
            self._ask(["verify", remote], during="WinVerifyTrust")
            return ""
        digest = sha256_file(self.prefix.host_path(remote))
        if self.prefix.recorded("verified") == digest:
            return "WinVerifyTrust S_OK for this exact file earlier in this prefix"
        cert = Path(pkg.cert_path) if pkg.cert_path else None
        if cert is not None and cert.is_file():
            thumb = hashlib.sha1(cert.read_bytes()).hexdigest()
            if self.prefix.recorded("trusted") != thumb:
                cert_remote = _join(base, cert.name)
                self.push(cert, cert_remote)
                trusted = self._ask(["trust", cert_remote], during="trusting the test certificate")
                if not trusted.get("trusted"):
                    raise DeployStepFailed(
                        f"{self.name}: could not trust the test certificate in the prefix (step {trusted.get('step')}, error {trusted.get('error')})",
                        "`invoke vm.revert --target TARGET` resets the prefix",
                    )
                self.prefix.record(trusted=thumb)
        result = self._ask(["verify", remote], during="WinVerifyTrust")
        code = answer_number(self.name, result, "hresult", -1) & 0xFFFFFFFF
        if code != 0:
            meaning = HRESULTS.get(code, "see the WinVerifyTrust documentation")
            raise CheckFailed(
                f"{self.name}: WinVerifyTrust in the Wine prefix refuses {sys_file.name}: 0x{code:08X} {meaning}", "run `invoke build sign` again"
            )
        self.prefix.record(verified=digest)
        return "WinVerifyTrust S_OK (Wine checks the digest and the signature, not the certificate chain)"

    # ------------------------------------------------------------------ install / load / unload
    def _install(self, ctx: RunContext, pkg: PackageLike, base: str, service: ServiceInfo) -> ScOp | None:
        """The service from the package's INF (setupapi DefaultInstall), ImagePath -> the pushed image. None: nothing to do."""
        inf = next((f for f in pkg.files if f.suffix.lower() == ".inf"), None)
        if inf is None:
            raise CheckFailed(f"the signed package {pkg.name} has no .inf", "run `invoke build sign` again")
        image = _join(base, _sys_file(pkg).name)
        inf_hash = sha256_file(inf) if inf.is_file() else ""
        if service.exists and self.prefix.recorded("installed_inf") == inf_hash and (service.binary_path or "").lower() == image.lower():
            return None
        remote_inf = _join(base, inf.name)
        ctx.step(f"install {self.service} from {inf.name} (setupapi DefaultInstall), ImagePath -> {image}")
        # rundll32 always exits 0 (even for a missing INF): the registry tells whether it worked.
        inf_install.install(self._wine, inf, remote_inf)
        check = self._wine(["reg", "query", SERVICES_KEY + self.service], during="reg query")
        if not ctx.dry and check.returncode != 0:
            return ScOp("create", 1, f"setupapi did not create service {self.service} from {inf.name}")
        # Wine 8 does not know DIRID 13 (the driver store): point ImagePath at the pushed image.
        done = self._wine(["reg", "add", SERVICES_KEY + self.service, "/v", "ImagePath", "/t", "REG_EXPAND_SZ", "/d", image, "/f"], during="setting ImagePath")
        if not ctx.dry and done.returncode != 0:
            return ScOp("config", done.returncode, f"reg add ImagePath failed: {done.stderr.strip()[-200:]}")
        if not ctx.dry:
            self.prefix.record(installed_inf=inf_hash)
        return ScOp("create", 0, "")

    def load(self, ctx: RunContext, pkg: PackageLike, capture: Any, *, guest_dir: str, smoke: bool, state: GuestState | None) -> LoadResult:
        self.changed = True
        sys_file = _sys_file(pkg)
        image = _join(guest_dir, sys_file.name)
        if ctx.dry:
            self._ask(["query", self.service], during="the service query")
            self._install(ctx, pkg, guest_dir, ServiceInfo())
            self._ask(["start", self.service], during="the service start")
            if smoke:
                self.smoke(ctx)
            return LoadResult(ok=True, start_code=None, dry=True)
        local = self.prefix.host_path(image)
        if not local.is_file():
            return LoadResult(ok=False, start_code=None, error="image_missing", message=f"{image} is missing in the prefix; nothing was loaded")
        want = sha256_file(sys_file)
        if sha256_file(local) != want:
            return LoadResult(ok=False, start_code=None, error="hash_mismatch", message=f"{image} in the prefix does not match the signed package; not loaded")
        self.pump.pump()
        ops: list[ScOp] = []
        # The deploy plan read the state a moment ago: no second query then (regress cycles pass none).
        service = state.service if state is not None and not state.synthetic else self._query()
        if service.running or service.state in (2, 3):  # START_PENDING / STOP_PENDING: settle it first
            code, stop, left = self._stop(sys_file.name)
            ops.append(ScOp("stop", code, status_text(stop)))
            if code not in (0, 1062) or left or self._service_info(stop).state not in (None, 1):
                host = f"; its driver host winedevice.exe (pid {', '.join(map(str, left))}) still runs {HOST_EXIT_TIMEOUT:g} s later" if left else ""
                return LoadResult(
                    ok=False,
                    start_code=None,
                    ops=ops,
                    error="stop_timeout",
                    driver_loaded=True,
                    message=f"the running {self.service} did not stop (Win32 {code}){host}",
                )
        if service.exists:
            known = state.service.binary_path if state is not None and state.service.exists else None
            service.binary_path = known or self._image_path()
        installed = self._install(ctx, pkg, guest_dir, service)
        if installed is not None:
            ops.append(installed)
            if installed.rc != 0:
                return LoadResult(ok=False, start_code=None, ops=ops, message=installed.output)
        limit = float(ctx.config.project.expect.load.timeout)
        hosts_before = self.prefix.driver_host_pids()
        log_mark = imports.log_mark(self.prefix.raw_log)  # a loader message of an earlier start is not this one's
        try:
            start = self._ask(["start", self.service], during="the service start", timeout=limit, may_time_out=True)
        except AgentTimeout:
            ended = self.prefix.kill_driver_host(sys_file.name)
            return LoadResult(
                ok=False,
                start_code=None,
                ops=ops,
                message=f"DriverEntry did not return within {limit:g} s: sc start was ended, and the driver host winedevice.exe "
                f"(pid {', '.join(map(str, ended)) or 'not found'}) with it",
            )
        code = answer_number(self.name, start, "error", 0)
        ops.append(ScOp("start", code, status_text(start)))
        if code != 0:
            # The host Wine started for this failed load is ending now, as after a stop: the next
            # start must not be handed to it (that was the regress cycle's 1359), so wait for it here.
            self.prefix.wait_ended(sorted(self.prefix.driver_host_pids() - hosts_before), HOST_EXIT_TIMEOUT)
        loaded = self._service_info(start).running
        result = LoadResult(ok=code == 0, start_code=code, ops=ops, driver_loaded=loaded)
        if smoke:  # after a failed DriverEntry too: the device must not open then
            result.smoke = self.smoke(ctx)
        if code == 0:
            return result
        if code == 31 and capture is not None:
            try:
                result.verdict = capture.wait_for("load")
                result.failed_line = _failed_line(result.verdict, str(ctx.config.project.log_prefix))
            except PipelineError:
                pass
        result.message = diagnose_sc_error(code, context={"op": "start", "service": self.service, "binpath": image, "failed_line": result.failed_line})
        result.message = imports.loader_failure(self.prefix.raw_log, since=log_mark) or result.message
        return result

    def unload(self, ctx: RunContext, *, delete: bool = False) -> UnloadResult:
        self.changed = True
        if ctx.dry:
            self._ask(["stop", self.service, str(STOP_WAIT_MS)], during="the service stop")
            self._open_error(ctx)
            if delete:
                self._wine(["sc", "delete", self.service], during="sc delete")
            return UnloadResult(stopped=True, stop_code=0, device_gone=True, device_open_error=None, dry=True)
        self.pump.pump()
        image = PureWindowsPath(self._image_path() or "").name
        code, stop, left = self._stop(image)
        stopped = not left and (code == 1060 or (code in (0, 1062) and self._service_info(stop).state in (None, 1)))
        open_error = self._open_error(ctx)
        device = devicechecks.device_path(ctx.config.project)
        gone = not device or open_error in (ERROR_FILE_NOT_FOUND, 3)
        result = UnloadResult(stopped=stopped, stop_code=code, device_gone=gone, device_open_error=open_error)
        if delete:
            done = self._wine(["sc", "delete", self.service], during="sc delete")
            result.delete_code = wine_sc_code(done)
            result.deleted = result.delete_code in (0, 1060)
            if result.deleted:
                self.prefix.record(installed_inf=None)
        messages = []
        if left:
            messages.append(
                f"{self.service} stopped, but its driver host winedevice.exe (pid {', '.join(map(str, left))}) still runs {HOST_EXIT_TIMEOUT:g} s later"
            )
        elif not stopped:
            messages.append(diagnose_sc_error(code, context={"op": "stop", "service": self.service}))
        if not gone:
            messages.append(
                f"{device} still opens after the stop: the driver did not delete its symbolic link/device"
                if open_error == 0
                else f"{device}: CreateFileW gave Win32 error {open_error}, expected 2 (ERROR_FILE_NOT_FOUND)"
            )
        result.message = "; ".join(messages)
        return result

    def set_fault_step(self, ctx: RunContext, step: int) -> None:
        self.changed = True
        key = SERVICES_SUBKEY + self.service + "\\Parameters"
        done = self._ask(["set_dword", key, "FailAtStep", str(int(step))], during="setting FailAtStep")
        if not ctx.dry and done.get("error") != 0:
            raise DeployStepFailed(
                f"{self.name}: setting HKLM\\{key} FailAtStep failed (Win32 {done.get('error')})", "`invoke vm.revert --target TARGET` resets the prefix"
            )

    def new_capture(self, ctx: RunContext, run_id: str, guest_dir: str) -> WineCapture:
        return WineCapture(ctx, self, run_id)

    def log_source(self, ctx: RunContext) -> LogSource:
        """The prefix's DebugView-shaped log of every DbgPrint line so far; live while our Wine runs."""
        self.pump.pump()
        log = self.pump.log
        if not log.is_file():
            raise StepFailed(f"no DbgPrint log in {self.prefix.path} yet", "run `invoke deploy` first, or check a saved log with --log FILE")
        capture = WineCapture(ctx, self, "verify")
        start = int(self.prefix.recorded("capture_start", 0) or 0)  # the last deploy's (or regress run's) lines

        def read_range(offset: int, max_bytes: int) -> bytes:
            return self.pump.read(start + offset, max_bytes)

        run = self.prefix.recorded("capture_run", "")
        return LogSource(name=f"{log} (run {run})", read_range=read_range, live=self.prefix.running(), explain_empty=capture.explain_empty)

    def collect_logs(self, ctx: RunContext, dest: Path) -> list[Path]:
        """The DbgPrint log and Wine's raw debug log (no crash dumps: Wine has none)."""
        self.pump.pump()
        written = []
        for src in (self.pump.log, self.prefix.raw_log):
            if src.is_file():
                copy_atomic(src, dest / src.name)
                written.append(dest / src.name)
        return written

    def ready(self) -> bool:
        return self.ctx.dry or self.prefix.running()

    # ------------------------------------------------------------------ plan
    def deploy_plan(self) -> list[Step]:
        return WINE_PLAN

    def not_applicable(self) -> dict[str, str]:
        return dict(NOT_APPLICABLE)

    def summary(self, state: GuestState) -> str:
        svc = state.service
        what = "not installed" if not svc.exists else (svc.state_name or str(svc.state))
        return f"{state.os_caption}, prefix {self.prefix.path}, {self.service} {what}" + (f" ({svc.binary_path})" if svc.binary_path else "")


def _guest_dir(ctx: RunContext, section: Any) -> str:
    return str(section.get("guest_dir") or ctx.config.project.deploy.guest_dir)


def _join(directory: str, name: str) -> str:
    return directory.rstrip("\\") + "\\" + name


# ----------------------------------------------------------------------------- the deploy plan on Wine


def _target(d: Any) -> WineTarget:
    assert isinstance(d.guest, WineTarget)
    return d.guest


def step_not_applicable(d: Any) -> None:
    for what, why in _target(d).not_applicable().items():
        d.ctx.say(f"{d.name}: {what}: not applicable on wine ({why})")


def step_signature(d: Any) -> None:
    what = _target(d).check_signature(d.ctx, d.pkg)
    if what:
        d.ctx.say(f"{d.name}: signature: {what}")


WINE_PLAN: list[Step] = [
    Step("state", "start Wine (persistent server, service manager with the capture); read the service and pushed files", step_read_state),
    Step("not-applicable", "TESTSIGNING, Secure Boot, HVCI, Debug Print Filter, reboot, bugchecks, verifier: not applicable on wine", step_not_applicable),
    Step("stop-old", "stop the loaded older build before replacing its image", step_stop_old, when=lambda d: _plan_push(d) and _old_build_in_the_way(d)),
    Step("push", "copy package files whose hash differs into the prefix (temp name + rename)", step_push, when=_plan_push),
    Step("signature", "trust the test certificate in the prefix; WinVerifyTrust on the pushed .sys", step_signature),
    Step("load", "install the service from the package's INF (setupapi) when needed, point ImagePath at the pushed image, sc start", step_load),
    Step("smoke", "the declared device checks on one handle of the device (device_check in the project config)", step_smoke),
    Step("verify", "read Wine's debug channel and check the `load` expectations", step_verify, when=lambda d: d.verify),
]


def open_target(ctx: RunContext, section: Section) -> WineTarget:
    return WineTarget(ctx, section).open()
