"""HyperVHost: a Hyper-V VM, driven by the shipped scripts in driverpipe/scripts/hyperv/.

Each operation is one .ps1 run on the Hyper-V host with BOUND parameters; each script
prints one JSON object ({"ok": true, ...} or {"ok": false, "error": ...}) as its last
line. Two ways to reach the host:

- transport "local" (the pipeline runs on the Hyper-V host, e.g. a self-hosted CI
  runner): `powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File
  <script> -Name value ...` through ctx.runner. -ExecutionPolicy Bypass applies to
  that one process only; client Windows defaults to Restricted, which refuses -File.
- transport "winrm": through driverpipe.transports.connect to the host, which needs the
  Guest to run a script given by path (see the report: requested extension).

Windows PowerShell 5.1 is what every Hyper-V host has, hence powershell.exe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..core.config import Section
from ..core.errors import ConfigError, EnvironmentProblem, StepFailed
from ..core.runner import last_meaningful_line
from ..core.scripts import file_argv, unwrap_51_arrays
from .base import VmEvent, VmState, VmStatus

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts" / "hyperv"
POWERSHELL = "powershell.exe"

# Get-VM's State enum names (Microsoft.HyperV.PowerShell.VMState).
_STATES = {
    "running": VmState.RUNNING,
    "off": VmState.STOPPED,
    "saved": VmState.STOPPED,
    "paused": VmState.PAUSED,
    "starting": VmState.RUNNING,
    "stopping": VmState.RUNNING,
    "saving": VmState.PAUSED,
    "pausing": VmState.PAUSED,
    "resuming": VmState.RUNNING,
    "reset": VmState.RUNNING,
    "runningcritical": VmState.CRASHED,
    "offcritical": VmState.CRASHED,
    "pausedcritical": VmState.CRASHED,
    "savedcritical": VmState.CRASHED,
    "stoppingcritical": VmState.CRASHED,
    "startingcritical": VmState.CRASHED,
    "resetcritical": VmState.CRASHED,
}


def script_path(name: str) -> Path:
    path = SCRIPTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no shipped Hyper-V script {name}")
    return path


def powershell_argv(script: Path, params: Mapping[str, Any]) -> list[str]:
    """powershell.exe -File argv with each parameter bound by name (never script text)."""
    for value in params.values():
        if isinstance(value, bool):
            raise TypeError("pass On/Off strings, not booleans, through -File")  # -File can't bind $true
    return file_argv(POWERSHELL, str(script), params)


def parse_result(stdout: str, script: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        text = line.strip()
        if text.startswith("{"):
            try:
                value = unwrap_51_arrays(json.loads(text))
            except ValueError:
                break
            if isinstance(value, dict):
                return value
            break
    tail = last_meaningful_line(stdout)
    raise StepFailed(f"{script} on the Hyper-V host printed no JSON result" + (f": {tail}" if tail else ""))


class HyperVHost:
    """VmHost over Hyper-V cmdlets on the host (see the module docstring)."""

    kind = "hyperv"

    def __init__(self, ctx: Any, settings: Mapping[str, Any], vm_name: str):
        self.ctx = ctx
        self.settings = settings
        self.name = vm_name
        self.transport = str(settings.get("transport") or "local")
        self._host_guest: Any = None
        self._last: dict[str, Any] | None = None
        self._expect_off = False
        if self.transport == "winrm" and not settings.get("host"):
            raise ConfigError(f"vm_hosts.{settings.get('name', '?')}.host: required for transport winrm", 'set host = "HYPERV-HOST"')

    # -- running scripts ------------------------------------------------------
    def run(self, script: str, params: dict[str, Any], *, mutates: bool = True, timeout: float = 300.0) -> dict[str, Any]:
        path = script_path(script)
        where = "Hyper-V host" + (f" {self.settings.get('host')}" if self.transport == "winrm" else " (local)")
        if self.ctx.dry and mutates:
            self.ctx.show_script(where, path, params)
            return {"ok": True, "dry": True}
        if self.transport == "local":
            done = self.ctx.runner.run(powershell_argv(path, params), check=False, mutates=mutates, timeout=timeout, what=script)
            result = parse_result(done.stdout, script) if done.stdout.strip() or done.ok else {"ok": False, "error": last_meaningful_line(done.stderr)}
        else:
            result = self._run_over_winrm(path, params, timeout)
        if not result.get("ok", False):
            raise StepFailed(f"{script} on the {where} failed: {result.get('error') or 'no detail'}")
        return result

    def _run_over_winrm(self, path: Path, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        guest = self._host_connection()
        runner = getattr(guest, "run_script_path", None)
        if runner is None:
            raise EnvironmentProblem(
                "running Hyper-V scripts over WinRM needs Guest.run_script_path (not in driverpipe.transports.connect yet)",
                'run the pipeline on the Hyper-V host (vm_hosts.*.transport = "local")',
            )
        value = runner(path, params, timeout=timeout)
        return value if isinstance(value, dict) else {"ok": False, "error": f"unexpected result {value!r}"}

    def _host_connection(self) -> Any:
        if self._host_guest is None:
            try:
                from ..transports.connect import open_guest
            except ImportError as exc:
                raise EnvironmentProblem(
                    "the WinRM transport (driverpipe.transports.connect) is not available", 'use transport = "local" on the Hyper-V host'
                ) from exc
            section = Section(
                {
                    "name": f"hyperv-host-{self.settings.get('host')}",
                    "transport": "winrm",
                    "host": self.settings.get("host"),
                    "port": 0,
                    "user": self.settings.get("user"),
                    "password_env": self.settings.get("password_env"),
                    "password_keyring": "",
                    "test_machine": False,
                    "winrm": {
                        "ssl": True,
                        "auth": "negotiate",
                        "cert_validation": True,
                        "ca_bundle": "",
                        "allow_basic_http": False,
                        "connection_timeout": 30,
                        "read_timeout": 330,
                        "operation_timeout": 300,
                    },
                },
                "vm_hosts.hyperv.",
            )
            self._host_guest = open_guest(self.ctx, section)
        return self._host_guest

    def _state(self) -> dict[str, Any]:
        return self.run("Get-VmState.ps1", {"VMName": self.name}, mutates=False, timeout=120.0)

    # -- VmHost ---------------------------------------------------------------
    def status(self) -> VmStatus:
        info = self._state()
        if not info.get("exists"):
            return VmStatus(self.name, VmState.ABSENT, "no such VM on the Hyper-V host (Get-VM)")
        raw = str(info.get("state", ""))
        state = _STATES.get(raw.lower(), VmState.UNKNOWN)
        parts = [raw, f"heartbeat {info.get('heartbeat') or 'n/a'}", f"{info.get('checkpointType')} checkpoints"]
        if info.get("secureBoot") is not None:
            parts.append(f"Secure Boot {info.get('secureBoot')}")
        return VmStatus(self.name, state, ", ".join(parts))

    def start(self) -> None:
        self._require()
        timeout = float(self.ctx.config.project.deploy.reboot_timeout)
        result = self.run("Start-TestVm.ps1", {"VMName": self.name, "TimeoutSeconds": int(timeout)}, timeout=timeout + 60)
        self._expect_off = False
        if not result.get("dry") and not result.get("heartbeatOk"):
            raise StepFailed(
                f"VM {self.name} started but its Heartbeat is not OK after {timeout:g} s ({result.get('heartbeat') or 'no heartbeat'})",
                "check the guest boots and runs the Hyper-V integration services",
            )

    def stop(self, graceful_timeout: float = 60.0) -> str:
        self._expect_off = True
        result = self.run("Stop-TestVm.ps1", {"VMName": self.name, "TimeoutSeconds": int(graceful_timeout)}, timeout=graceful_timeout + 120)
        return "hard" if result.get("mode") == "hard" else "graceful"

    def revert(self, state: str) -> None:
        self._expect_off = False
        try:
            self.run("Restore-TestVmCheckpoint.ps1", {"VMName": self.name, "CheckpointName": state}, timeout=900.0)
        except StepFailed as exc:
            if "no checkpoint" in exc.message:
                raise ConfigError(exc.message, f"create it with `invoke vm.snapshot {state}` (Checkpoint-VM)") from None
            raise

    def snapshot(self, state: str) -> None:
        self.run("New-TestVmCheckpoint.ps1", {"VMName": self.name, "CheckpointName": state}, timeout=1800.0)

    def set_secure_boot(self, enabled: bool) -> None:
        """Set-VMFirmware -EnableSecureBoot On|Off (Generation 2, VM off): the deploy step's fix."""
        self.run("Set-TestVmSecureBoot.ps1", {"VMName": self.name, "SecureBoot": "On" if enabled else "Off"})

    def inject_nmi(self) -> None:
        """Debug-VM -InjectNonMaskableInterrupt: turns a hung guest into a crash dump (NMICrashDump=1)."""
        self.run("Invoke-TestVmNmi.ps1", {"VMName": self.name})

    def addresses(self) -> list[str]:
        result = self.run("Get-TestVmAddresses.ps1", {"VMName": self.name}, mutates=False, timeout=120.0)
        found = [str(a) for a in result.get("addresses") or [] if a and not str(a).lower().startswith("fe80:")]
        return sorted(found, key=lambda a: ":" in a)  # IPv4 first

    def events(self) -> list[VmEvent]:
        info = self._state()
        out: list[VmEvent] = []
        now = time.time()
        prev, self._last = self._last, info
        if prev is None or not info.get("exists"):
            return out
        state, before = str(info.get("state", "")).lower(), str(prev.get("state", "")).lower()
        if state.endswith("critical") and not before.endswith("critical"):
            out.append(VmEvent("STORAGE_CRITICAL", now, {"state": info.get("state")}))
        if before == "running" and state == "off" and not self._expect_off:
            out.append(VmEvent("SHUTDOWN", now, {"state": "Off"}))
        # A Windows guest that bugchecks reboots by itself: the VM stays Running but its
        # uptime starts again. Only a reset is visible from here, not its cause.
        if before == state == "running" and int(info.get("uptimeSeconds") or 0) < int(prev.get("uptimeSeconds") or 0):
            out.append(VmEvent("RESET", now, {"uptimeSeconds": info.get("uptimeSeconds")}))
        return out

    def wait_reachable(self, probe: Callable[[], bool], timeout: float) -> None:
        from .base import poll_until_reachable

        poll_until_reachable(self, probe, timeout)

    def close(self) -> None:
        if self._host_guest is not None:
            self._host_guest.close()
            self._host_guest = None

    def _require(self) -> None:
        if not self._state().get("exists"):
            raise EnvironmentProblem(f"no Hyper-V VM named {self.name}", "fix targets.*.vm_name (see Get-VM on the host)")
