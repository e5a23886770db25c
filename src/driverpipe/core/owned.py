"""What the pipeline made, and every record it reads back.

Two rules live here:

- Delete only what the pipeline made. A folder it creates gets a marker file first;
  `remove_owned` deletes a folder only when that marker is there (or the folder is
  empty), and otherwise refuses with one line that suggests no deleting command.
- Every file read back is untrusted. `read_record` parses a JSON record and checks it
  against a small shape (key -> check); anything that does not fit is None, exactly
  like a missing file, so the caller's rule for "missing" (rebuild, re-sign, treat as
  foreign) applies and nothing ever raises a traceback on a garbled file.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

MAX_RECORD = 4 << 20  # a record is small; a huge file is not ours
Check = Callable[[Any], bool]


def is_text(value: Any) -> bool:
    return isinstance(value, str)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < (1 << 63)


def is_sha256(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{64}", value) is not None


def is_plain_file_name(value: Any) -> bool:
    """A file name inside one folder: no separators, no '..', no drive, no NUL."""
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", value) is not None and ".." not in value


def one_of(*allowed: Any) -> Check:
    return lambda value: value in allowed


def or_none(check: Check) -> Check:
    return lambda value: value is None or check(value)


def table(shape: Mapping[str, Check], *, optional: tuple[str, ...] = ()) -> Check:
    """A JSON object holding every key of `shape` (except `optional` ones) with values that pass their checks."""

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return False
        for key, test in shape.items():
            if key not in value:
                if key in optional:
                    continue
                return False
            if not test(value[key]):
                return False
        return True

    return check


def mapping_of(key: Check, value: Check) -> Check:
    return lambda data: isinstance(data, dict) and all(key(k) and value(v) for k, v in data.items())


def read_record(path: Path, shape: Check) -> dict[str, Any] | None:
    """The JSON object in `path` when it fits `shape`; None when missing, unreadable, garbled or the wrong shape."""
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_RECORD + 1)
    except (OSError, ValueError):
        return None
    if len(raw) > MAX_RECORD:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and shape(data) else None


def is_empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    except OSError:
        return False


def remove_owned(path: Path, *markers: str, key: str = "") -> bool:
    """Delete folder `path` only when it holds one of our `markers` files (or is empty); True when something was removed.

    A folder without the marker is the user's: refused with one line (exit 2) that
    names it and suggests moving it, never a command that deletes it.
    """
    if not path.exists() and not path.is_symlink():
        return False
    if is_empty_dir(path):
        path.rmdir()
        return True
    problem = owned_problem(path, *markers)
    if problem:
        named = f"{key} {path}" if key else str(path)
        raise ConfigError(
            f"{named} {problem}; it is left as it is, never deleted",
            f"move it out of the way yourself, or point {key or 'the setting'} at a new folder" if key else "move it out of the way yourself",
        )
    shutil.rmtree(path)
    return True


# A folder the pipeline pushes into (the Wine target's guest_dir and tools folder): marked when it creates it.
PUSH_MARKER = ".driverpipe-pushed"


def link_on_the_way(base: Path, path: Path) -> Path | None:
    """The first symbolic link from `base` down to `path` (itself included), or `path` when it is not under `base`.

    Spelling is not enough: a link inside (Wine's users/<u>/Documents -> ~/Documents)
    leads outside, so every component is checked and the resolved path must stay under
    the resolved base.
    """
    try:
        rel = path.relative_to(base)
    except ValueError:
        return path
    here = base
    for part in rel.parts:
        here = here / part
        if here.is_symlink():
            return here
    try:
        inside = path.resolve().is_relative_to(base.resolve())
    except (OSError, RuntimeError):
        return path
    return None if inside else path


def claim_folder(path: Path, marker: str) -> None:
    """Create folder `path` (or mark an empty one) with our `marker`; an existing folder with content stays unmarked (never ours to delete)."""
    if path.is_dir() and not path.is_symlink() and not is_empty_dir(path):
        return
    path.mkdir(parents=True, exist_ok=True)
    (path / marker).touch()


def owned_problem(path: Path, *markers: str) -> str:
    """'' when `remove_owned(path, *markers)` would delete it (or there is nothing); else why it would refuse."""
    if not path.exists() and not path.is_symlink():
        return ""
    if path.is_symlink():
        return "is a symbolic link"
    if is_empty_dir(path):
        return ""
    if not path.is_dir() or not any((path / marker).is_file() for marker in markers):
        return f"was not made by driverpipe (no {markers[0]} in it)"
    return ""


# The Wine prefix's marker: <prefix>/.driverpipe/prefix.json, written before wineboot ("ready": false) and after it.
PREFIX_MARKER = (".driverpipe", "prefix.json")
PREFIX_MARKER_SHAPE = table(
    {"format": one_of(1), "wine": is_text, "created": is_number, "ready": one_of(True, False)},
    optional=("ready",),
)


def prefix_marker(prefix: Path) -> dict[str, Any] | None:
    return read_record(prefix.joinpath(*PREFIX_MARKER), PREFIX_MARKER_SHAPE)


def foreign_folder_problem(prefix: Path) -> str:
    """'' when `prefix` is absent, empty or holds our marker; else what it is instead (someone else's: never touched)."""
    if not prefix.exists() and not prefix.is_symlink():
        return ""
    if prefix.is_symlink() or not prefix.is_dir():
        return "is not a directory" if not prefix.is_dir() else "is a symbolic link"
    if is_empty_dir(prefix) or prefix_marker(prefix) is not None:
        return ""
    return f"was not made by driverpipe (no {'/'.join(PREFIX_MARKER)} in it)"
