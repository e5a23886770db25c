"""Local file helpers every step shares: atomic writes and SHA-256 of a file.

Atomic = a temp file in the same folder, then os.replace: a reader (or an
interrupted run) never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` atomically; `mode` defaults to the usual umask-based mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if mode is None:  # mkstemp makes 0600; ordinary files get the usual umask-based mode
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks (driver images and dumps can be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_basename(remote: str, what: str) -> str:
    """The last component of a path that came from a guest or build host, safe as a local file name.

    Separators of both kinds end a component; '', '.', '..', a bare drive ('C:') and
    names with NUL or ':' are refused (one line), so a remote name can never point
    outside the local folder it is written into.
    """
    from .errors import StepFailed

    name = re.split(r"[\\/]", str(remote))[-1].strip()
    if name in ("", ".", "..") or re.fullmatch(r"[A-Za-z]:", name) or "\0" in name or ":" in name:
        raise StepFailed(f"{what}: the remote path {remote!r} has no usable file name", "check what the guest or build host reported")
    return name
