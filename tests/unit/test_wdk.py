"""WDK discovery (note 01 order) against fake kit trees; winreg is never touched off Windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverpipe.core.errors import EnvironmentProblem
from driverpipe.image import wdk


def make_kit(root: Path, versions: tuple[str, ...] = ("10.0.22621.0",), arch: str = "x64", tools: tuple[str, ...] = wdk.TOOL_NAMES) -> Path:
    for version in versions:
        (root / "Lib" / version).mkdir(parents=True, exist_ok=True)
        bin_dir = root / "bin" / version / arch
        bin_dir.mkdir(parents=True, exist_ok=True)
        for tool in tools:
            (bin_dir / f"{tool}.exe").write_bytes(b"MZ")
    return root


def no_registry(key: str, value: str) -> str | None:
    return None


def test_wdkcontentroot_wins(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "ewdk")
    other = make_kit(tmp_path / "Windows Kits" / "10.0")
    info = wdk.discover({"WDKContentRoot": str(kit), "MicrosoftKitRoot": str(other.parent.parent)}, no_registry)
    assert info.root == kit and info.source == "WDKContentRoot"
    assert info.version == "10.0.22621.0"
    assert info.bin_dir == kit / "bin" / "10.0.22621.0" / "x64"
    assert set(info.tools) == set(wdk.TOOL_NAMES)
    assert info.tool("stampinf") == info.bin_dir / "stampinf.exe"


def test_invalid_wdkcontentroot_falls_back_to_microsoftkitroot(tmp_path: Path) -> None:
    make_kit(tmp_path / "Windows Kits" / "10.1")
    info = wdk.discover({"WDKContentRoot": str(tmp_path / "nope"), "MicrosoftKitRoot": str(tmp_path), "WDKKitVersion": "10.1"}, no_registry)
    assert info.root == tmp_path / "Windows Kits" / "10.1" and info.source == "MicrosoftKitRoot"


def test_registry_then_wow6432node(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "kits")
    asked: list[str] = []

    def registry(key: str, value: str) -> str | None:
        asked.append(key)
        assert value == "KitsRoot10"
        return str(kit) if "Wow6432Node" in key else None

    info = wdk.discover({}, registry)
    assert asked == [wdk.KITS_KEY, wdk.KITS_KEY_WOW]
    assert info.root == kit and "Wow6432Node" in info.source


def test_nothing_found_is_one_actionable_line(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentProblem) as exc:
        wdk.discover({"WDKContentRoot": str(tmp_path / "missing")}, no_registry)
    assert "Windows Driver Kit not found" in exc.value.message and "is not a directory" in exc.value.message
    assert exc.value.hint and "eWDK" in exc.value.hint and "\n" not in exc.value.message


def test_default_registry_reader_is_inert_off_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wdk, "host_is_windows", lambda: False)
    with pytest.raises(EnvironmentProblem, match="KitsRoot10"):
        wdk.discover({})


def test_highest_version_is_numeric_and_version_number_overrides(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "k", versions=("10.0.9200.0", "10.0.22621.0", "10.0.26100.0"))
    (kit / "Lib" / "wdf").mkdir()
    assert wdk.discover({"WDKContentRoot": str(kit)}, no_registry).version == "10.0.26100.0"
    info = wdk.discover({"WDKContentRoot": str(kit), "Version_Number": "10.0.22621.0\\"}, no_registry)
    assert info.version == "10.0.22621.0"


def test_missing_tools_folder_and_missing_tool(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "k", tools=("signtool",))
    (kit / "Lib" / "10.0.99999.0").mkdir()
    with pytest.raises(EnvironmentProblem, match=r"no tools folder bin\\10.0.99999.0\\x64"):
        wdk.discover({"WDKContentRoot": str(kit)}, no_registry)
    info = wdk.discover({"WDKContentRoot": str(kit), "Version_Number": "10.0.22621.0"}, no_registry)
    with pytest.raises(EnvironmentProblem, match=r"no stampinf\.exe"):
        info.tool("stampinf")


def test_arm64_host_and_tools_dir(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "k", arch="arm64", tools=("stampinf",))
    tools_dir = kit / "tools" / "10.0.22621.0" / "arm64"
    tools_dir.mkdir(parents=True)
    (tools_dir / "infverif.exe").write_bytes(b"MZ")
    info = wdk.discover({"WDKContentRoot": str(kit), "PROCESSOR_ARCHITECTURE": "ARM64"}, no_registry)
    assert info.bin_dir.name == "arm64" and info.tools["infverif"] == tools_dir / "infverif.exe"


def test_find_tool_falls_back_to_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "bin" / "inf2cat"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tool.parent))
    assert wdk.find_tool("inf2cat", {}, no_registry) == tool
    with pytest.raises(EnvironmentProblem, match="infverif not found"):
        wdk.find_tool("infverif", {}, no_registry)
