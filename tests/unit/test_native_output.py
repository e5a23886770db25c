"""Native tools' output (sc.exe, bcdedit.exe, verifier.exe) as the guest sends it: raw bytes in
the guest's OEM code page, decoded here; and the guest scripts' own reading of it (state numbers
by shape, whatever the display language)."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.scripts import LIB_DIR
from driverpipe.parse.text import decode_native, native_text
from driverpipe.parse.winparse import parse_sc_output
from driverpipe.targets import operations
from fakes.deploy_handlers import native_result
from fakes.guest import FakeGuest, FakeWindows

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "sc"
RUSSIAN = {
    "START_TYPE": "Тип_запуска",
    "BINARY_PATH_NAME": "Имя_двоичного_файла",
    "WIN32_EXIT_CODE": "Код_выхода_Win32",
    "SERVICE_EXIT_CODE": "Код_выхода_службы",
    "CHECKPOINT": "Контрольная_точка",
    "WAIT_HINT": "Ожидание",
    "STATE ": "Состояние ",
    "TYPE ": "Тип ",
    "The specified service does not exist as an installed service.": "Указанная служба не установлена.",
}


def _b64(text: str, codec: str) -> str:
    return base64.b64encode(text.encode(codec)).decode()


@pytest.mark.parametrize(
    ("text", "code_page", "codec"),
    [
        ("СОСТОЯНИЕ : 4  RUNNING", 866, "cp866"),
        ("状態 : 4  RUNNING", 932, "cp932"),
        ("状态 : 4  RUNNING", 936, "cp936"),
        ("Zustand: Gerät läuft", 850, "cp850"),
        ("État : démarré", 437, "cp437"),
        ("상태 : 4  RUNNING", 65001, "utf-8"),
    ],
)
def test_bytes_decoded_with_the_guests_oem_code_page(text: str, code_page: int, codec: str) -> None:
    assert decode_native(text.encode(codec), code_page) == text
    assert native_text({"rc": 0, "output": "mojibake", "outputB64": _b64(text, codec), "codePage": code_page}) == text


def test_utf16_output_is_recognized_with_or_without_bom() -> None:
    text = "[SC] StartService FAILED 1275:\r\n"
    assert decode_native(text.encode("utf-16-le"), 437) == text
    assert decode_native(b"\xff\xfe" + text.encode("utf-16-le"), 437) == text


def test_unknown_code_page_and_bad_bytes_never_raise() -> None:
    assert decode_native("é".encode(), 99999) == "é"
    assert decode_native(b"\xff\xfe\xfa", 65001)  # undecodable bytes replaced, never an exception


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain text from an older script", "plain text from an older script"),
        (None, ""),
        ({"rc": 0, "output": "as PowerShell decoded it"}, "as PowerShell decoded it"),
        ({"rc": 0, "output": "kept", "outputB64": "not base64!", "codePage": 437}, "kept"),
        ({"rc": 0, "output": "kept", "outputB64": _b64("x", "ascii"), "codePage": True}, "kept"),
        ({"rc": 0, "output": "kept", "outputB64": _b64("x", "ascii"), "codePage": 0}, "kept"),
        ({"rc": 0, "output": "", "outputB64": _b64("done\r\n\r\n", "ascii"), "codePage": 437}, "done"),
    ],
)
def test_native_text_falls_back_to_the_guests_own_text(value: Any, expected: str) -> None:
    assert native_text(value) == expected


def _ps_pattern(script: str) -> re.Pattern[str]:
    """The -match pattern of a shared guest function (single-quoted; PowerShell's -match ignores case)."""
    text = (LIB_DIR / script).read_text(encoding="utf-8")
    found = re.search(r"-match '([^']+)'", text)
    assert found, f"{script}: no -match pattern"
    return re.compile(found.group(1), re.IGNORECASE)


def test_get_state_number_reads_every_language_in_the_corpus() -> None:
    """Get-StateNumber.ps1 finds the same state as the Python parser in every sc.exe output of the
    corpus (German STATUS, Chinese 状态, Spanish ESTADO, Wine's layout), never by its label."""
    pattern = _ps_pattern("Get-StateNumber.ps1")
    checked = 0
    for path in sorted(CORPUS.glob("*.txt")):
        text = path.read_bytes().decode("utf-8", "replace")
        parsed = parse_sc_output(text)
        if len({r.fields.get("SERVICE_NAME") for r in parsed.records}) < len(parsed.records):
            continue  # a transcript of several commands; the guest reads one command's output
        state = parsed.state
        found = pattern.search(text)
        assert (int(found.group(1)) if found else None) == state, path.name
        checked += state is not None
    assert checked >= 4


def test_a_russian_guest_whose_powershell_garbles_native_output_reads_right() -> None:
    """A guest in Russian (OEM 866) where PowerShell's own decoding gives mojibake: the state,
    binary path and the localized failure message come from the bytes."""
    m = FakeWindows.prepared(native_labels=RUSSIAN, oem_code_page=866, powershell_decodes_as="cp1252")
    m.sc("create", "WazabiEDR", "type=", "kernel", "start=", "demand", "binPath=", "C:\\WazabiEDR\\WazabiEDR_Driver.sys")
    query = native_result(m, m.sc("query", "WazabiEDR"))
    assert "Состояние" not in query["output"]  # PowerShell's text really is garbled
    assert "Состояние" in native_text(query)

    from driverpipe.core.config import load
    from driverpipe.core.context import RunContext

    ctx = RunContext(config=load(root=Path(__file__).resolve().parents[2]), echo=lambda s: None, progress=lambda s: None)
    s = operations.read_guest_state(FakeGuest(m), ctx)
    assert s.service.exists and s.service.state == 1 and s.service.start_type == 3 and s.service.type == 1
    assert s.service.binary_path == "C:\\WazabiEDR\\WazabiEDR_Driver.sys"

    missing = parse_sc_output(native_text(native_result(m, m.sc("query", "NoSuchService"))))
    assert missing.failed and missing.code == 1060 and missing.message == "Указанная служба не установлена."
