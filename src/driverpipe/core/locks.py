"""One target, one run: locks on this machine and leases on remote guests.

- LocalLock: an exclusive `flock` on a file on the machine that drives the thing
  (a Wine prefix, a local VM host, the checkout's build output). The kernel drops
  it when the holder dies, so a crashed run never blocks the next one; who holds
  it (owner, host, pid, since) is written beside it for the waiting run to show.
- GuestLease: a lease file on a remote guest (owner, host, pid, start, expiry),
  taken and renewed through Set-GuestLease.ps1, so runs from two machines
  exclude each other too. A lease whose owner is gone stops being renewed and
  expires; then the next run takes it over, with a warning. A holder on this
  same machine and pid space (its record carries our machine identity, not just
  our hostname) whose pid is gone is taken over at once, as the local lock does.

Both fail closed: the holder file and the guest's answers are untrusted input,
checked against a schema (`holder_record`). An answer that does not say
"acquired" is "not acquired"; a renewal refused because someone else holds the
guest now stops the run (LeaseLost, exit 3, naming the holder). A lease file that
cannot be read counts as held until its last write time plus the lease length.

A second run waits up to deploy.lock_wait seconds, showing the holder, then fails
with exit 3 naming it. --dry and read-only tasks take no lock.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EnvironmentProblem

POLL_S = 0.2


def _me() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {"owner": user, "host": socket.gethostname(), "machine": machine_id(), "pid": os.getpid(), "started": time.time()}


_MACHINE: list[str] = []


def machine_id() -> str:
    """Who "this host" is for a pid: a hostname is shared by a container with host networking and
    by cloned CI runners, a pid space is not. '' when unknown: then no holder is ever ours by pid.

    Linux: /etc/machine-id plus the pid namespace's inode; Windows: the MachineGuid; macOS:
    the IOPlatformUUID."""
    if not _MACHINE:
        _MACHINE.append(_read_machine_id())
    return _MACHINE[0]


def _read_machine_id() -> str:
    try:
        if sys.platform == "win32":
            import winreg

            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography", 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY) as key:
                guid = str(winreg.QueryValueEx(key, "MachineGuid")[0]).strip()
            return f"win:{guid}" if guid else ""
        if sys.platform == "darwin":
            import re

            out = subprocess.run(["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"], capture_output=True, text=True, timeout=10, check=False).stdout
            found = re.search(r'"IOPlatformUUID"\s*=\s*"([0-9A-Fa-f-]+)"', out)
            return f"mac:{found.group(1)}" if found else ""
        machine = Path("/etc/machine-id").read_text(encoding="ascii").strip()
        pidns = os.stat("/proc/self/ns/pid").st_ino
        return f"linux:{machine}:pidns-{pidns}" if machine else ""
    except (OSError, ValueError, ImportError, subprocess.SubprocessError):
        return ""


# Windows pids are DWORDs (multiples of 4); Linux's pid_max is at most 2**22. Anything outside is garbage.
MAX_PID = 2**32 - 1
HOLDER_TEXT_MAX = 200  # owner/host strings longer than this are not ours


def holder_record(data: Any) -> dict[str, Any] | None:
    """A lock holder or lease holder as read back (untrusted): the checked record, or None when it
    does not fit (not a dict, a non-numeric or huge pid, a non-numeric `started`, NUL-filled text)."""
    if not isinstance(data, dict):
        return None
    out: dict[str, Any] = {}
    for key in ("owner", "host", "machine"):
        value = data.get(key, "")
        if not isinstance(value, str) or len(value) > HOLDER_TEXT_MAX or "\0" in value:
            return None
        out[key] = value
    pid = data.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid <= MAX_PID:
        return None
    out["pid"] = pid
    for key in ("started", "expires"):
        value = data.get(key)
        if key == "expires" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value < 2**40:
            return None
        out[key] = float(value)
    for key in ("what", "unreadable"):
        if key in data:
            out[key] = data[key]
    return out


def describe(holder: dict[str, Any]) -> str:
    if holder.get("unreadable"):
        return f"an unreadable lease ({holder.get('unreadable')})"
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started") or 0)))
    except (TypeError, ValueError, OverflowError, OSError):
        since = "?"
    return f"{holder.get('owner', '?')}@{holder.get('host', '?')} (pid {holder.get('pid', '?')}, since {since})"


# Win32 constants for the pid probe.
_SYNCHRONIZE = 0x00100000
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_ERROR_INVALID_PARAMETER = 87
_WAIT_OBJECT_0 = 0


def _alive_windows(pid: int) -> bool:
    """OpenProcess + WaitForSingleObject: os.kill(pid, 0) on Windows sends CTRL_C_EVENT to a console
    group and raises WinError 87 for a dead pid, so it is never used there."""
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.OpenProcess.restype = ctypes.c_void_p
    kernel32.OpenProcess.argtypes = (ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32)
    kernel32.WaitForSingleObject.restype = ctypes.c_uint32
    kernel32.WaitForSingleObject.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    kernel32.CloseHandle.argtypes = (ctypes.c_void_p,)
    handle = kernel32.OpenProcess(_SYNCHRONIZE | _PROCESS_QUERY_LIMITED_INFORMATION, 0, pid)
    if not handle:
        # Only ERROR_INVALID_PARAMETER says "no such process"; access denied, out of handles
        # and anything else say nothing, so it counts as alive (never taken over on doubt).
        return bool(ctypes.get_last_error() != _ERROR_INVALID_PARAMETER)  # type: ignore[attr-defined]
    try:
        # Dead only when the process object is signalled; a timeout or WAIT_FAILED counts as alive.
        return bool(kernel32.WaitForSingleObject(handle, 0) != _WAIT_OBJECT_0)
    finally:
        kernel32.CloseHandle(handle)


def _alive(pid: int) -> bool:
    """Is process `pid` of this machine alive? Unknown (any probe error) counts as alive: fail closed."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= MAX_PID:
        return False
    try:
        if sys.platform == "win32":
            return _alive_windows(pid)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError, AttributeError):
        return True  # PermissionError (another user's process) or a probe that failed: assume it runs
    return True


