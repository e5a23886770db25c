"""The Wine target's guest operations and deploy plan.

Every Windows-side action is Wine's own program run by argv in the prefix:
sc.exe (start/stop/query/delete; Wine 8's sc has no `config`), reg.exe,
setupapi's InstallHinfSection (the service comes from the package's INF), and
wazabi-wine-client.exe (vm/wine/client: a Windows console program built on
Linux) for the device smoke test, the certificate trust and WinVerifyTrust.
sc.exe's output is read by the same parser as on Windows.

Deploy leaves the prefix's Wine processes running (the driver stays loaded, as
on a VM), so `invoke verify`, `logs` and `unload` find it; `invoke unload`,
`vm.stop`, `regress` and any failed or interrupted deploy end them, by pid.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from ...core.config import Section
from ...core.context import RunContext
from ...core.errors import CheckFailed, EnvironmentProblem, PipelineError, StepFailed
from ...core.files import copy_atomic, sha256_file
from ...parse.winparse import diagnose_sc_error, parse_sc_output
from ...transports.base import PushResult
from ..guestops import GuestOps, LogSource
from ..state import (
    ERROR_FILE_NOT_FOUND,
    DeployStepFailed,
    GuestState,
    LoadResult,
    PackageLike,
    ScOp,
    ServiceInfo,
    SmokeResult,
    Step,
    UnloadResult,
    _failed_line,
    _sys_file,
)
from ..steps import _old_build_in_the_way, _plan_push, step_load, step_push, step_read_state, step_smoke, step_stop_old, step_verify
from . import inf_install
from .capture import Pump, WineCapture
from .prefix import Completed, WinePrefix

SERVICES_KEY = "HKLM\\System\\CurrentControlSet\\Services\\"
TOOLS_DIR = "C:\\driverpipe"
CLIENT_NAME = "wazabi-wine-client.exe"
CLIENT_CRATE = ("vm", "wine", "client")
SC_FAILED = re.compile(r"failed to (?:\w+ )?(?:\w+ )?service (\d+)")
REG_VALUE = re.compile(r"^\s+(\w+)\s+(REG_\w+)\s*(.*?)\s*$", re.M)
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


def wine_sc_code(done: Completed) -> int:
    """sc.exe's Win32 code on Wine: 0 on success, else the number in its err line (exit code as a fallback)."""
    if done.returncode == 0:
        return 0
    match = SC_FAILED.search(done.stderr)
    if match:
        return int(match.group(1))
    return int(done.returncode) or 1


