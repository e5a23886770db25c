"""Windows output, round 2: a failure never reads as success, and every parser shares one decoding.

Expected parses of the newer tests/corpus files (sources: tests/corpus/SOURCES.md), then the property
test: every parser is fed every corpus file (tests/corpus and the shared corpus, every kind) as LF,
CRLF, CR CR LF, with a BOM, and as UTF-16LE read as single bytes (with and without its BOM), and must give the
same answer each time, and never `ok` for a text that holds a failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import CORPUS as SHARED
from driverpipe.parse.bcdedit import parse_bcdedit, parse_bcdedit_set
from driverpipe.parse.bcdedit import testsigning_enabled as ts_enabled
from driverpipe.parse.bugcheck import parse_bugcheck_message
from driverpipe.parse.signers import parse_osslsigncode_verify, parse_sigcheck
from driverpipe.parse.signtool_output import parse_verify
from driverpipe.parse.text import decode_native, normalize_text
from driverpipe.parse.tools import foreign_signed, parse_kd_verifier, parse_pnputil_add, parse_pnputil_enum, parse_verifier
from driverpipe.parse.winparse import SC_UNREADABLE, diagnose_sc_error, parse_sc_output, sc_code

HERE = Path(__file__).resolve().parents[1] / "corpus"


def text(rel: str) -> str:
    return (HERE / rel).read_bytes().decode("utf-8")


# ----------------------------------------------------------------------------- sc.exe


@pytest.mark.parametrize(
    ("rel", "api", "code", "message"),
    [
        ("sc/ru_start_failed_577_colon_after_api.txt", "StartService", 577, "Не удается проверить"),
        ("sc/zh_start_failed_577.txt", "StartService", 577, "Windows 无法验证"),
        ("sc/el_stop_failed_1062.txt", "ControlService", 1062, "Η υπηρεσία"),
        ("sc/log_pid_prefix_redacted_prompt_markdown.txt", "StartService", 1275, "This driver has been blocked from loading"),
    ],
)
def test_a_failure_in_any_language_and_decoration_is_a_failure(rel: str, api: str, code: int, message: str) -> None:
    r = parse_sc_output(text(rel))
    assert [(c.api, c.code, c.ok) for c in r.calls] == [(api, code, False)]
    assert not r.ok and r.code == code and r.message.startswith(message) and r.service_name is None
    assert "*" not in r.message and "`" not in r.message


def test_noise_lines_are_never_the_service_and_the_last_record_is_its_state() -> None:
    r = parse_sc_output(text("sc/transcript_noise_start_then_query.txt"))
    assert [rec.fields["SERVICE_NAME"] for rec in r.records] == ["WazabiEDR", "WazabiEDR"]
    assert (r.service_name, r.state, r.state_name, r.flags) == ("WazabiEDR", 4, "RUNNING", "(STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)")
    assert parse_sc_output(text("sc/transcript_noise_start_then_query.txt"), service="wazabiedr").state == 4


@pytest.mark.parametrize(
    "noise",
    ['ERROR: The process "x.exe" not found.', "Run command line: sc start WazabiEDR", "[ERROR] delete failed. Error code: 1072.", "C:\\WazabiEDR\\x.sys"],
)
def test_a_colon_line_glued_to_the_record_is_noise(noise: str) -> None:
    out = f"{noise}\nNOMBRE_SERVICIO: WazabiEDR\n        TIPO               : 1  KERNEL_DRIVER\n        ESTADO             : 1  STOPPED\n"
    r = parse_sc_output(out)
    assert (r.service_name, r.state, len(r.records)) == ("WazabiEDR", 1, 1)
    assert parse_sc_output(noise + "\n").service_name is None


def test_output_without_a_status_line_or_record_is_unknown_never_ok() -> None:
    r = parse_sc_output(text("sc/unknown_not_recognized.txt"))
    assert r.unknown and not r.ok and r.code == 0
    assert sc_code(0, text("sc/unknown_not_recognized.txt")) == SC_UNREADABLE
    assert sc_code(0, "") == SC_UNREADABLE and sc_code(1060, "") == 1060
    line = diagnose_sc_error(SC_UNREADABLE, context={"op": "start", "service": "WazabiEDR", "output": text("sc/unknown_not_recognized.txt")})
    assert "not taken as success" in line and "'sc' is not recognized" in line


def test_sc_call_api_has_no_stray_colon() -> None:
    assert parse_sc_output("[SC] OpenService: FAILED 1060:\n").calls[0].api == "OpenService"
    assert parse_sc_output("[SC] EnumQueryServicesStatus:OpenService FAILED 1060:\n").calls[0].api == "EnumQueryServicesStatus:OpenService"
    assert parse_sc_output("[SC] DeleteService: SUCCESS\n").calls[0].api == "DeleteService"
    assert [(c.api, c.code) for c in parse_sc_output("[SC] StartService：エラー：577：\n").calls] == [("StartService", 577)]


# ----------------------------------------------------------------------------- UTF-16 read as single bytes, any language

MESSAGES = [
    "[SC] StartService: ошибка: 577:\r\n\r\nНе удается проверить цифровую подпись этого файла.\r\n",
    "[SC] StartService ΑΠΕΤΥΧΕ 577:\r\n\r\nΤα Windows δεν μπορούν να επαληθεύσουν την ψηφιακή υπογραφή.\r\n",
    "[SC] StartService 失败 577:\r\n\r\nWindows 无法验证此文件的数字签名。\r\n",
    "[SC] StartService: エラー: 577:\r\n\r\nこのファイルのデジタル署名を検証できません。\r\n",
]


@pytest.mark.parametrize("message", MESSAGES)
@pytest.mark.parametrize("bom", ["", "\ufeff"])
def test_utf16_read_as_bytes_is_decoded_in_any_language(message: str, bom: str) -> None:
    raw = (bom + message).encode("utf-16-le")
    for single_byte in ("latin-1", "cp437", "cp866"):  # however the bytes were read as text
        assert normalize_text(raw.decode(single_byte)) == message, single_byte
    assert decode_native(raw, 866) == message and decode_native(raw, 65001) == message
    r = parse_sc_output(raw.decode("latin-1"))
    assert r.code == 577 and not r.ok


def test_single_byte_text_is_left_alone() -> None:
    assert normalize_text("STATE : 4 RUNNING") == "STATE : 4 RUNNING"
    assert normalize_text("SERVICE_NAME: WazabiEDR\x00") == "SERVICE_NAME: WazabiEDR"  # a stray NUL is not UTF-16
    cjk = "署名\u3000一二三\u3000検証\r\n"  # ideographic spaces and U+4E00: NULs at even offsets too
    assert normalize_text(cjk.encode("utf-16-le").decode("latin-1")) == cjk
    assert decode_native("Состояние".encode("cp866"), 866) == "Состояние"
    assert decode_native(b"\xef\xbb\xbfok", 65001) == "ok"


# ----------------------------------------------------------------------------- the other tools


def test_bcdedit_with_pid_log_prefix_redacted_prompt_and_markdown() -> None:
    assert ts_enabled(text("bcdedit/log_pid_prefix_current_markdown.txt")) is True


@pytest.mark.parametrize(
    ("rel", "ok", "verifying", "errors"),
    [
        ("signtool/file_header_index_table_ok.txt", True, ["WazabiEDR_Driver.sys"], 0),
        ("signtool/file_header_untrusted_root_error.txt", False, ["WazabiEDR_Driver.sys"], 1),
    ],
)
def test_signtool_newer_file_header(rel: str, ok: bool, verifying: list[str], errors: int) -> None:
    r = parse_verify(text(rel))
    assert (r.ok, r.verifying, len(r.error_lines)) == (ok, verifying, errors)
    assert r.signatures == ([(0, "sha256", "None")] if ok else [])


@pytest.mark.parametrize(
    ("rel", "ok", "signer"),
    [
        ("osslsigncode/verify_ok_test_cert.txt", True, "WazabiEDR Test Signing"),
        ("osslsigncode/verify_1x_number_of_signers.txt", True, "WazabiEDR Test Signing"),
        ("osslsigncode/verify_failed_digest_mismatch.txt", False, None),
        ("osslsigncode/verify_chain_error_pkcs7.txt", False, "WazabiEDR Test Signing"),
        ("osslsigncode/real_2_9_verify_ok_cafile.txt", True, "WazabiEDR Test Signing"),
        ("osslsigncode/real_2_9_verify_untrusted_self_signed.txt", False, "WazabiEDR Test Signing"),
        ("osslsigncode/real_2_9_verify_tampered_digest_mismatch.txt", False, None),
    ],
)
def test_osslsigncode_verify(rel: str, ok: bool, signer: str | None) -> None:
    r = parse_osslsigncode_verify(text(rel))
    assert (r.ok, r.signer) == (ok, signer)
    assert not parse_osslsigncode_verify("").ok


@pytest.mark.parametrize(
    ("rel", "ok", "signer"),
    [
        ("sigcheck/i_signed_test_cert.txt", True, "WazabiEDR Test Signing"),
        ("sigcheck/de_i_signature_did_not_verify.txt", False, "WazabiEDR Test Signing"),
        ("sigcheck/unsigned.txt", False, None),
    ],
)
def test_sigcheck_verdict_and_signer(rel: str, ok: bool, signer: str | None) -> None:
    r = parse_sigcheck(text(rel))
    assert len(r.files) == 1 and r.files[0].path == "C:\\WazabiEDR\\WazabiEDR_Driver.sys"
    assert (r.ok, r.files[0].signer) == (ok, signer)
    assert not parse_sigcheck("").ok


@pytest.mark.parametrize(
    ("rel", "packages"),
    [
        (
            "pnputil/enum_drivers_ours_test_signed_and_older_other_signer.txt",
            [
                ("oem3.inf", "netkvm.inf", "Microsoft Windows Hardware Compatibility Publisher"),
                ("oem7.inf", "wazabiedr_driver.inf", "WDKTestCert builder,133780000000000000"),
                ("oem9.inf", "wazabiedr_driver.inf", "WazabiEDR Test Signing"),
            ],
        ),
        ("pnputil/e_legacy_layout.txt", [("oem9.inf", None, "WazabiEDR Test Signing"), ("oem1.inf", None, "Microsoft Windows")]),
        (
            "pnputil/zh_e_legacy_layout.txt",
            [("oem9.inf", None, "WazabiEDR Test Signing"), ("oem4.inf", None, "Microsoft Windows Hardware Compatibility Publisher")],
        ),
        ("pnputil/ru_e_value_on_next_line.txt", [("oem9.inf", None, "WazabiEDR Test Signing")]),
    ],
)
def test_pnputil_enum_drivers(rel: str, packages: list[tuple[str, str | None, str]]) -> None:
    found = parse_pnputil_enum(text(rel))
    assert [(p.published, p.original, p.signer) for p in found] == packages
    assert found[0].version and found[0].provider


@pytest.mark.parametrize(
    ("rel", "published", "added", "message"),
    [
        ("pnputil/a_legacy_ok.txt", "oem9.inf", 1, ""),
        ("pnputil/a_legacy_failed_no_signature_info.txt", None, 0, "The third-party INF does not contain digital signature information."),
    ],
)
def test_pnputil_legacy_add(rel: str, published: str | None, added: int, message: str) -> None:
    r = parse_pnputil_add(text(rel))
    assert (r.published, r.total, r.added, r.message, r.ok) == (published, 1, added, message, bool(published))


def test_the_package_not_signed_by_the_test_certificate_is_named() -> None:
    packages = parse_pnputil_enum(text("pnputil/enum_drivers_ours_test_signed_and_older_other_signer.txt"))
    assert [p.published for p in foreign_signed(packages, "WazabiEDR_Driver.inf", "WazabiEDR Test Signing")] == ["oem7.inf"]
    first = packages[2]
    assert (first.class_name, first.class_guid, first.version) == ("System devices", "{4d36e97d-e325-11ce-bfc1-08002be10318}", "12/06/2026 0.3.1.0")


def test_kd_verifier_flags_statistics_and_driver_table() -> None:
    r = parse_kd_verifier(text("verifier/kd_verifier_flags_wazabiedr_unloaded.txt"))
    assert r.level == 0x0002092B and "Pool tracking" not in r.enabled and "Special pool" in r.enabled
    assert r.stats["Pool Allocations Failed"] == 0 and r.stats["AcquireSpinLocks"] == 0x2A4
    driver = r.drivers["wazabiedr_driver.sys"]
    assert driver.status == "Unloaded" and driver.pools["Current Pool Allocations"] == (1, 0)
    assert driver.allocations == [("0xffffd48a1c2e0fc0", 0x40, "Wzbi", "WazabiEDR_Driver+0x161c")]
    shared = parse_kd_verifier((SHARED / "verifier" / "kd_bang_verifier3_msdocs_memory_leak_driver_list.txt").read_bytes())
    assert shared.level == 0x000209BB and len(shared.drivers["mydriver.sys"].allocations) == 3
    old = parse_kd_verifier((SHARED / "verifier" / "kd_bang_verifier_msdocs_level5_summary.txt").read_bytes())
    assert old.level == 5 and old.enabled == ["Special pool", "Inject random low-resource API failures"]
    assert old.stats["Resource Allocations Failed Deliberately"] == 0x3F5


@pytest.mark.parametrize(
    "rel", ["bugcheck/event1001_en.txt", "bugcheck/de_event1001.txt", "bugcheck/ja_event1001.txt", "bugcheck/kd_analyze_bugcheck_line.txt"]
)
def test_bugcheck_evidence_in_any_language(rel: str) -> None:
    code, params = parse_bugcheck_message(text(rel)) or ("", [])
    assert code == "0x000000d1" and int(params[3], 16) == 0xFFFFF8012345161C and int(params[1], 16) == 2


# ----------------------------------------------------------------------------- every parser, every file, every encoding


def _variants(raw: bytes) -> dict[str, str]:
    body = raw.decode("utf-8", "replace").lstrip("\ufeff")
    lf = body.replace("\r\n", "\n")
    crlf = lf.replace("\n", "\r\n")
    return {
        "lf": lf,
        "crlf": crlf,
        "bom": "\ufeff" + crlf,
        "cr-cr-lf": lf.replace("\n", "\r\r\n"),
        "utf16-as-bytes": ("\ufeff" + crlf).encode("utf-16-le").decode("latin-1"),
        "utf16-as-bytes-no-bom": lf.encode("utf-16-le").decode("latin-1"),
    }


def _sc(t: str) -> Any:
    r = parse_sc_output(t)
    return r.ok, r.unknown, r.code, r.message, r.service_name, r.state, r.win32_exit_code, r.start_type, r.binary_path, len(r.records)


def _signtool(t: str) -> Any:
    r = parse_verify(t)
    return r.ok, r.verifying, r.verified, r.signer, r.error_lines, r.signatures


def _ossl(t: str) -> Any:
    r = parse_osslsigncode_verify(t)
    return r.ok, r.final, r.verifications, r.signers, r.digest_mismatch


def _sigcheck(t: str) -> Any:
    r = parse_sigcheck(t)
    return r.ok, [(f.path, f.verified, f.signers) for f in r.files]


PARSERS: dict[str, Callable[[str], Any]] = {
    "sc": _sc,
    "bcdedit": lambda t: (ts_enabled(t), parse_bcdedit_set(1, t).outcome, [(e.heading, e.identifier, e.settings) for e in parse_bcdedit(t)]),
    "verifier": lambda t: (lambda r: (r.flags, r.options, r.drivers))(parse_verifier(t)),
    "kd-verifier": lambda t: (lambda r: (r.level, r.flags, r.options, r.stats, r.drivers))(parse_kd_verifier(t)),
    "pnputil-add": lambda t: (lambda r: (r.ok, r.published, r.total, r.added, r.message))(parse_pnputil_add(t)),
    "pnputil-enum": parse_pnputil_enum,
    "signtool": _signtool,
    "osslsigncode": _ossl,
    "sigcheck": _sigcheck,
    "bugcheck": parse_bugcheck_message,
}
FILES = [p for base in (HERE, SHARED) for p in sorted(base.glob("*/*")) if p.is_file()]

# A failure as the text itself says it, read independently of the parsers: then `ok` must be False.
FAILURE = {
    "sc": re.compile(r"\[SC\][^\n]*?\d+\s*:"),
    "signtool": re.compile(r"SignTool Error|Number of errors:\s*[1-9]"),
    "osslsigncode": re.compile(r"verification: failed|^Failed\s*$|MISMATCH", re.M),
    "sigcheck": re.compile(r"Verified:\s*(?!Signed\s*$)\S", re.M),
    "pnputil-add": re.compile(r"failed\s*:", re.I),
}


def _ok(answer: Any) -> bool | None:
    return answer[0] if isinstance(answer, tuple) and answer and isinstance(answer[0], bool) else None


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.parent.name}/{p.parent.name}/{p.name}" for p in FILES])
def test_every_parser_reads_every_corpus_file_alike_in_every_encoding(path: Path) -> None:
    variants = _variants(path.read_bytes())
    for kind, parser in PARSERS.items():
        answers = {name: parser(variant) for name, variant in variants.items()}
        assert len({repr(a) for a in answers.values()}) == 1, (kind, answers)
        failure = FAILURE.get(kind)
        if failure is not None and failure.search(variants["lf"]):
            assert _ok(answers["lf"]) is not True, (kind, "ok for a text holding a failure")


FAILED_LINES = ["[SC] StartService FAILED 577:", "[SC] StartService: ошибка: 577:", "[SC] StartService 失败 577:", "**[SC] StartService FEHLER 1275:**"]
SC_FILES = [p for p in FILES if p.parent.name == "sc"]


@pytest.mark.parametrize("path", SC_FILES, ids=[f"{p.parent.parent.name}/{p.name}" for p in SC_FILES])
def test_a_failure_line_added_to_any_sc_output_is_never_ok(path: Path) -> None:
    body = path.read_bytes().decode("utf-8", "replace")
    for line in FAILED_LINES:
        for joined in (f"{line}\n\n{body}", f"{body}\n{line}\n"):
            for variant in _variants(joined.encode("utf-8")).values():
                r = parse_sc_output(variant)
                assert (not r.ok and r.code in (577, 1275)) or (r.failed and not r.ok), (line, variant[:80])


def _bold(text: str) -> str:
    """Every line as a markdown copy may carry it: bold around the text, its indentation kept (lines
    already starting or ending with a star, like a debugger's banner, are left as they are)."""
    out = []
    for line in text.split("\n"):
        body = line.strip(" \t")
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        out.append(f"{indent}**{body}**" if body and not body.startswith("*") and not body.endswith("*") else line)
    return "\n".join(out)


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.parent.name}/{p.parent.name}/{p.name}" for p in FILES])
def test_markdown_bold_around_every_line_changes_no_answer(path: Path) -> None:
    plain = path.read_bytes().decode("utf-8", "replace").lstrip("\ufeff").replace("\r\n", "\n")
    for kind, parser in PARSERS.items():
        assert repr(parser(_bold(plain))) == repr(parser(plain)), kind