def _dead_here(holder: dict[str, Any]) -> bool:
    """The holder is a run of this very machine and pid space whose pid is provably gone.
    A record without the machine identity (older, or unknown) is another host's: expiry only."""
    mine = machine_id()
    return (
        bool(holder)
        and not holder.get("unreadable")
        and bool(mine)
        and holder.get("machine") == mine
        and holder.get("pid") != os.getpid()
        and not _alive(int(holder.get("pid") or 0))
    )


@dataclass
class LocalLock:
    """An exclusive lock on `path` (created with its folder), held until release()."""

    path: Path
    what: str  # "target wine", "the package folder" ...
    _fh: Any = field(default=None, repr=False)

    @property
    def holder_file(self) -> Path:
        return self.path.with_name(self.path.name + ".holder")

    def holder(self) -> dict[str, Any] | None:
        """Who wrote the holder file; None when absent or unreadable (NUL-filled, truncated, garbage).
        The flock is the lock: the file only names the holder, so unreadable costs only the name."""
        try:
            data = json.loads(self.holder_file.read_bytes()[:65536].decode("utf-8"))
        except (OSError, ValueError):
            return None
        return holder_record(data)

    def _try(self) -> bool:
        if sys.platform == "win32":
            import msvcrt

            try:
                msvcrt.locking(self._fh.fileno(), msvcrt.LK_NBLCK, 1)
            except OSError:
                return False
            return True
        import fcntl

        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire(self, wait: float, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a+b")
        deadline = clock() + max(0.0, wait)
        shown = False
        while not self._try():
            holder = self.holder()
            who = describe(holder) if holder else "another run"
            if clock() >= deadline:
                self._fh.close()
                self._fh = None
                raise EnvironmentProblem(
                    f"{self.what} is in use by {who}", "wait for that run to finish (or stop it), or raise deploy.lock_wait to wait longer"
                )
            if not shown:
                say(f"waiting up to {wait:g} s for {self.what}: in use by {who}")
                shown = True
            time.sleep(POLL_S)
        previous = self.holder()
        if previous and _dead_here(previous):
            say(f"warning: {self.what} was left by {describe(previous)}, which is gone; taking it over")
        write_durably(self.holder_file, json.dumps({**_me(), "what": self.what}).encode("utf-8"))

    def probe(self) -> dict[str, Any] | None:
        """Who holds the lock now (None: nobody), without keeping it."""
        if not self.path.exists():
            return None
        self._fh = self.path.open("a+b")
        try:
            if self._try():
                return None
            return self.holder() or {"owner": "another run"}
        finally:
            self._fh.close()  # also drops the lock if the probe took it
            self._fh = None

    def release(self) -> None:
        if self._fh is None:
            return
        try:
            self.holder_file.unlink(missing_ok=True)
        finally:
            self._fh.close()  # closing drops the lock
            self._fh = None


def write_durably(path: Path, data: bytes) -> None:
    """Temp file, flushed to disk, then renamed over `path`: a crash leaves the old or the new content."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextmanager
def held(lock: LocalLock | None, ctx: Any) -> Iterator[LocalLock | None]:
    """Hold `lock` for a block (nothing under --dry or when lock is None)."""
    if lock is None or ctx.dry:
        yield None
        return
    lock.acquire(float(ctx.config.project.deploy.lock_wait), ctx.step)
    try:
        yield lock
    finally:
        lock.release()


def locks_dir() -> Path:
    from .config import user_state_dir

    return user_state_dir() / "locks"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:120]


def target_lock(ctx: Any, section: Any) -> LocalLock:
    """The lock of a target on this machine: its Wine prefix, its VM on a VM host, or its address."""
    if section.transport == "wine":
        prefix = ctx.config.wine_prefix(section)
        return LocalLock(prefix.parent / f".{prefix.name}.lock", f"Wine prefix {prefix}")
    if section.get("vm_host"):
        key = f"vm-{section.vm_host}-{section.get('vm_name') or section.name}"
        return LocalLock(locks_dir() / f"{_safe(key)}.lock", f"VM {section.get('vm_name') or section.name} on {section.vm_host}")
    key = f"guest-{section.get('host') or 'local'}-{section.get('port') or 0}-{section.name}"
    return LocalLock(locks_dir() / f"{_safe(key)}.lock", f"target {section.name}")


# ---------------------------------------------------------------------------------------------
# Leases on remote guests
# ---------------------------------------------------------------------------------------------


class LeaseLost(EnvironmentProblem):
    """A renewal found the guest held by someone else: the run must stop at once (exit 3)."""


def _answer(raw: Any) -> dict[str, Any]:
    """Set-GuestLease.ps1's answer, checked: anything but a dict saying acquired = true is "not acquired"."""
    if not isinstance(raw, dict):
        return {"acquired": False, "holder": None, "took_over": None, "garbled": True, "holder_garbled": True}
    holder = raw.get("holder")
    took_over = raw.get("took_over")
    checked = holder_record(holder) if isinstance(holder, dict) else None
    return {
        "acquired": raw.get("acquired") is True,
        "holder": checked,
        "took_over": holder_record(took_over) if isinstance(took_over, dict) else None,
        "garbled": False,
        "holder_garbled": holder is not None and checked is None,
    }


def _until(holder: dict[str, Any]) -> str:
    try:
        return time.strftime("%H:%M:%S", time.localtime(float(holder.get("expires") or 0)))
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


@dataclass
class GuestLease:
    """A lease on a remote guest, taken and renewed through Set-GuestLease.ps1."""

    guest: Any
    path: str  # Windows path of the lease file on the guest
    seconds: float
    what: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    held: bool = False

    def _call(self, seconds: float | None = None, **params: Any) -> dict[str, Any]:
        me = _me()
        raw = self.guest.run_script(
            "Set-GuestLease.ps1",
            {
                "Path": self.path,
                "Token": self.token,
                "Owner": me["owner"],
                "Machine": me["host"],
                "MachineId": me["machine"],
                "ProcessId": me["pid"],
                "Seconds": int(seconds or self.seconds),
                **params,
            },
        )
        return _answer(raw)

    def acquire(self, wait: float, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        deadline = clock() + max(0.0, wait)
        shown = False
        while True:
            result = self._call()
            if result["acquired"]:
                self.held = True
                expired = result["took_over"]
                if expired:
                    say(f"warning: the lease on {self.what} held by {describe(expired)} had expired; taking it over")
                return
            holder: dict[str, Any] = result["holder"] or {}
            if _dead_here(holder):
                # This machine's own run that died: its pid is gone, so its lease is taken over now,
                # as the local lock does (the guest checks it is still that very holder).
                taken = self._call(TakeOverMachineId=holder["machine"], TakeOverProcessId=holder["pid"])
                if taken["acquired"]:
                    self.held = True
                    say(f"warning: the lease on {self.what} was left by {describe(holder)}, which is gone; taking it over")
                    return
                holder = taken["holder"] or holder
            who = describe(holder) if holder else ("an answer that could not be read" if result["garbled"] else "another run")
            if clock() >= deadline:
                raise EnvironmentProblem(
                    f"{self.what} is leased by {who} until {_until(holder)}",
                    "wait for that run to finish, or raise deploy.lock_wait; a dead run's lease expires by itself",
                )
            if not shown:
                say(f"waiting up to {wait:g} s for {self.what}: leased by {who}")
                shown = True
            time.sleep(min(2.0, max(POLL_S, deadline - clock())))

    def renew(self, seconds: float | None = None) -> None:
        """Keep the lease (for `seconds`, when a long phase needs more than the usual length).
        Refused (someone else holds the guest now) -> LeaseLost: the run stops at once."""
        if not self.held:
            return
        result = self._call(seconds=max(float(seconds or 0), self.seconds))
        if result["acquired"]:
            return
        self.held = False  # never release what another run holds
        holder = result["holder"]
        who = describe(holder) if holder else ("an answer that could not be read" if result["garbled"] else "another run")
        raise LeaseLost(
            f"the lease on {self.what} was lost: it is held by {who} now; stopped before the next step",
            "two runs must never share a guest: let that run finish (deploy.lease_seconds must outlive the longest step)",
        )

    def query(self) -> dict[str, Any] | None:
        """Who holds an unexpired lease (without taking it, creating nothing); None when nobody does.
        An answer that cannot be read is never "nobody": it names itself as an unreadable holder."""
        result = self._call(Query=True)
        if result["holder_garbled"]:
            return {"unreadable": "the guest's answer to the lease query could not be read", "owner": "?", "host": "?", "pid": 0}
        return result["holder"]

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                self._call(Release=True)
            except Exception:  # a lost connection: the lease expires by itself
                pass