def reg_value(text: str, name: str) -> str | None:
    for match in REG_VALUE.finditer(text):
        if match.group(1).lower() == name.lower():
            return match.group(3)
    return None


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

    # ------------------------------------------------------------------ state
    def _query(self) -> tuple[ServiceInfo, Completed]:
        done = self._wine(["sc", "query", self.service], during="sc query")
        parsed = parse_sc_output(done.stdout)
        code = wine_sc_code(done)
        exists = code != 1060 and parsed.state is not None
        info = ServiceInfo(exists=exists, state=parsed.state, state_name=parsed.state_name, type=parsed.type, win32_exit_code=parsed.win32_exit_code)
        return info, done

    def _image_path(self) -> str | None:
        done = self._wine(["reg", "query", SERVICES_KEY + self.service, "/v", "ImagePath"], during="reg query")
        return reg_value(done.stdout, "ImagePath")

    def read_state(self, ctx: RunContext, *, pkg: PackageLike | None = None, guest_dir: str | None = None) -> GuestState:
        if ctx.dry:
            return GuestState(synthetic=True, os_caption="Wine", secure_boot=None, secure_boot_detail="not applicable on wine", files={})
        self.pump.pump()
        service, _ = self._query()
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
        """The Windows path of the smoke/signature client in the prefix (built with cargo + rust-lld when needed)."""
        crate = self.ctx.config.root.joinpath(*CLIENT_CRATE)
        exe = crate / "target" / "x86_64-pc-windows-msvc" / "release" / CLIENT_NAME
        remote = f"{TOOLS_DIR}\\{CLIENT_NAME}"
        if self.ctx.dry:
            self.ctx.say(f"[dry] cargo build --release --locked in {crate}; copy {CLIENT_NAME} -> {remote}")
            return remote
        if not (crate / "Cargo.toml").is_file():
            raise EnvironmentProblem(f"the Wine client crate {crate} is missing", "run from a checkout of the project")
        cargo = shutil.which("cargo")
        if cargo is None:
            raise EnvironmentProblem("cargo is not installed (the Wine target builds its client with it)", "install Rust with rustup")
        done = subprocess.run([cargo, "build", "--release", "--locked", "-q"], cwd=crate, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0 or not exe.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            if "target may not be installed" in done.stderr or "can't find crate for `core`" in done.stderr:
                raise EnvironmentProblem("the Rust standard library for x86_64-pc-windows-msvc is not installed", "rustup target add x86_64-pc-windows-msvc")
            raise EnvironmentProblem(f"building the Wine client failed: {last}", f"run `cargo build --release` in {crate} to see why")
        self.push(exe, remote)
        return remote

    def _client(self, args: list[str], *, during: str) -> dict[str, Any]:
        done = self._wine([self.client(), *args], during=during, timeout=60)
        if self.ctx.dry:
            return {}
        line = next((ln for ln in reversed(done.stdout.splitlines()) if ln.startswith("{")), "")
        try:
            data = json.loads(line)
        except ValueError:
            raise DeployStepFailed(f"{self.name}: the Wine client gave no result for {during} (exit {done.returncode})", f"see {self.prefix.raw_log}") from None
        return data if isinstance(data, dict) else {}

    def smoke(self, ctx: RunContext) -> SmokeResult | None:
        data = self._client(["smoke", str(ctx.config.project.device_path)], during="the smoke test")
        if not data:
            return None
        if not data.get("open"):
            return SmokeResult(int(data.get("open_error", -1)), -1, -1, -1)
        return SmokeResult(0, int(data.get("ioctl_error", -1)), int(data.get("read_error", -1)), int(data.get("close_error", -1)))

    def check_signature(self, ctx: RunContext, pkg: PackageLike) -> str:
        """Trust the package's test certificate in the prefix, then WinVerifyTrust on the pushed .sys."""
        base = _guest_dir(ctx, self.section)
        sys_file = _sys_file(pkg)
        remote = _join(base, sys_file.name)
        if ctx.dry:
            self._client(["trust", "<package .cer>"], during="trusting the test certificate")
            self._client(["verify", remote], during="WinVerifyTrust")
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
                trusted = self._client(["trust", cert_remote], during="trusting the test certificate")
                if not trusted.get("trusted"):
                    raise DeployStepFailed(
                        f"{self.name}: could not trust the test certificate in the prefix (step {trusted.get('step')}, error {trusted.get('error')})",
                        "`invoke vm.revert --target TARGET` resets the prefix",
                    )
                self.prefix.record(trusted=thumb)
        result = self._client(["verify", remote], during="WinVerifyTrust")
        code = int(result.get("hresult", -1)) & 0xFFFFFFFF
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

    def _wait_stopped(self, timeout: float = 30.0) -> ServiceInfo:
        deadline = time.monotonic() + timeout
        while True:
            info, _ = self._query()
            if self.ctx.dry or not info.exists or info.state == 1 or time.monotonic() > deadline:
                return info
            time.sleep(0.05)

    def load(self, ctx: RunContext, pkg: PackageLike, capture: Any, *, guest_dir: str, smoke: bool, state: GuestState | None) -> LoadResult:
        self.changed = True
        sys_file = _sys_file(pkg)
        image = _join(guest_dir, sys_file.name)
        if ctx.dry:
            self._wine(["sc", "query", self.service], during="sc query")
            self._install(ctx, pkg, guest_dir, ServiceInfo())
            self._wine(["sc", "start", self.service], during="sc start")
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
        service = state.service if state is not None and not state.synthetic else self._query()[0]
        if service.running:
            stop = self._wine(["sc", "stop", self.service], during="sc stop")
            ops.append(ScOp("stop", wine_sc_code(stop), stop.stdout))
            # Wine's sc stop prints the service's state; wait only when it is not STOPPED yet.
            stopped_now = parse_sc_output(stop.stdout).state == 1
            if not stopped_now and self._wait_stopped().state not in (None, 1):
                return LoadResult(
                    ok=False, start_code=None, ops=ops, error="stop_timeout", driver_loaded=True, message=f"the running {self.service} did not stop"
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
        start = self._wine(["sc", "start", self.service], during="sc start", timeout=limit)
        if start.timed_out:
            ended = self.prefix.kill_driver_host(sys_file.name)
            return LoadResult(
                ok=False,
                start_code=None,
                ops=ops,
                message=f"DriverEntry did not return within {limit:g} s: sc start was ended, and the driver host winedevice.exe "
                f"(pid {', '.join(map(str, ended)) or 'not found'}) with it",
            )
        code = wine_sc_code(start)
        ops.append(ScOp("start", code, start.stdout + start.stderr))
        # A successful sc start prints the service's state (RUNNING); query only when it did not.
        started = parse_sc_output(start.stdout).state
        loaded = started == 4 if started is not None else self._query()[0].running
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
        return result

    def unload(self, ctx: RunContext, *, delete: bool = False) -> UnloadResult:
        self.changed = True
        if ctx.dry:
            self._wine(["sc", "stop", self.service], during="sc stop")
            self.smoke(ctx)
            if delete:
                self._wine(["sc", "delete", self.service], during="sc delete")
            return UnloadResult(stopped=True, stop_code=0, device_gone=True, device_open_error=None, dry=True)
        self.pump.pump()
        stop = self._wine(["sc", "stop", self.service], during="sc stop")
        code = wine_sc_code(stop)
        if code == 0 and parse_sc_output(stop.stdout).state == 1:
            stopped = True
        elif code == 0 or code == 1062:
            info = self._wait_stopped()
            stopped = info.state in (None, 1)
        else:
            stopped = code == 1060
        smoke = self.smoke(ctx)
        open_error = smoke.open_error if smoke is not None else None
        gone = open_error in (ERROR_FILE_NOT_FOUND, 3)
        result = UnloadResult(stopped=stopped, stop_code=code, device_gone=gone, device_open_error=open_error)
        if delete:
            done = self._wine(["sc", "delete", self.service], during="sc delete")
            result.delete_code = wine_sc_code(done)
            result.deleted = result.delete_code in (0, 1060)
            if result.deleted:
                self.prefix.record(installed_inf=None)
        messages = []
        if not stopped:
            messages.append(diagnose_sc_error(code, context={"op": "stop", "service": self.service}))
        if not gone:
            device = str(ctx.config.project.device_path)
            messages.append(
                f"{device} still opens after the stop: the driver did not delete its symbolic link/device"
                if open_error == 0
                else f"{device}: CreateFileW gave Win32 error {open_error}, expected 2 (ERROR_FILE_NOT_FOUND)"
            )
        result.message = "; ".join(messages)
        return result

    def set_fault_step(self, ctx: RunContext, step: int) -> None:
        self.changed = True
        key = SERVICES_KEY + self.service + "\\Parameters"
        done = self._wine(["reg", "add", key, "/v", "FailAtStep", "/t", "REG_DWORD", "/d", str(int(step)), "/f"], during="setting FailAtStep")
        if not ctx.dry and done.returncode != 0:
            raise DeployStepFailed(
                f"{self.name}: reg add {key} FailAtStep failed (exit {done.returncode})", "`invoke vm.revert --target TARGET` resets the prefix"
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
    Step("smoke", "CreateFileW on the device must work; DeviceIoControl/ReadFile -> ERROR_INVALID_FUNCTION", step_smoke),
    Step("verify", "read Wine's debug channel and check the `load` expectations", step_verify, when=lambda d: d.verify),
]


def open_target(ctx: RunContext, section: Section) -> WineTarget:
    return WineTarget(ctx, section).open()
