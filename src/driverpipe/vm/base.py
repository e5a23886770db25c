"""The VmHost interface used by `invoke vm.*`, deploy and regress."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


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
