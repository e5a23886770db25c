"""The Guest interface every transport implements and every step uses.

A guest runs PowerShell scripts shipped as .ps1 files in driverpipe/scripts/guest/.
Parameters are BOUND (never formatted into script text), and each script writes
exactly one JSON document as its last line of output, which run_script parses.
`run_batch` runs several scripts in one round trip (Invoke-Batch.ps1 splats each
item's parameters), which keeps a redeploy to a handful of round trips.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import StepFailed
from ..core.scripts import script_text
from .errors import GuestTimeout, RemoteFileNotFound


@dataclass
class PushResult:
    remote_path: str
    sha256: str
    copied: bool  # False when the remote file already had the same hash
    size: int


class GuestScriptError(StepFailed):
    """A guest script ran and reported an error (message from the guest, one line)."""


class Guest(Protocol):
    """A Windows machine the pipeline talks to."""

    name: str
    round_trips: int  # remote round trips made so far (benchmarks and tests read it)

    def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Run a shipped .ps1 (by file name) with bound parameters; return its parsed JSON result."""
        ...

    def run_batch(self, items: list[tuple[str, dict[str, Any]]], *, timeout: float | None = None) -> list[Any]:
        """Run several shipped scripts in one round trip; results in order."""
        ...

    def run_script_path(self, path: Path, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Run a shipped .ps1 outside scripts/guest (e.g. Hyper-V host scripts) the same way."""
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


class BatchMixin:
    """What a transport gets from run_script alone: run_batch through the shipped
    Invoke-Batch.ps1, and file reads through Read-FileRange.ps1 (transports with a file
    channel of their own, SFTP or the local disk, override read_range)."""

    def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        raise NotImplementedError

    def run_batch(self, items: list[tuple[str, dict[str, Any]]], *, timeout: float | None = None) -> list[Any]:
        payload = [{"script": script_text(name), "params": params} for name, params in items]
        try:
            raw = self.run_script("Invoke-Batch.ps1", {"ItemsJson": json.dumps(payload)}, timeout=timeout)
        except GuestTimeout as hung:
            # Name what the batch ran: "Invoke-Batch.ps1" alone says nothing about what hung.
            names = ", ".join(name for name, _ in items)
            raise GuestTimeout(hung.message.replace("Invoke-Batch.ps1", f"the batch of {names}", 1), hung.hint) from None
        results = raw if isinstance(raw, list) else [raw]
        out: list[Any] = []
        for (name, _), entry in zip(items, results, strict=False):
            if not isinstance(entry, dict) or not entry.get("ok"):
                message = entry.get("error") if isinstance(entry, dict) else repr(entry)
                raise GuestScriptError(f"{name} failed on the guest: {message}")
            out.append(entry.get("result"))
        if len(out) != len(items):
            raise GuestScriptError(f"batch stopped after {len(out)} of {len(items)} scripts")
        return out

    def read_file_range(self, remote: str, offset: int, count: int) -> tuple[bytes, int]:
        """Up to count bytes of a guest file from offset, and the file's current size."""
        result = self.run_script("Read-FileRange.ps1", {"Path": remote, "Offset": offset, "Count": count})
        if not isinstance(result, dict) or not result.get("exists"):
            raise RemoteFileNotFound(f"{getattr(self, 'name', 'guest')}: no such file {remote}")
        return base64.b64decode(str(result.get("base64") or "")), int(result.get("size") or 0)

    def read_range(self, remote: str, offset: int, max_bytes: int) -> bytes:
        return self.read_file_range(remote, offset, max_bytes)[0]
