"""Wine's loader message about an import its ntoskrnl.exe lacks, turned into one line (targets/wine/imports.py)."""

from __future__ import annotations

from pathlib import Path

from driverpipe.targets.wine import imports

# The two lines Wine 8 printed when a driver called CmRegisterCallbackEx (seen on Debian 12).
LOADER = (
    "wine: Call from 000000017002D3F8 to unimplemented function ntoskrnl.exe.CmRegisterCallbackEx, aborting\n"
    "wine: Unimplemented function ntoskrnl.exe.CmRegisterCallbackEx called at address 000000017002D3F8 (thread 0160), starting debugger...\n"
)


def test_the_last_unimplemented_function_in_the_log_is_named(tmp_path: Path) -> None:
    log = tmp_path / "wine-debug.log"
    log.write_text("0048:err:winediag:nodrv_CreateWindow no driver\n" + LOADER.replace("CmRegisterCallbackEx", "ExAllocatePool2") + LOADER, encoding="utf-8")
    line = imports.loader_failure(log)
    assert line is not None and line.startswith("the driver called CmRegisterCallbackEx, which Wine's ntoskrnl.exe does not export")
    assert "\n" not in line


def test_no_loader_message_or_no_log_is_none(tmp_path: Path) -> None:
    log = tmp_path / "wine-debug.log"
    log.write_text("0140:warn:debugstr:vDbgPrintExWithPrefix [RustEcho] DriverEntry called\n", encoding="utf-8")
    assert imports.loader_failure(log) is None
    assert imports.loader_failure(tmp_path / "missing.log") is None


def test_missing_exports_compares_only_ntoskrnl_imports(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(imports, "exports", lambda _path: frozenset({"DbgPrint", "IoCreateDevice"}))
    image = {"NTOSKRNL.EXE": ["DbgPrint", "CmRegisterCallbackEx", "IoCreateDevice"], "hal.dll": ["KeStallExecutionProcessor"]}
    assert imports.missing_exports(image, Path("ntoskrnl.exe")) == ["CmRegisterCallbackEx"]


def test_a_loader_message_written_before_the_mark_is_not_this_starts(tmp_path: Path) -> None:
    log = tmp_path / "wine-debug.log"
    log.write_text(LOADER, encoding="utf-8")
    mark = imports.log_mark(log)
    assert imports.loader_failure(log, since=mark) is None
    with log.open("a", encoding="utf-8") as fh:
        fh.write(LOADER.replace("CmRegisterCallbackEx", "ObRegisterCallbacks"))
    line = imports.loader_failure(log, since=mark)
    assert line is not None and line.startswith("the driver called ObRegisterCallbacks,")
    assert imports.log_mark(tmp_path / "missing.log") == 0
    assert imports.loader_failure(log, since=mark + 10_000) is not None  # a log rewritten since: read from its start
