"""PowerShell Direct transport: the pipeline runs on the Hyper-V host and reaches its VM
over VMBus (`New-PSSession -VMName`), with no network, WinRM listener or firewall rule
in the guest. Useful on a self-hosted runner that is the Hyper-V host.

Each operation is one local `powershell.exe` (the same fixed -EncodedCommand wrapper as
the SSH and local transports, psencode) running a host-side script from
scripts/psdirect/ that opens ONE session into the VM and:
- Invoke-InVm.ps1 runs a shipped guest script inside it (text and JSON parameters are
  bound parameters, splatted in the VM exactly like Invoke-Batch.ps1 does);
- Send-VmFile.ps1 pushes a file (hash skip, Copy-Item -ToSession to a partial name,
  the shipped Complete-FileUpload.ps1 for the hash check and atomic replace);
- Receive-VmFile.ps1 pulls one (Copy-Item -FromSession).

The guest password is resolved in Python (env var or keyring) and handed to that one
child process in its environment, never on a command line; the script removes it from
its environment before anything else runs. A session is opened per operation: a
PowerShell process cannot outlive the call, and run_batch keeps a redeploy to a few.
A guest script that times out is ended where it runs: Invoke-InVm.ps1 first prints the
VM-side session's pid, and a new session runs Stop-ProcessTree.ps1 for it (bounded), as
the SSH transport does; ending powershell.exe on the host alone leaves it running in the VM.

Checked with a fake `powershell` on PATH that keeps these scripts' contract
(tests/unit/test_psdirect_transport.py); never run on a real Hyper-V host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.errors import EnvironmentProblem, StepFailed
from ..core.scripts import load_script, script_path, script_text
from .base import BatchMixin, GuestScriptError, PushResult
from .errors import RemoteFileNotFound
from .local import find_powershell, run_wrapped
from .psencode import ERROR_MARKER, params_json, script_result, sha256_file, wrapper_pid

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts" / "psdirect"
PASSWORD_ENV = "DRIVERPIPE_PSDIRECT_PASSWORD"
SESSION_MARKER = "driverpipe-psdirect: "
END_TREE_TIMEOUT_S = 30.0  # ending a timed-out script's process in the VM from a new session

# Words of Hyper-V's own (English) messages for the failures a user can fix; anything
# else is shown as Windows said it.
_SESSION_FAILURES = (
    (
        ("credential is invalid", "user name or password is incorrect", "logon failure"),
        "the VM rejected the credentials of {user}",
        "fix targets.{target}.user or the password in its password_env / password_keyring",
    ),
    (("not in running state", "is not running", "not running"), "VM {vm} is not running", "start it: invoke vm.start --target {target}"),
    (
        ("unable to find a virtual machine", "was not found", "cannot find"),
        "no VM named {vm} on this Hyper-V host",
        "set targets.{target}.vm_name to a name Get-VM lists",
    ),
    (
        ("administrator", "permission", "access is denied", "elevat"),
        "PowerShell Direct needs an elevated session on the Hyper-V host",
        "run the pipeline as an administrator of the Hyper-V host",
    ),
    (("no guest password",), "no guest password was handed to PowerShell Direct", "set targets.{target}.password_env (or password_keyring)"),
)


class PsDirectGuest(BatchMixin):
    """A Hyper-V VM reached from its host over PowerShell Direct."""

    def __init__(self, *, name: str, vm_name: str, user: str, password: str, powershell: str = "", script_timeout: float = 120):
        self.name = name
        self.vm_name = vm_name
        self.user = user
        self._password = password
        self.round_trips = 0
        self.powershell = find_powershell(powershell)
        self.script_timeout = float(script_timeout)

    # -- running host-side scripts ---------------------------------------------
    def _host(self, host_script: str, params: dict[str, Any], *, what: str, timeout: float | None, end_on_timeout: bool = False) -> Any:
        bound = {"VMName": self.vm_name, "UserName": self.user, **params}
        self.round_trips += 1
        proc = run_wrapped(
            self.powershell,
            load_script(SCRIPTS_DIR / host_script),
            bound,
            what=what,
            where=f"{self.name} (PowerShell Direct)",
            timeout=float(timeout or self.script_timeout),
            env={**os.environ, PASSWORD_ENV: self._password},
            on_timeout=(lambda printed: self._end_in_vm(wrapper_pid(printed), what)) if end_on_timeout else None,
        )
        err = proc.stderr.decode("utf-8", "replace")
        self._raise_session_failure(err)
        return script_result(what, self.name, proc.returncode, proc.stdout.decode("utf-8", "replace"), err)

    def _end_in_vm(self, pid: int | None, what: str) -> None:
        """Best effort, bounded: Stop-ProcessTree.ps1 in a new session for the timed-out script's VM-side pid."""
        if pid is None:
            return  # it hung before its session announced itself: nothing to name
        params = {"ScriptText": load_script(script_path("Stop-ProcessTree.ps1")), "ParamsJson": params_json({"ProcessId": pid})}
        try:
            self._host("Invoke-InVm.ps1", params, what=f"ending {what}", timeout=END_TREE_TIMEOUT_S)
        except Exception:  # the timeout is the error to report; a VM that went away is found by the next call
            pass

    def _raise_session_failure(self, stderr: str) -> None:
        for line in stderr.splitlines():
            if not line.startswith(ERROR_MARKER + SESSION_MARKER):
                continue
            detail = line[len(ERROR_MARKER + SESSION_MARKER) :].strip()
            lowered = detail.lower()
            for words, what, fix in _SESSION_FAILURES:
                if any(w in lowered for w in words):
                    fields = {"user": self.user, "vm": self.vm_name, "target": self.name}
                    raise EnvironmentProblem(f"{self.name}: {what.format(**fields)} (PowerShell Direct: {detail})", fix.format(**fields))
            raise EnvironmentProblem(
                f"{self.name}: PowerShell Direct session to VM {self.vm_name} failed: {detail}",
                "check the VM runs Windows 10/Server 2016 or later and that Get-VM lists it on this host",
            )

    # -- Guest ----------------------------------------------------------------------
    def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        return self.run_script_path(script_path(script), params, timeout=timeout)

    def run_script_path(self, path: Path, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        bound = {"ScriptText": load_script(path), "ParamsJson": params_json(params)}
        return self._host("Invoke-InVm.ps1", bound, what=path.name, timeout=timeout, end_on_timeout=True)

    def push(self, local: Path, remote: str) -> PushResult:
        digest, size = sha256_file(local)
        params = {
            "LocalPath": str(Path(local).resolve()),
            "RemotePath": remote,
            "Sha256": digest,
            "HashScript": script_text("Get-FileSha256.ps1"),
            "CompleteScript": script_text("Complete-FileUpload.ps1"),
        }
        try:
            result = self._host("Send-VmFile.ps1", params, what=f"push of {Path(local).name}", timeout=None)
        except GuestScriptError as exc:
            raise StepFailed(f"{exc.message}; nothing was replaced at {remote}") from None
        if not isinstance(result, dict) or str(result.get("sha256", "")).lower() != digest:
            raise StepFailed(f"push of {Path(local).name}: the VM reports hash {result!r}, expected {digest}; the destination may be stale")
        return PushResult(remote, digest, bool(result.get("copied")), size)

    def pull(self, remote: str, local: Path) -> None:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(local.name + ".partial")
        try:
            result = self._host("Receive-VmFile.ps1", {"RemotePath": remote, "LocalPath": str(partial.resolve())}, what=f"pull of {remote}", timeout=None)
            if isinstance(result, dict) and result.get("exists") is False:
                raise RemoteFileNotFound(f"{self.name}: no such file {remote}")
            partial.replace(local)
        finally:
            partial.unlink(missing_ok=True)

    def reconnect(self) -> None:
        """Nothing to rebuild: every operation opens its own session."""

    def close(self) -> None:
        """Nothing held open."""
