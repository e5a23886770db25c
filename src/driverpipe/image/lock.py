"""The checkout's build output is held by one of build, package and sign at a time."""

from __future__ import annotations

from typing import Any

from ..core.locks import LocalLock


def build_lock(ctx: Any) -> LocalLock:
    """The checkout's build output (manifest, package folder): build, package and sign take turns."""
    from .artifact import crate_dir

    return LocalLock(crate_dir(ctx) / "target" / ".driverpipe.lock", f"the build output of {crate_dir(ctx)}")
