"""The guest operations deploy, unload, verify, logs and regress use, whatever the target is.

Two implementations:
- PowerShellOps (deploy.py): shipped .ps1 scripts over a transport (WinRM, SSH,
  local, PowerShell Direct) to a real Windows guest;
- WineTarget (wine/target.py): a Wine prefix on this Linux machine, driven by
  Wine's own sc.exe, reg.exe, setupapi and a small Windows client.

Steps never ask which one they hold: they call these methods. What does not
apply to a kind of target is said by `not_applicable` (shown as "not applicable
on <kind>", never as passed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.context import RunContext
    from ..transports.base import PushResult
    from .state import GuestState, LoadResult, PackageLike, Step, UnloadResult


@dataclass
class LogSource:
    """The newest DbgPrint capture log of a target, for `invoke verify`."""

    name: str  # where it is, for messages
    read_range: Callable[[int, int], bytes]
    live: bool  # a capture is still writing it
    explain_empty: Callable[[Any], None]  # says why a verdict found no line


class GuestOps(ABC):
    """One target, as the pipeline's steps see it."""

    kind: str = "windows"  # "windows" | "wine": named in plans, verdicts and reports
    name: str = "guest"
    # The target records DbgPrint output all the time (Wine's debug channel), so any task
    # can check its own lines; a DebugView capture runs only when a deploy starts one.
    capture_always_on: bool = False

    @property
    def over_network(self) -> bool:
        """Reached over a connection that can drop (WinRM, SSH); a local target's errors are never "connection lost"."""
        return self.kind == "windows"

    @property
    def round_trips(self) -> int:
        """Round trips to the target so far (benchmarks and tests read it)."""
        return 0

    @abstractmethod
    def read_state(self, ctx: RunContext, *, pkg: PackageLike | None = None, guest_dir: str | None = None) -> GuestState:
        """Service state, pushed files' hashes and what the kind of target can tell (one round trip)."""

    @abstractmethod
    def push(self, local: Path, remote: str) -> PushResult:
        """Copy one package file (hash-skipping, never half-written in place)."""

    @abstractmethod
    def load(self, ctx: RunContext, pkg: PackageLike, capture: Any, *, guest_dir: str, smoke: bool, state: GuestState | None) -> LoadResult:
        """Install (when needed) and start the service, then the smoke test; never raises on sc.exe codes."""

    @abstractmethod
    def unload(self, ctx: RunContext, *, delete: bool = False) -> UnloadResult:
        """Stop the service, wait for STOPPED, check the device path is gone (optionally delete the service)."""

    @abstractmethod
    def set_fault_step(self, ctx: RunContext, step: int) -> None:
        """FailAtStep under the service key's Parameters (0 clears it)."""

    @abstractmethod
    def new_capture(self, ctx: RunContext, run_id: str, guest_dir: str) -> Any:
        """A DbgPrint capture with wait_for(phase, step=None) -> Verdict, save(dir), pull(dir), stop()."""

    @abstractmethod
    def log_source(self, ctx: RunContext) -> LogSource:
        """The newest capture log (raises StepFailed when there is none)."""

    @abstractmethod
    def collect_logs(self, ctx: RunContext, dest: Path) -> list[Path]:
        """Copy every capture log (and crash dumps) into dest; the files written."""

    def deploy_plan(self) -> list[Step] | None:
        """The deploy steps for this kind of target; None: the Windows plan (targets.steps.PLAN)."""
        return None

    def summary(self, state: GuestState) -> str:
        """One line about the target's state, printed by the deploy's first step."""
        return state.summary()

    def not_applicable(self) -> dict[str, str]:
        """Windows checks that mean nothing on this kind of target: name -> why."""
        return {}

    def check_signature(self, ctx: RunContext, pkg: PackageLike) -> str:
        """Verify the package's embedded signature on the target itself; returns what was checked ('' = not done)."""
        return ""

    def deployed(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """A deploy succeeded: keep what the loaded driver needs (Wine: its processes) after close()."""

    def ready(self) -> bool:
        """Does the target answer (after a revert or a reboot)?"""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release what this object holds (connections, processes it started)."""
