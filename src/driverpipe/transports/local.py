"""Local transport: the shipped scripts through this machine's own powershell.exe.

For a runner that IS the test machine. The same wrapper as SSH (psencode) goes to
`powershell -NoProfile -NonInteractive -EncodedCommand ...` (payload on stdin when
the command line would pass CreateProcess's limit); files are copied directly
(same file system), with the same hash skip, `.partial` + atomic rename and
verification as the remote transports.

Checked with a fake `powershell` on PATH (tests/unit/test_local_transport.py);
never run against a real powershell.exe. A Hyper-V host reaching its VM over
PowerShell Direct is the psdirect transport (same wrapper, host-side scripts).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import EnvironmentProblem, StepFailed
from ..core.runner import which
from ..core.scripts import load_script, script_path
from .base import BatchMixin, PushResult
from .errors import GuestTimeout, RemoteFileNotFound
from .psencode import LOCAL_MAX_COMMAND, build_invocation, partial_name, script_result, sha256_file

POWERSHELL_NAMES = ("powershell.exe", "powershell", "pwsh.exe", "pwsh")


def find_powershell(preferred: str = "", extra_dirs: Sequence[Path] = ()) -> str:
    """The PowerShell to run: an explicit path/name, else Windows PowerShell 5.1, else pwsh."""
    for name in [preferred] if preferred else list(POWERSHELL_NAMES):
        found = which(name, extra_dirs)
        if found:
            return str(found)
    raise EnvironmentProblem(
        f"local transport: {preferred or 'powershell.exe'} not found on PATH",
        'the local transport runs on the Windows test machine itself; use transport = "winrm" or "ssh" from other hosts',
    )


def run_wrapped(
    powershell: str,
    text: str,
    params: Mapping[str, Any],
    *,
    what: str,
    where: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    on_timeout: Callable[[str], None] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run script text with bound params through this machine's PowerShell (psencode's wrapper); the finished process.

    `env` replaces the child's environment (PowerShell Direct hands the guest password over that way).
    `on_timeout` gets what the killed process printed, before the timeout is raised (PowerShell
    Direct ends the script's process inside the VM with it).
    """
    inv = build_invocation(powershell, text, params, max_command=LOCAL_MAX_COMMAND)
    # Its own process group: on a timeout the whole tree goes, not only PowerShell (a hung sc.exe
    # that inherited the pipes would otherwise keep them open, and reading them would never end).
    group: dict[str, Any] = {"creationflags": 0x200} if sys.platform == "win32" else {"start_new_session": True}  # CREATE_NEW_PROCESS_GROUP
    try:
        proc = subprocess.Popen(inv.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **group)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot run {powershell}: {exc.strerror or exc}") from None
    try:
        out, err = proc.communicate(input=inv.stdin or b"", timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        printed = b""
        try:
            printed = proc.communicate(timeout=5)[0] or b""
        except subprocess.TimeoutExpired:
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()  # a survivor still holds them: stop reading, do not wait forever
        if on_timeout is not None:
            on_timeout(printed.decode("utf-8", "replace"))
        raise GuestTimeout(
            f"{what} did not finish within {timeout:g} s on {where}; stopped", "raise deploy.script_timeout if the step is legitimately slow"
        ) from None
    return subprocess.CompletedProcess(inv.argv, proc.returncode, out, err)


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """End a process and everything it started (Windows: taskkill /T; elsewhere: its process group)."""
    if sys.platform == "win32":
        try:
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(proc.pid)], capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass  # the direct kill below still ends PowerShell itself; never a second wait on a hung tool
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.kill()


class LocalGuest(BatchMixin):
    """This machine as the guest."""

    def __init__(self, *, name: str, powershell: str = "", script_timeout: float = 120):
        self.name = name
        self.round_trips = 0
        self.powershell = find_powershell(powershell)
        self.script_timeout = float(script_timeout)

    def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        return self.run_script_path(script_path(script), params, timeout=timeout)

    def run_script_path(self, path: Path, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Run any .ps1 by path (e.g. scripts/hyperv/ on a Hyper-V host); run_script is this for shipped guest scripts."""
        self.round_trips += 1
        limit = float(timeout or self.script_timeout)
        proc = run_wrapped(self.powershell, load_script(path), params or {}, what=path.name, where=self.name, timeout=limit)
        return script_result(path.name, self.name, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))

    def push(self, local: Path, remote: str) -> PushResult:
        digest, size = sha256_file(local)
        dest = Path(remote)
        self.round_trips += 1
        if dest.is_file() and sha256_file(dest)[0] == digest:
            return PushResult(remote, digest, False, size)
        partial = Path(partial_name(remote))
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, partial)
            if sha256_file(partial)[0] != digest:
                raise StepFailed(f"push of {Path(local).name}: the copy's hash differs; nothing was replaced")
            os.replace(partial, dest)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise StepFailed(f"push of {Path(local).name} to {remote} failed: {exc.strerror or exc}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return PushResult(remote, digest, True, size)

    def pull(self, remote: str, local: Path) -> None:
        self.round_trips += 1
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".partial")
        try:
            shutil.copyfile(remote, tmp)
        except FileNotFoundError:
            raise RemoteFileNotFound(f"{self.name}: no such file {remote}") from None
        tmp.replace(local)

    def read_range(self, remote: str, offset: int, max_bytes: int) -> bytes:
        self.round_trips += 1
        try:
            with open(remote, "rb") as fh:
                fh.seek(offset)
                return fh.read(max_bytes)
        except FileNotFoundError:
            raise RemoteFileNotFound(f"{self.name}: no such file {remote}") from None

    def reconnect(self) -> None:
        """Nothing to rebuild: every script starts a new process."""

    def close(self) -> None:
        """Nothing held open."""
