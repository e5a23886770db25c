"""One target, one run: locks on this machine and leases on remote guests.

- LocalLock: an exclusive `flock` on a file on the machine that drives the thing
  (a Wine prefix, a local VM host, the checkout's build output). The kernel drops
  it when the holder dies, so a crashed run never blocks the next one; who holds
  it (owner, host, pid, since) is written beside it for the waiting run to show.
- GuestLease: a lease file on a remote guest (owner, host, pid, start, expiry),
  taken and renewed through Set-GuestLease.ps1, so runs from two machines
  exclude each other too. A lease whose owner is gone stops being renewed and
  expires; then the next run takes it over, with a warning.

A second run waits up to deploy.lock_wait seconds, showing the holder, then fails
with exit 3 naming it. --dry and read-only tasks take no lock.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
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
    return {"owner": user, "host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}


def describe(holder: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started") or 0)))
    return f"{holder.get('owner', '?')}@{holder.get('host', '?')} (pid {holder.get('pid', '?')}, since {since})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        try:
            data = json.loads(self.holder_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

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
        if previous and previous.get("pid") != os.getpid() and previous.get("host") == socket.gethostname() and not _alive(int(previous.get("pid") or 0)):
            say(f"warning: {self.what} was left by {describe(previous)}, which is gone; taking it over")
        tmp = self.holder_file.with_name(self.holder_file.name + f".{os.getpid()}")
        tmp.write_text(json.dumps({**_me(), "what": self.what}), encoding="utf-8")
        os.replace(tmp, self.holder_file)

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


@dataclass
class GuestLease:
    """A lease on a remote guest, taken and renewed through Set-GuestLease.ps1."""

    guest: Any
    path: str  # Windows path of the lease file on the guest
    seconds: float
    what: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    held: bool = False

    def _call(self, **params: Any) -> dict[str, Any]:
        me = _me()
        result = self.guest.run_script(
            "Set-GuestLease.ps1",
            {
                "Path": self.path,
                "Token": self.token,
                "Owner": me["owner"],
                "Machine": me["host"],
                "ProcessId": me["pid"],
                "Seconds": int(self.seconds),
                **params,
            },
        )
        return result if isinstance(result, dict) else {"acquired": True}

    def acquire(self, wait: float, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        deadline = clock() + max(0.0, wait)
        shown = False
        while True:
            result = self._call()
            if result.get("acquired"):
                self.held = True
                expired = result.get("took_over")
                if isinstance(expired, dict):
                    say(f"warning: the lease on {self.what} held by {describe(expired)} had expired; taking it over")
                return
            raw = result.get("holder")
            holder: dict[str, Any] = raw if isinstance(raw, dict) else {}
            who = describe(holder)
            if clock() >= deadline:
                raise EnvironmentProblem(
                    f"{self.what} is leased by {who} until {time.strftime('%H:%M:%S', time.localtime(float(holder.get('expires') or 0)))}",
                    "wait for that run to finish, or raise deploy.lock_wait; a dead run's lease expires by itself",
                )
            if not shown:
                say(f"waiting up to {wait:g} s for {self.what}: leased by {who}")
                shown = True
            time.sleep(min(2.0, max(POLL_S, deadline - clock())))

    def renew(self) -> None:
        if self.held:
            self._call()

    def query(self) -> dict[str, Any] | None:
        """Who holds an unexpired lease (without taking it); None when nobody does."""
        holder = self._call(Query=True).get("holder")
        return holder if isinstance(holder, dict) else None

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                self._call(Release=True)
            except Exception:  # a lost connection: the lease expires by itself
                pass
