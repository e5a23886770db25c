"""--dry: a guest that connects to nothing and shows what would happen.

Every script is printed with ctx.show_script (bound parameters redacted: secret
names and registered secret values become ***). Results are None (or [None]*n
for a batch); callers handle None in dry mode. No password is resolved here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.context import RunContext
from ..core.scripts import script_path
from .base import PushResult


class DryGuest:
    """Implements the Guest protocol by printing."""

    def __init__(self, ctx: RunContext, name: str, where: str):
        self.ctx = ctx
        self.name = name
        self.where = where  # e.g. "win11 (winrm https://10.0.0.5:5986)"
        self.round_trips = 0

    def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        self.ctx.show_script(self.where, script_path(script), params or {})
        return None

    def run_script_path(self, path: Path, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        self.ctx.show_script(self.where, path, params or {})
        return None

    def run_batch(self, items: list[tuple[str, dict[str, Any]]], *, timeout: float | None = None) -> list[Any]:
        self.ctx.say(f"[dry] {self.where}: one batch of {len(items)} scripts (Invoke-Batch.ps1):")
        for name, params in items:
            self.ctx.show_script(self.where, script_path(name), params)
        return [None] * len(items)

    def push(self, local: Path, remote: str) -> PushResult:
        self.ctx.say(f"[dry] {self.where}: push {local} -> {remote} (skipped if the SHA-256 matches; else .partial + verify + rename)")
        return PushResult(remote, "", False, 0)

    def pull(self, remote: str, local: Path) -> None:
        self.ctx.say(f"[dry] {self.where}: pull {remote} -> {local}")

    def read_range(self, remote: str, offset: int, max_bytes: int) -> bytes:
        self.ctx.say(f"[dry] {self.where}: read {remote} from byte {offset} (up to {max_bytes} bytes)")
        return b""

    def reconnect(self) -> None:
        self.ctx.say(f"[dry] {self.where}: reconnect")

    def close(self) -> None:
        pass
