"""Reboot a guest and wait until it is back (ansible win_reboot's algorithm, note 02).

1. read the boot time (FileTime); 2. `shutdown.exe /r` (1190 -> abort + retry in
the script; 1115 = already in progress; a dropped connection counts as success);
3. until the timeout: reconnect (a fresh pool: an old one may be unusable after a
reboot), read the boot time, done only when it DIFFERS; 4. readiness check until
it succeeds. Back-off 2^n + jitter, capped at 12 s. Clock, sleep and jitter are
injectable so tests run instantly. Never ran against a real Windows guest.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from ..core.context import RunContext
from ..core.errors import EnvironmentProblem, MissingTool, PipelineError, StepFailed

BACKOFF_CAP = 12.0
SHUTDOWN_DELAY = 2  # seconds: lets the WinRM reply get out before the machine goes down


class Diagnosed:
    """Mixin for errors our own logic raises after the guest answered (never "connection lost")."""


class RebootFailed(Diagnosed, StepFailed):
    """The guest did not reboot / come back / become ready in time. Exit code 4."""


def is_connection_error(exc: BaseException) -> bool:
    """An unreachable guest / dropped connection, as opposed to a script that ran and failed."""
    from ..transports.base import GuestScriptError

    if isinstance(exc, Diagnosed | MissingTool):
        return False
    from ..transports.errors import WinRMFault

    if isinstance(exc, WinRMFault):
        return False  # the service answered: not a lost connection

    try:
        from ..transports.errors import RemoteFileNotFound
    except ImportError:  # pragma: no cover - transports module not present yet
        RemoteFileNotFound = GuestScriptError  # type: ignore[misc,assignment]
    if isinstance(exc, EnvironmentProblem):
        return True
    return isinstance(exc, StepFailed) and not isinstance(exc, GuestScriptError | RemoteFileNotFound)


def backoff(attempt: int, jitter: float) -> float:
    return min(2.0**attempt + jitter, BACKOFF_CAP)


def _whole(value: Any) -> int | None:
    """A guest's integer; anything else (text, a float, a table) is unknown, like a missing value."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_boot_time(guest: Any) -> int | None:
    result = guest.run_script("Get-BootTime.ps1", {})
    return _whole(result.get("boot_time")) if isinstance(result, dict) else None


def _shutdown_rc(result: Any) -> int | None:
    if not isinstance(result, dict):
        return None
    last = result.get("second") or result.get("first") or {}
    return _whole(last.get("rc")) if isinstance(last, dict) else None


def reboot_and_wait(
    ctx: RunContext,
    guest: Any,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> None:
    """Reboot `guest` and return once it runs a NEW boot and is ready; the guest's pool is rebuilt.

    Raises StepFailed (exit 4) when the guest is not back within `timeout` seconds.
    """
    name = getattr(guest, "name", "guest")
    if ctx.dry:
        # DryGuest prints each script with its bound parameters; nothing waits.
        guest.run_script("Get-BootTime.ps1", {})
        guest.run_script("Restart-Guest.ps1", {"DelaySeconds": SHUTDOWN_DELAY, "Comment": "driverpipe"})
        ctx.say(f"[dry] then: reconnect until the boot time differs (timeout {timeout:g} s), then until Test-GuestReady.ps1 says ready")
        guest.run_script("Test-GuestReady.ps1", {})
        return

    old: int | None = None
    for _ in range(3):
        try:
            old = read_boot_time(guest)
            break
        except PipelineError as exc:
            if not is_connection_error(exc):
                raise
    if old is None:
        raise RebootFailed(f"{name}: cannot read the boot time before rebooting", "check the guest answers: `invoke doctor --target ...`")

    ctx.step(f"rebooting {name} (shutdown.exe /r)")
    try:
        rc = _shutdown_rc(guest.run_script("Restart-Guest.ps1", {"DelaySeconds": SHUTDOWN_DELAY, "Comment": "driverpipe"}))
    except PipelineError as exc:
        if not is_connection_error(exc):
            raise
        rc = 0  # the connection dropped because the machine is going down: that is success
    if rc not in (0, 1115, None):
        raise RebootFailed(f"{name}: shutdown.exe /r failed with Win32 error {rc}", f"run `net helpmsg {rc}` on the guest; reboot it by hand")

    start = clock()
    deadline = start + timeout
    attempt = 0
    back = False
    while clock() < deadline:
        sleep(min(backoff(attempt, jitter()), max(0.0, deadline - clock())))
        attempt += 1
        try:
            guest.reconnect()
            now = read_boot_time(guest)
        except PipelineError as exc:
            if not is_connection_error(exc):
                raise
            ctx.step(f"waiting for {name} to come back ({clock() - start:.0f} s of {timeout:g} s)")
            continue
        if now is not None and now != old:
            back = True
            break
        ctx.step(f"waiting for {name} to go down ({clock() - start:.0f} s)")
    if not back:
        raise RebootFailed(
            f"{name}: did not come back from the reboot within {timeout:g} s",
            "check the VM console (boot failure? stuck update?); raise deploy.reboot_timeout if it is just slow",
        )

    ctx.step(f"{name} rebooted; waiting until it is ready")
    attempt = 0
    while True:
        try:
            ready = guest.run_script("Test-GuestReady.ps1", {})
            if isinstance(ready, dict) and ready.get("ready"):
                ctx.step(f"{name} is ready ({clock() - start:.0f} s)")
                return
        except PipelineError as exc:
            if not is_connection_error(exc):
                raise
            try:
                guest.reconnect()
            except PipelineError as again:
                if not is_connection_error(again):
                    raise
        if clock() >= deadline:
            raise RebootFailed(
                f"{name}: rebooted but not ready (no logon) within {timeout:g} s",
                "check the VM console; raise deploy.reboot_timeout if the guest is just slow",
            )
        sleep(min(backoff(attempt, jitter()), max(0.0, deadline - clock())))
        attempt += 1
