"""A signed-package stand-in (what driverpipe.signing.sign.check_signed_package returns) for deploy tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StubPackage:
    dir: Path
    name: str
    files: list[Path]
    cert_path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
