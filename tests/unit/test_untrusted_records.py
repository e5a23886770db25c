"""Records the pipeline reads back and answers from a guest are untrusted; folders it did not make are never deleted."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import ConfigError, StepFailed
from driverpipe.core.owned import is_count, prefix_marker, read_record, remove_owned, table
from driverpipe.targets import operations
from driverpipe.targets.wine.prefix import WinePrefix

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"\xff\xfe", b"[1, 2]", b'"text"', b'{"pid": "12"}', b'{"pid": -1}', b'{"pid": true}', b'{"pid": 1e400}', b"[" * 100000],
)
def test_a_record_that_does_not_fit_reads_as_missing(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "record.json"
    path.write_bytes(raw)
    assert read_record(path, table({"pid": is_count})) is None


def test_a_record_that_fits_is_read_and_a_huge_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text('{"pid": 42, "extra": "kept"}', encoding="utf-8")
    assert read_record(path, table({"pid": is_count})) == {"pid": 42, "extra": "kept"}
    path.write_text('{"pid": 42, "pad": "' + "x" * (5 << 20) + '"}', encoding="utf-8")
    assert read_record(path, table({"pid": is_count})) is None
    assert read_record(tmp_path / "missing.json", table({})) is None


def _someones_prefix(tmp_path: Path) -> Path:
    prefix = tmp_path / "theirs"
    (prefix / "drive_c" / "users" / "me").mkdir(parents=True)
    (prefix / "system.reg").write_text("WINE REGISTRY Version 2\n#arch=win64\n", encoding="utf-8")
    (prefix / "drive_c" / "users" / "me" / "notes.txt").write_text("mine\n", encoding="utf-8")
    return prefix


@pytest.mark.parametrize("marker", [None, "garbage", '{"format": 2, "wine": "wine-8.0", "created": 1}', '{"format": 1, "wine": 8, "created": 1}'])
def test_a_prefix_without_a_readable_marker_is_never_deleted_or_restored(tmp_path: Path, marker: str | None) -> None:
    prefix = _someones_prefix(tmp_path)
    if marker is not None:
        (prefix / ".driverpipe").mkdir()
        (prefix / ".driverpipe" / "prefix.json").write_text(marker, encoding="utf-8")
    before = sorted(str(p) for p in prefix.rglob("*"))
    wine = WinePrefix(prefix, say=lambda _line: None, key="targets.w.wine.prefix")
    assert wine.foreign() and prefix_marker(prefix) is None
    for act in (wine.delete, lambda: wine.restore("clean", remove=[]), wine.create, wine.ensure):
        with pytest.raises(ConfigError) as err:
            act()
        assert "targets.w.wine.prefix" in err.value.message and "vm.revert" not in (err.value.hint or "")
    assert sorted(str(p) for p in prefix.rglob("*")) == before


def test_our_prefix_is_recognised_and_restore_never_deletes_drive_c_itself(tmp_path: Path) -> None:
    prefix = _someones_prefix(tmp_path)
    (prefix / ".driverpipe" / "states" / "clean").mkdir(parents=True)
    (prefix / ".driverpipe" / "prefix.json").write_text(json.dumps({"format": 1, "wine": "wine-8.0", "created": 1.0, "ready": True}), encoding="utf-8")
    wine = WinePrefix(prefix, say=lambda _line: None)
    assert not wine.foreign()
    for bad in (wine.drive_c, wine.drive_c / "windows", wine.drive_c / "windows" / "system32"):
        with pytest.raises(ConfigError, match="refusing to delete"):
            wine.restore("clean", remove=[bad])
    assert (prefix / "drive_c" / "users" / "me" / "notes.txt").is_file()


def test_a_garbled_run_record_is_no_record(tmp_path: Path) -> None:
    prefix = tmp_path / "ours"
    (prefix / ".driverpipe").mkdir(parents=True)
    for garbage in ('{"server_pid": "12"}', '{"raw_offset": -5}', '{"capture_start": 1.5}', "[]", "{"):
        (prefix / ".driverpipe" / "run.json").write_text(garbage, encoding="utf-8")
        wine = WinePrefix(prefix, say=lambda _line: None)
        assert wine.recorded("server_pid") is None and wine.recorded("raw_offset", 0) == 0
        assert not wine.running()
    wine.record(raw_offset=10)
    assert wine.recorded("raw_offset") == 10


def test_remove_owned_removes_only_marked_or_empty_folders(tmp_path: Path) -> None:
    empty, ours, theirs = tmp_path / "empty", tmp_path / "ours", tmp_path / "theirs"
    for folder in (empty, ours, theirs):
        folder.mkdir()
    (ours / ".mark").touch()
    (ours / "file").touch()
    (theirs / "file").touch()
    assert remove_owned(empty, ".mark") and remove_owned(ours, ".mark")
    with pytest.raises(ConfigError, match="never deleted"):
        remove_owned(theirs, ".mark")
    assert (theirs / "file").is_file()
    link = tmp_path / "link"
    link.symlink_to(ours if ours.exists() else theirs)
    with pytest.raises(ConfigError):
        remove_owned(link, ".mark")


class _Answers:
    """A transport whose every script answers `value` (what a broken or hostile guest may send)."""

    name = "guest"
    round_trips = 0

    def __init__(self, value: Any):
        self.value = value

    def run_script(self, name: str, params: dict[str, Any], timeout: float | None = None) -> Any:
        return self.value


@pytest.mark.parametrize(
    "answer",
    [[1, 2], "text", 7, {"os_build": "eleven"}, {"bcdedit": [1]}, {"files": ["a"]}, {"boot_time": {"x": 1}}, {"debug_filter": "high"}],
)
def test_a_guest_state_answer_that_does_not_fit_is_one_line(project: Path, answer: Any) -> None:
    ctx = RunContext(config=load(root=project), echo=lambda _line: None)
    with pytest.raises(StepFailed) as err:
        operations._ps_read_state(_Answers(answer), ctx)
    assert "Get-GuestState.ps1" in err.value.message and "unreadable" in err.value.message


@pytest.mark.parametrize("answer", [["stopped"], {"stop": "gone"}, {"device_open_error": "none"}, {"stop": {"rc": 0}, "final_query": 5}])
def test_an_unload_answer_that_does_not_fit_is_never_read_as_success(project: Path, answer: Any) -> None:
    ctx = RunContext(config=load(root=project), echo=lambda _line: None)
    try:
        result = operations._ps_unload_driver(ctx, _Answers(answer))
    except StepFailed as exc:
        assert "Invoke-DriverUnload.ps1" in exc.message
        return
    assert not result.dry and not result.stopped and not result.device_gone


def test_pyproject_license_is_an_spdx_string_with_a_backend_that_reads_it() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["license"] == "MIT"
    requires = data["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=") and int(r.split(">=")[1].split(".")[0]) >= 77 for r in requires), requires


@pytest.mark.parametrize("answer", [{"boot_time": "133500000000000000"}, {"boot_time": 1.5}, {"boot_time": True}, ["x"], "x"])
def test_a_boot_time_that_is_not_an_integer_is_unknown(answer: Any) -> None:
    from driverpipe.targets.reboot import read_boot_time

    assert read_boot_time(_Answers(answer)) is None
