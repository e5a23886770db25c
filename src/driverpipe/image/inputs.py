"""The build's inputs as one digest, so an unchanged tree is not built twice.

`invoke build` on sources, manifests, lock, cargo config, features, profile,
model and toolchain that all hash as they did at the last recorded build trusts
that record (its artifact's own hash is still checked by load_manifest) and
starts no cargo. Anything else, or any doubt, runs cargo as before. The digest
lives beside the build manifest (driverpipe-build.inputs), written after a build
was checked and recorded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from ..core.context import RunContext
from ..core.errors import PipelineError
from ..core.files import write_atomic
from .artifact import BuildResult, load_manifest, manifest_path

SKIP_DIRS = {"target", ".git", "__pycache__"}


def digest(ctx: RunContext, dirs: list[Path], settings: list[str]) -> str:
    """SHA-256 over every file under `dirs` (build outputs and VCS data aside), the settings and the toolchain."""
    h = hashlib.sha256()
    for part in [*settings, *_toolchain()]:
        h.update(part.encode("utf-8", "replace") + b"\0")
    seen: set[Path] = set()
    for top in dirs:
        for root, subdirs, files in os.walk(top):
            subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS)
            for name in sorted(files):
                path = Path(root, name)
                if path in seen:
                    continue
                seen.add(path)
                h.update(str(path.relative_to(top.parent)).encode("utf-8", "replace") + b"\0")
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _toolchain() -> list[str]:
    """What selects the compiler without a process start: the cargo on PATH, rustup's settings and toolchains."""
    parts = [shutil.which("cargo") or "", os.environ.get("RUSTUP_TOOLCHAIN", "")]
    home = Path(os.environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
    for path in (home / "settings.toml", *sorted((home / "toolchains").glob("*"))):
        try:
            st = path.stat()
            parts.append(f"{path.name}:{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append(f"{path.name}:missing")
    return parts


def _path(ctx: RunContext) -> Path:
    return manifest_path(ctx).with_suffix(".inputs")


def trusted(ctx: RunContext, inputs: str, *, model: str, feats: list[str]) -> BuildResult | None:
    """The recorded build when its inputs hash the same (and its artifacts still do); None: build."""
    try:
        if _path(ctx).read_text(encoding="utf-8").strip() != inputs:
            return None
        recorded = load_manifest(ctx)
    except (OSError, PipelineError):
        return None
    if recorded.model != model or recorded.features != feats or not recorded.image:
        return None
    ctx.say(f"unchanged inputs: {recorded.artifact.name} ({model}) sha256 {recorded.sha256['artifact'][:16]}…, already checked and recorded; cargo not run")
    return recorded


def remember(ctx: RunContext, inputs: str) -> None:
    write_atomic(_path(ctx), (inputs + "\n").encode("utf-8"))
