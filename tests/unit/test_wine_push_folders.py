"""vm.revert on Wine deletes only the push folders the pipeline made, never through Wine's links to the user's home."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driverpipe.core.errors import ConfigError
from driverpipe.targets.wine import folders, target
from driverpipe.targets.wine.prefix import WinePrefix


def _our_prefix(tmp_path: Path) -> tuple[WinePrefix, Path]:
    """A prefix-shaped tree of ours whose Documents is a link to a real home folder, as wineboot makes it."""
    prefix, home = tmp_path / "prefix", tmp_path / "home"
    (prefix / ".driverpipe" / "states" / "clean").mkdir(parents=True)
    (prefix / ".driverpipe" / "prefix.json").write_text(json.dumps({"format": 1, "wine": "wine-8.0", "created": 1.0, "ready": True}), encoding="utf-8")
    (prefix / "system.reg").write_text("WINE REGISTRY Version 2\n", encoding="utf-8")
    (home / "Documents" / "drv").mkdir(parents=True)
    (home / "Documents" / "drv" / "thesis.tex").write_text("mine\n", encoding="utf-8")
    (prefix / "drive_c" / "users" / "me").mkdir(parents=True)
    (prefix / "drive_c" / "users" / "me" / "Documents").symlink_to(home / "Documents")
    return WinePrefix(prefix, say=lambda _line: None), home


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_revert_never_deletes_a_guest_dir_behind_wines_link_to_home(tmp_path: Path) -> None:
    wine, home = _our_prefix(tmp_path)
    before = _tree(home)
    guest_dir = wine.host_path("C:\\users\\me\\Documents\\drv")
    with pytest.raises(ConfigError) as err:
        wine.restore("clean", remove=[guest_dir])
    assert "symbolic link" in err.value.message and "\n" not in err.value.message
    assert _tree(home) == before
    with pytest.raises(ConfigError, match="symbolic link"):
        folders.claim_push_folder(wine, "C:\\users\\me\\Documents\\drv")
    assert _tree(home) == before  # no marker written into the user's folder either


def test_revert_deletes_only_a_folder_holding_the_push_marker(tmp_path: Path) -> None:
    wine, _home = _our_prefix(tmp_path)
    theirs = wine.host_path("C:\\Tools")
    theirs.mkdir()
    (theirs / "keep.txt").write_text("mine\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not made by driverpipe") as err:
        wine.restore("clean", remove=[theirs])
    assert "\n" not in err.value.message
    assert (theirs / "keep.txt").is_file()

    folders.claim_push_folder(wine, "C:\\WazabiEDR")
    ours = wine.host_path("C:\\WazabiEDR")
    (ours / "WazabiEDR.sys").write_bytes(b"MZ")
    folders.claim_push_folder(wine, "C:\\Tools")  # a folder with the user's content stays unmarked
    assert not (theirs / folders.PUSH_MARKER).exists()
    wine.restore("clean", remove=[ours, wine.host_path("C:\\never-pushed")])
    assert not ours.exists() and (theirs / "keep.txt").is_file()


def test_a_link_inside_the_guest_dir_itself_is_refused(tmp_path: Path) -> None:
    wine, home = _our_prefix(tmp_path)
    (wine.drive_c / "drv").symlink_to(home / "Documents" / "drv")
    with pytest.raises(ConfigError, match="symbolic link"):
        wine.restore("clean", remove=[wine.host_path("C:\\drv")])
    assert (home / "Documents" / "drv" / "thesis.tex").is_file()


def test_the_tools_folder_is_the_one_the_target_pushes_its_client_to() -> None:
    assert folders.TOOLS_DIR == target.TOOLS_DIR
