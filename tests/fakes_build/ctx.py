"""A RunContext on the isolated `project` fixture, capturing what it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from driverpipe.core.config import load
from driverpipe.core.context import RunContext


def make_ctx(project: Path, *, dry: bool = False, flags: dict[str, Any] | None = None) -> tuple[RunContext, list[str]]:
    lines: list[str] = []
    cfg = load(root=project, flags=flags)
    return RunContext(config=cfg, dry=dry, echo=lines.append, progress=lines.append), lines
