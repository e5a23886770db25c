"""The Guest interface every transport implements and every step uses.

A guest runs PowerShell scripts shipped as .ps1 files in driverpipe/scripts/guest/.
Parameters are BOUND (never formatted into script text), and each script writes
exactly one JSON document as its last line of output, which run_script parses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts" / "guest"


def script_path(name: str) -> Path:
    """Path of a shipped guest script by file name (e.g. 'Get-GuestState.ps1')."""
    return SCRIPTS_DIR / name


@dataclass
class PushResult:
    remote_path: str
    sha256: str
    copied: bool  # False when the remote file already had the same hash
    size: int


class Guest(Protocol):
    """A Windows machine the pipeline talks to."""

    name: str
    round_trips: int  # remote round trips made so far (benchmarks and tests read it)

    def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Run a shipped .ps1 with bound parameters; return its parsed JSON result."""
        ...

    def push(self, local: Path, remote: str) -> PushResult:
        """Copy a file atomically (temp name + rename), skipping it if the hash already matches."""
        ...

    def pull(self, remote: str, local: Path) -> None:
        """Copy a file from the guest."""
        ...

    def read_range(self, remote: str, offset: int, max_bytes: int) -> bytes:
        """Read up to max_bytes of a remote file starting at offset (for tailing logs)."""
        ...

    def reconnect(self) -> None:
        """Drop and rebuild the connection (after a reboot)."""
        ...

    def close(self) -> None: ...
