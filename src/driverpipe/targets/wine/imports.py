"""What the driver image imports that Wine's ntoskrnl.exe does not export.

Wine binds such an import to a stub: the image loads, and the first call ends
its driver host (winedevice.exe) with "Call from ... to unimplemented function
ntoskrnl.exe.NAME, aborting" on Wine's debug output, after which sc start
reports 1053. `invoke doctor` lists these imports before a load
(`missing_exports`); `loader_failure` turns Wine's message into one line.
"""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

# Where Debian's wine64 (and Wine's default install) keep the PE builtins.
NTOSKRNL_CANDIDATES = (
    "lib/x86_64-linux-gnu/wine/x86_64-windows/ntoskrnl.exe",
    "lib/wine/x86_64-windows/ntoskrnl.exe",
    "lib64/wine/x86_64-windows/ntoskrnl.exe",
)
UNIMPLEMENTED = re.compile(r"unimplemented function ([\w.-]+\.(?:exe|dll|sys))\.(\w+)")
TAIL_BYTES = 256 << 10


def ntoskrnl_path(wine: str = "wine") -> Path | None:
    """Wine's own ntoskrnl.exe, next to the wine executable's installation."""
    found = shutil.which(wine)
    if found is None:
        return None
    prefix = Path(found).resolve().parents[1]
    for relative in NTOSKRNL_CANDIDATES:
        for base in (prefix, Path("/usr")):
            if (base / relative).is_file():
                return base / relative
    return None


@functools.lru_cache(maxsize=4)
def exports(path: Path) -> frozenset[str]:
    import lief

    binary = lief.PE.parse(str(path))
    table = binary.get_export() if binary is not None and binary.has_exports else None
    if table is None:
        return frozenset()
    names = frozenset(str(e.name) for e in table.entries if e.name)
    del binary
    return names


def missing_exports(image_imports: dict[str, list[str]], ntoskrnl: Path) -> list[str]:
    """The image's ntoskrnl.exe imports that this Wine's ntoskrnl.exe does not export."""
    have = exports(ntoskrnl)
    wanted = next((names for dll, names in image_imports.items() if dll.lower() == "ntoskrnl.exe"), [])
    return sorted(name for name in wanted if name not in have)


def log_mark(raw_log: Path) -> int:
    """The log's size now: `loader_failure(since=...)` then reads only what a later start wrote."""
    try:
        return raw_log.stat().st_size
    except OSError:
        return 0


def loader_failure(raw_log: Path, since: int = 0) -> str | None:
    """One line naming the import when Wine's loader stopped the driver on an unimplemented function (last one in the log's tail after `since`)."""
    try:
        with raw_log.open("rb") as fh:
            size = raw_log.stat().st_size
            fh.seek(max(0, since if since <= size else 0, size - TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    found = UNIMPLEMENTED.findall(text)
    if not found:
        return None
    dll, name = found[-1]
    return (
        f"the driver called {name}, which Wine's {dll} does not export (Wine's loader: unimplemented function {dll}.{name}): "
        "the driver host winedevice.exe was ended; `invoke doctor` lists such imports before a load"
    )
