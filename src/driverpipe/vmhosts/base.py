"""The VmHost interface used by `invoke vm.*`, deploy and regress."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..core.errors import CheckFailed, PipelineError, StepFailed

FATAL_EVENTS = ("GUEST_PANICKED", "PROCESS_EXITED")


class VmState(enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    CRASHED = "crashed"  # guest panicked / QEMU process died unexpectedly
    ABSENT = "absent"  # no such VM / nothing started
    UNKNOWN = "unknown"


@dataclass
class VmEvent:
    kind: str  # "GUEST_PANICKED", "SHUTDOWN", "RESET", "PROCESS_EXITED", ...
    timestamp: float
    detail: dict[str, object] = field(default_factory=dict)


@dataclass
class VmStatus:
    name: str
    state: VmState
    detail: str = ""


class VmHost(Protocol):
    name: str

    def status(self) -> VmStatus: ...

    def start(self) -> None: ...

    def stop(self, graceful_timeout: float = 60.0) -> str:
        """Graceful shutdown, hard stop after the timeout; returns 'graceful' or 'hard'."""
        ...

    def revert(self, state: str) -> None:
        """Return to a named clean state; the VM ends up running."""
        ...

    def snapshot(self, state: str) -> None: ...

    def addresses(self) -> list[str]: ...

    def inject_nmi(self) -> None:
        """Force a crash dump of a hung guest (Windows bugchecks on NMI when NMICrashDump=1)."""
        ...

    def events(self) -> list[VmEvent]:
        """Hypervisor-side events seen since the last call (drained)."""
        ...

    def wait_reachable(self, probe: Callable[[], bool], timeout: float) -> None:
        """Wait until `probe()` (the guest transport answering) is true, or raise."""
        ...

    def close(self) -> None: ...


def poll_until_reachable(
    host: VmHost,
    probe: Callable[[], bool],
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Call probe() with backoff (0.5 s doubling to 5 s) until it is true or `timeout` passes.

    Between probes, the host's events and state are checked: a panicked guest or a
    dead VM ends the wait immediately with the reason, instead of a long timeout.
    """
    deadline = time.monotonic() + timeout
    delay = 0.5
    attempts = 0
    last_error = ""
    while True:
        for event in host.events():
            if event.kind in FATAL_EVENTS:
                raise CheckFailed(f"VM {host.name}: {event.kind} while waiting for the guest to answer ({_short(event.detail)})")
        attempts += 1
        try:
            if probe():
                return
        except PipelineError as exc:
            last_error = exc.message  # not answering yet; shown if it never does
        status = host.status()
        if status.state in (VmState.CRASHED, VmState.STOPPED, VmState.ABSENT):
            raise StepFailed(f"VM {host.name} is {status.state.value} while waiting for the guest to answer: {status.detail}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise StepFailed(
                f"VM {host.name}: the guest did not answer within {timeout:g} s ({attempts} attempts" + (f"; last: {last_error})" if last_error else ")"),
                "check the guest's network/WinRM setup, or raise the timeout",
            )
        sleep(min(delay, left))
        delay = min(delay * 2, 5.0)


def _short(detail: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items()) or "no detail"
