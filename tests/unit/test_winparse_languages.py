"""Windows output in any language and every real shape (tests/corpus + the shared corpus).

Each file in tests/corpus has its expected parse here (sources: tests/corpus/SOURCES.md).
Every parser fed every corpus file in every encoding: tests/unit/test_winparse_round2.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CORPUS
from driverpipe.parse.bcdedit import parse_bcdedit_set
from driverpipe.parse.bcdedit import testsigning_enabled as ts_enabled
from driverpipe.parse.dbgview import parse_bytes
from driverpipe.parse.tools import parse_pnputil_add, parse_verifier
from driverpipe.parse.winparse import diagnose_sc_error, parse_sc_output

HERE = Path(__file__).resolve().parents[1] / "corpus"
SHARED = CORPUS


def text(rel: str) -> str:
    return (HERE / rel).read_bytes().decode("utf-8")


@pytest.mark.parametrize(
    ("rel", "name", "state", "state_name", "win32", "type_"),
    [
        ("sc/es_query_running.txt", "WazabiEDR", 4, "RUNNING", 0, 1),
        ("sc/de_query_stopped.txt", "WazabiEDR", 1, "STOPPED", 1077, 1),
        ("sc/zh_query_running.txt", "WazabiEDR", 4, "RUNNING", 0, 1),
        ("sc/wine8_start_running.txt", "WazabiEDR", 4, "RUNNING", 0, 1),
    ],
)
def test_sc_query_read_by_layout_in_any_language(rel: str, name: str, state: int, state_name: str, win32: int, type_: int) -> None:
    r = parse_sc_output(text(rel))
    assert (r.service_name, r.state, r.state_name, r.win32_exit_code, r.type) == (name, state, state_name, win32, type_)
    assert r.service_exit_code == 0 and r.ok


def test_sc_qc_with_spanish_labels() -> None:
    r = parse_sc_output(text("sc/es_qc_demand.txt"))
    assert r.start_type == 3 and r.type == 1 and r.binary_path == "\\??\\C:\\WazabiEDR\\WazabiEDR_Driver.sys"
    assert r.calls and r.calls[0].ok


def test_a_listing_keeps_every_record_and_finds_ours_by_name() -> None:
    listing = text("sc/query_type_driver_listing.txt")
    r = parse_sc_output(listing, service="wazabiedr")
    assert [rec.fields["SERVICE_NAME"] for rec in r.records] == ["Beep", "WazabiEDR", "Null"]
    assert (r.service_name, r.state, r.win32_exit_code) == ("WazabiEDR", 1, 31)
    assert parse_sc_output(listing, service="Missing").state is None


def test_a_failed_lines_message_ends_with_its_paragraph_and_prompts() -> None:
    r = parse_sc_output(text("sc/start_failed_577_paragraph_then_prompt.txt"))
    assert r.code == 577 and r.message.startswith("Windows cannot verify") and "After the paragraph" not in r.message
    es = parse_sc_output(text("sc/es_stop_failed_1062_markdown_prompt.txt"))
    assert es.code == 1062 and es.message == "El servicio no se ha iniciado."


@pytest.mark.parametrize("prompt", ["C:\\x>", "PS C:\\x>", "cmd>", "`C:\\x>`", "**PS C:\\>**", "> C:\\x>"])
def test_every_common_prompt_ends_a_message(prompt: str) -> None:
    r = parse_sc_output(f"[SC] StartService FAILED 2:\n\nThe system cannot find the file specified.\n{prompt} sc query x\n")
    assert r.message == "The system cannot find the file specified."


@pytest.mark.parametrize("code", [3, 50, 87, 123, 193, 216, 225, 1450, 4551])
def test_specific_diagnoses_for_more_win32_codes(code: int) -> None:
    line = diagnose_sc_error(code, context={"service": "WazabiEDR", "binpath": "C:\\WazabiEDR\\x.sys"})
    assert "ERROR_" in line and "fix:" in line and "net helpmsg" not in line


@pytest.mark.parametrize(
    ("rel", "rc", "outcome"),
    [("bcdedit/set_ok.txt", 0, "ok"), ("bcdedit/set_secure_boot_refused.txt", 1, "secure-boot"), ("bcdedit/de_set_access_denied.txt", 1, "access-denied")],
)
def test_bcdedit_set_outcomes(rel: str, rc: int, outcome: str) -> None:
    assert parse_bcdedit_set(rc, text(rel)).outcome == outcome


@pytest.mark.parametrize(
    ("rel", "on"),
    [
        ("bcdedit/findstr_testsigning_no_heading.txt", True),
        ("bcdedit/ci_log_prefixed_current_testsigning.txt", True),
        ("bcdedit/de_current_testsigning_ja.txt", True),
        ("bcdedit/zh_current_testsigning_no.txt", False),
    ],
)
def test_testsigning_in_headingless_log_prefixed_and_localized_listings(rel: str, on: bool) -> None:
    assert ts_enabled(text(rel)) is on


@pytest.mark.parametrize(
    "word,on",
    [
        ("Ja", True),
        ("Nein", False),
        ("Oui", True),
        ("Non", False),
        ("Sí", True),
        ("Sì", True),
        ("Да", True),
        ("Нет", False),
        ("是", True),
        ("否", False),
        ("Nee", False),
        ("Nej", False),
        ("Tak", True),
        ("Nie", False),
    ],
)
def test_yes_no_in_common_display_languages(word: str, on: bool) -> None:
    listing = (
        f"Windows Boot Loader\n-------------------\nidentifier              {{current}}\nosdevice                partition=C:\ntestsigning             {word}\n"
    )
    assert ts_enabled(listing) is on


@pytest.mark.parametrize("rel", ["dbgview/ko_pm_marker_before_time_spaces_after_tab.log", "dbgview/de_nachm_after_time.log"])
def test_dbgview_localized_am_pm_and_spaces_after_the_trailing_tab(rel: str) -> None:
    lines = [ln for ln in parse_bytes((HERE / rel).read_bytes()) if ln.kind == "line"]
    assert len(lines) == 2 and all(ln.ok for ln in lines)
    assert lines[0].message == "[WazabiEDR] DriverEntry called"
    assert lines[0].seconds == 13 * 3600


def test_verifier_querysettings_and_query() -> None:
    qs = parse_verifier(text("verifier/querysettings_standard_one_driver.txt"))
    assert qs.enabled == ["Special pool", "Pool tracking", "Force IRQL checking", "Security checks"]
    assert qs.verifies("WazabiEDR_Driver.sys") and list(qs.drivers) == ["wazabiedr_driver.sys"]
    q = parse_verifier(text("verifier/query_level_and_driver_counters.txt"))
    assert q.flags == 0x000209BB
    assert q.drivers["wazabiedr_driver.sys"] == {"loads": 3, "unloads": 2}
    es = parse_verifier(text("verifier/es_querysettings_no_driver.txt"))
    assert es.drivers == {} and es.options == {"Pool especial": True, "Seguimiento de grupo": False}
    shared = parse_verifier((SHARED / "verifier" / "msdocs_querysettings_low_resources_enabled.txt").read_text(encoding="utf-8", errors="replace"))
    assert shared.enabled == ["Low resources simulation"] and list(shared.drivers) == ["blah.sys"]


@pytest.mark.parametrize(
    ("rel", "published", "added", "message"),
    [
        ("pnputil/add_driver_ok.txt", "oem8.inf", 1, ""),
        ("pnputil/de_add_driver_ok.txt", "oem12.inf", 1, ""),
        ("pnputil/add_driver_failed_catalog_hash.txt", None, 0, "The hash for the file is not present in the specified catalog file."),
    ],
)
def test_pnputil_add_driver(rel: str, published: str | None, added: int, message: str) -> None:
    r = parse_pnputil_add(text(rel))
    assert (r.published, r.added, r.total) == (published, added, 1)
    assert r.ok is bool(published) and r.message.startswith(message)


# ----------------------------------------------------------------------------- every file, every encoding


DBGVIEW = [p for base in (HERE, SHARED) for p in sorted((base / "dbgview").glob("*")) if p.is_file()]


@pytest.mark.parametrize("path", DBGVIEW, ids=[f"{p.parent.parent.name}/{p.name}" for p in DBGVIEW])
def test_the_dbgview_parser_gives_the_same_lines_in_every_encoding(path: Path) -> None:
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raw = raw.decode("utf-16").encode("utf-8")
    try:
        body = raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        pytest.skip("a single-byte code page log: its encodings are tested by test_dbgview_parser")
    lf = body.replace("\r\n", "\n")
    crlf = lf.replace("\n", "\r\n")
    forms = {
        "lf": lf.encode("utf-8"),
        "crlf": crlf.encode("utf-8"),
        "bom": b"\xef\xbb\xbf" + crlf.encode("utf-8"),
        "utf16": b"\xff\xfe" + crlf.encode("utf-16-le"),
    }
    seen = {name: [(ln.seq, ln.message) for ln in parse_bytes(data) if ln.kind == "line"] for name, data in forms.items()}
    assert len({repr(v) for v in seen.values()}) == 1, seen
