"""sc.exe / bcdedit parsers over every real output in the shared corpus, plus the fake's own outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverpipe.parse.bcdedit import bcd_bool, parse_bcdedit, start_options_testsigning
from driverpipe.parse.bcdedit import testsigning_enabled as ts_enabled  # aliased: pytest would collect a test_* name
from driverpipe.parse.winparse import diagnose_sc_error, normalize_image_path, parse_sc_output, sc_code
from fakes.guest import FakeWindows


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


# What each corpus file must yield: (calls as (api, code), first failure code, state, service name).
SC_EXPECTED = {
    "ja_blog_start_running_kernel_driver.txt": ([], 0, 4, "sample"),
    "ja_start_failed_1275_blocked.txt": ([("StartService", 1275)], 1275, None, None),
    "ja_stop_controlservice_failed_1052.txt": ([("ControlService", 1052)], 1052, None, None),
    "kopia_start_failed_1058_then_config_success.txt": ([("StartService", 1058), ("ChangeServiceConfig", 0)], 1058, None, None),
}

BCD_EXPECTED = {
    # file: (headings, testsigning of {current})
    "blacklotus_bcdedit_win10_uefi_no_testsigning.txt": (["Windows Boot Manager", "Windows Boot Loader"], False),
    "blacklotus_infected_store_comment_prefixed_testsigning_nointegritychecks.txt": (["Windows Boot Manager", "Windows Boot Loader"], True),
    "msdocs_dbgsettings_net_key_trailing_space_line.txt": ([""], None),
    "msdocs_enum_badmemory_multiline_value.txt": (["RAM Defects"], None),
    "msdocs_kdnet2pf_enum_default_testsigning_yes_debug.txt": (["Windows Boot Loader"], True),
    "msdocs_partial_checked_build_md_heading_artifact.txt": (["Windows Boot Loader"], False),
    "msdocs_vista_debugentry_pae_forceenable.txt": (["Windows Boot Loader"], False),
}


def test_every_sc_corpus_file_is_known_and_parsed(corpus: Path) -> None:
    files = sorted((corpus / "sc").iterdir())
    assert files
    for path in files:
        assert path.name in SC_EXPECTED, f"new corpus file {path.name}: add its expected parse"
        calls, code, state, name = SC_EXPECTED[path.name]
        result = parse_sc_output(_read(path))
        assert [(c.api, c.code) for c in result.calls] == calls, path.name
        assert result.code == code, path.name
        assert result.state == state, path.name
        assert result.service_name == name, path.name
        # The same text with CRLF and a "// " quote prefix parses the same.
        quoted = "\r\n".join("// " + line for line in _read(path).splitlines())
        assert parse_sc_output(quoted).code == code, path.name


def test_sc_running_block_fields(corpus: Path) -> None:
    r = parse_sc_output(_read(corpus / "sc" / "ja_blog_start_running_kernel_driver.txt"))
    assert (r.type, r.state, r.state_name, r.win32_exit_code, r.service_exit_code, r.pid) == (1, 4, "RUNNING", 0, 0, 0)
    assert r.flags.startswith("(STOPPABLE")
    assert r.ok


def test_sc_failure_message_and_stray_character(corpus: Path) -> None:
    r = parse_sc_output(_read(corpus / "sc" / "ja_stop_controlservice_failed_1052.txt"))
    assert r.code == 1052 and r.message  # "FAILED 1052:s" still gives the number
    kopia = parse_sc_output(_read(corpus / "sc" / "kopia_start_failed_1058_then_config_success.txt"))
    assert kopia.message.startswith("The service cannot be started")
    assert kopia.failed and not kopia.ok


@pytest.mark.parametrize(
    "line,code",
    [
        ("[SC] StartService FAILED 577:", 577),
        ("[SC] StartService FEHLER 577:", 577),  # localized word
        ("[SC] StartService は失敗しました 31:", 31),  # localized, several words (unsure of the exact text)
        ("[SC] EnumQueryServicesStatus:OpenService FAILED 1060:", 1060),
        ("PS C:\\> [SC] OpenService FAILED 5:", 0),  # a prompt line is skipped
    ],
)
def test_sc_failed_line_variants(line: str, code: int) -> None:
    assert parse_sc_output(line + "\r\n\r\nmessage\r\n").code == code


def test_sc_qc_fields_and_paths() -> None:
    m = FakeWindows()
    m.sc("create", "WazabiEDR", "type=", "kernel", "start=", "demand", "binPath=", "\\??\\C:\\WazabiEDR\\WazabiEDR_Driver.sys")
    r = parse_sc_output(m.sc("qc", "WazabiEDR")[1])
    assert (r.type, r.start_type, r.binary_path) == (1, 3, "\\??\\C:\\WazabiEDR\\WazabiEDR_Driver.sys")
    assert normalize_image_path(r.binary_path or "") == "c:\\wazabiedr\\wazabiedr_driver.sys"
    assert normalize_image_path("\\SystemRoot\\System32\\drivers\\x.sys") == "c:\\windows\\system32\\drivers\\x.sys"


def test_fake_sc_outputs_round_trip_through_the_parser() -> None:
    m = FakeWindows.prepared()
    m.files["C:\\W\\d.sys"] = b"MZ"
    assert sc_code(*m.sc("query", "WazabiEDR")) == 1060
    assert parse_sc_output(m.sc("create", "WazabiEDR", "type=", "kernel", "binPath=", "C:\\W\\d.sys")[1]).calls[0].ok
    assert sc_code(*m.sc("create", "WazabiEDR", "type=", "kernel", "binPath=", "C:\\W\\d.sys")) == 1073
    assert parse_sc_output(m.sc("start", "WazabiEDR")[1]).state == 4
    assert sc_code(*m.sc("start", "WazabiEDR")) == 1056
    assert parse_sc_output(m.sc("stop", "WazabiEDR")[1]).state == 1
    assert sc_code(*m.sc("stop", "WazabiEDR")) == 1062
    m.sc("config", "WazabiEDR", "start=", "disabled")
    assert sc_code(*m.sc("start", "WazabiEDR")) == 1058


def test_sc_code_prefers_the_printed_number() -> None:
    assert sc_code(0, "[SC] StartService FAILED 1275:\n\nblocked") == 1275
    assert sc_code(577, "") == 577
    assert sc_code(0, "[SC] StartService SUCCESS") == 0


def test_every_bcdedit_corpus_file_is_known_and_parsed(corpus: Path) -> None:
    files = sorted((corpus / "bcdedit").iterdir())
    assert files
    for path in files:
        assert path.name in BCD_EXPECTED, f"new corpus file {path.name}: add its expected parse"
        headings, testsigning = BCD_EXPECTED[path.name]
        text = _read(path)
        entries = parse_bcdedit(text)
        assert [e.heading for e in entries] == headings, path.name
        assert ts_enabled(text) is testsigning, path.name
        assert ts_enabled(text.replace("\n", "\r\n")) is testsigning, path.name
        assert all(e.settings for e in entries), path.name
        assert not any(k.startswith(("c:", "#", "//")) for e in entries for k in e.settings), path.name


def test_bcdedit_details(corpus: Path) -> None:
    lotus = parse_bcdedit(_read(corpus / "bcdedit" / "blacklotus_infected_store_comment_prefixed_testsigning_nointegritychecks.txt"))
    loader = lotus[1]
    assert loader.identifier == "{57e1b615-0355-11ec-abb0-005056c00008}"
    assert loader.get("nointegritychecks") == "Yes" and loader.get("path") == "\\system32\\hvloader.efi"
    bad = parse_bcdedit(_read(corpus / "bcdedit" / "msdocs_enum_badmemory_multiline_value.txt"))[0]
    assert bad.identifier == "{badmemory}" and bad.get("badmemorylist") == "0xffe38\n0x100f"
    dbg = parse_bcdedit(_read(corpus / "bcdedit" / "msdocs_dbgsettings_net_key_trailing_space_line.txt"))[0]
    assert dbg.get("debugtype") == "NET" and dbg.get("port") == "50001" and "the" not in dbg.settings
    win10 = parse_bcdedit(_read(corpus / "bcdedit" / "blacklotus_bcdedit_win10_uefi_no_testsigning.txt"))
    assert [e.identifier for e in win10] == ["{bootmgr}", "{current}"]
    assert win10[1].get("allowedinmemorysettings") == "0x15000075"  # key 23 chars, one space
    heading = parse_bcdedit(_read(corpus / "bcdedit" / "msdocs_partial_checked_build_md_heading_artifact.txt"))[0]
    assert heading.get("kernel") == "ntoskrnl.chk" and heading.get("debug") == "Yes"


def test_bcdedit_testsigning_from_the_fake_follows_pending_and_active() -> None:
    m = FakeWindows()
    assert ts_enabled(m.bcdedit_enum_current()[1]) is False
    m.bcdedit_set("testsigning", "on")
    assert ts_enabled(m.bcdedit_enum_current()[1]) is True
    assert start_options_testsigning(m.system_start_options) is False  # pending until reboot
    m.reboot()
    assert start_options_testsigning(m.system_start_options) is True
    m.secure_boot = True
    rc, out = m.bcdedit_set("testsigning", "off")
    assert rc != 0 and "Secure Boot" in out


def test_bcd_bool_and_missing_entry() -> None:
    assert bcd_bool("Yes") is True and bcd_bool("No") is False and bcd_bool("Ja") is True and bcd_bool("???") is None
    assert ts_enabled("") is None
    assert ts_enabled("Windows Boot Manager\n--------------------\nidentifier              {bootmgr}\n") is None


@pytest.mark.parametrize("code", [2, 5, 31, 577, 1052, 1056, 1058, 1060, 1062, 1072, 1073, 1275, 4242])
def test_every_sc_code_has_a_diagnosis_with_a_fix(code: int) -> None:
    text = diagnose_sc_error(code, context={"op": "start", "service": "WazabiEDR", "binpath": "C:\\W\\d.sys"})
    assert str(code) in text and "WazabiEDR" in text and "\n" not in text
    if code != 1062:
        assert "fix:" in text


def test_diagnoses_name_the_likely_cause() -> None:
    assert "signed" in diagnose_sc_error(577, context={}) and "TESTSIGNING" in diagnose_sc_error(577, context={})
    assert "HVCI" in diagnose_sc_error(1275, context={"hvci": True})
    line = "[WazabiEDR] IoCreateDevice failed (status 0xC0000035)"
    assert line in diagnose_sc_error(31, context={"failed_line": line})
    assert "type= kernel start= demand" in diagnose_sc_error(1058, context={"service": "WazabiEDR"})
    assert "not elevated" in diagnose_sc_error(5, context={})
    assert "net helpmsg 4242" in diagnose_sc_error(4242, context={})
