"""The folders the pipeline pushes into inside a Wine prefix, and the rule for deleting them.

wineboot makes drive_c/users/<u>/{Documents,Desktop,Downloads,...} symbolic links to
the user's real home folders, so a guest path's spelling says nothing about where it
lands: C:\\users\\<u>\\Documents\\drv is ~/Documents/drv. A push folder must stay under
drive_c with no link on the way, and `vm.revert` deletes it only when it holds the
marker written when the pipeline created it (before its first push).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.errors import ConfigError
from ...core.owned import PUSH_MARKER, claim_folder, link_on_the_way, owned_problem, remove_owned

# The Wine client's folder in the prefix (the target's tools folder).
TOOLS_DIR = "C:\\driverpipe"

__all__ = ["PUSH_MARKER", "TOOLS_DIR", "claim_push_folder", "owned_problem", "push_folder_problem", "remove_owned"]


def push_folder_problem(drive_c: Path, path: Path) -> str:
    """'' when `path` may hold what the pipeline pushes: under drive_c, not Windows' own folder, no symbolic link on the way."""
    windows = drive_c / "windows"
    if drive_c not in path.parents or path == windows or windows in path.parents:
        return "is not a folder the pipeline pushes to"
    link = link_on_the_way(drive_c, path)
    return f"leads out of the prefix through the symbolic link {link}" if link is not None else ""


def claim_push_folder(prefix: Any, windows_dir: str) -> None:
    """Before a push: create the folder with our marker (so `vm.revert` may delete it later); a folder behind a link is refused."""
    path = prefix.host_path(windows_dir)
    problem = push_folder_problem(prefix.drive_c, path)
    if problem:
        raise ConfigError(
            f"{windows_dir} ({path}) {problem}; nothing is pushed there",
            "set deploy.guest_dir (or targets.NAME.guest_dir) to a folder of its own, e.g. C:\\WazabiEDR",
        )
    claim_folder(path, PUSH_MARKER)
