"""Expectation semantics and every verdict: pass, fail (missing / order / forbidden), pending, empty-log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.config import load
from driverpipe.core.errors import ConfigError
from driverpipe.parse.dbgview import LogLine, parse_bytes
from driverpipe.parse.expect import Expectation, Matcher, evaluate, render_markdown, render_table

READY = "[WazabiEDR] ready (device \\Device\\WazabiEDR, symlink \\DosDevices\\WazabiEDR)"
ENTRY = "[WazabiEDR] DriverEntry called"


def dbg(*messages: str, start: float = 5.0, seq: int = 1, clock: bool = False) -> list[LogLine]:
    rows = []
    for i, msg in enumerate(messages):
        t = start + i * 0.25
        stamp = f"10:00:{t:06.3f}" if clock else f"{t:.8f}"
        rows.append(f"{seq + i:08d}\t{stamp}\t{msg}\t\r\n")
    return parse_bytes("".join(rows).encode())


@pytest.fixture
def phases(project: Path) -> dict[str, Any]:
    cfg = load(project)
    return {name: cfg.project.expect[name] for name in ("load", "unload", "failed_load")}


def exp(section: dict[str, Any], step: str | None = None) -> Expectation:
    return Expectation.from_config({"timeout": 30, "prefix": "", "forbid": [], **section}, step=step, phase="test")


def test_default_load_passes_with_other_drivers_interleaved(phases: dict[str, Any]) -> None:
    lines = dbg("[1234] other process", "KDNS: noise", ENTRY, "[KHTTP] Initialized", READY, "trailing noise")
    v = evaluate(Expectation.from_config(phases["load"], phase="load"), lines, final=True)
    assert v.status == "pass" and v.passed
    assert [e.line.message if e.line else None for e in v.entries] == [ENTRY, READY]
    assert v.last_matched is not None and v.last_matched.message == READY
    assert v.captures["detail"] == "device \\Device\\WazabiEDR, symlink \\DosDevices\\WazabiEDR"
    assert v.elapsed_s == pytest.approx(0.5)
    assert v.entries[1].at == pytest.approx(0.5) and v.first_missing is None
    assert "PASS" in v.message and "line 5" in v.message


def test_missing_entry_names_it_and_the_last_matched_line(phases: dict[str, Any]) -> None:
    v = evaluate(Expectation.from_config(phases["load"], phase="load"), dbg("noise", ENTRY, "more noise"), final=True)
    assert v.status == "fail"
    assert v.first_missing is not None and v.first_missing.startswith("re:^\\[WazabiEDR\\] ready")
    assert v.last_matched is not None and v.last_matched.lineno == 2
    assert "missing entry 2/2" in v.message and ENTRY in v.message and "line 2 (seq 2)" in v.message


def test_order_matters(phases: dict[str, Any]) -> None:
    v = evaluate(Expectation.from_config(phases["load"], phase="load"), dbg(READY, ENTRY), final=True)
    assert v.status == "fail" and v.matched == 1 and v.first_missing is not None and "ready" in v.first_missing


def test_forbidden_line_with_its_position(phases: dict[str, Any]) -> None:
    lines = dbg(ENTRY, "[WazabiEDR] IoCreateDevice failed (status 0xC0000035)", READY)
    v = evaluate(Expectation.from_config(phases["load"], phase="load"), lines, final=False)
    assert v.status == "fail"  # decided at once, not after the timeout
    assert v.forbidden is not None and v.forbidden.index == 2 and v.forbidden.line.seq == 2
    assert v.forbidden.pattern == "[WazabiEDR] * failed*"
    assert "forbidden line 2 (seq 2)" in v.message
    assert "forbidden: line 2" in render_table(v)


def test_pending_until_final_and_pass_as_soon_as_complete(phases: dict[str, Any]) -> None:
    e = Expectation.from_config(phases["load"], phase="load")
    m = Matcher(e).feed(dbg(ENTRY))
    assert m.verdict(final=False).status == "pending"
    assert m.verdict(final=True).status == "fail"
    m.feed(dbg(READY, seq=2))
    assert m.verdict(final=False).status == "pass"


def test_empty_log_is_its_own_status(phases: dict[str, Any]) -> None:
    e = Expectation.from_config(phases["load"], phase="load")
    assert evaluate(e, [], final=True).status == "empty-log"
    assert evaluate(e, parse_bytes(b"[\\\\WIN11-GUEST]\r\n\r\n"), final=True).status == "empty-log"
    assert evaluate(e, [], final=False).status == "pending"
    assert "EMPTY LOG" in evaluate(e, [], final=True).message


def test_unload_default(phases: dict[str, Any]) -> None:
    e = Expectation.from_config(phases["unload"], phase="unload")
    assert evaluate(e, dbg("[WazabiEDR] DriverUnload called", "x", "[WazabiEDR] unloaded"), final=True).passed
    assert not evaluate(e, dbg("[WazabiEDR] unloaded"), final=True).passed


@pytest.mark.parametrize("step", ["IoCreateDevice", "IoCreateSymbolicLink"])
def test_failed_load_at_step(phases: dict[str, Any], step: str) -> None:
    e = Expectation.from_config(phases["failed_load"], step=step, phase="failed_load")
    fault = dbg(ENTRY, f"[WazabiEDR] fault injection: failing step 1 ({step})", f"[WazabiEDR] {step} failed (status 0xC0000001)")
    assert evaluate(e, fault, final=True).passed
    other = "IoCreateSymbolicLink" if step == "IoCreateDevice" else "IoCreateDevice"
    assert evaluate(e, dbg(ENTRY, f"[WazabiEDR] {other} failed (status 0xC0000001)"), final=True).status == "fail"
    ready = evaluate(e, dbg(ENTRY, READY), final=True)
    assert ready.forbidden is not None and ready.forbidden.line.message == READY


def test_failed_load_without_step_captures_it(phases: dict[str, Any]) -> None:
    e = Expectation.from_config(phases["failed_load"], phase="failed_load")
    v = evaluate(e, dbg(ENTRY, "[WazabiEDR] IoCreateSymbolicLink failed (status 0xC0000001)"), final=True)
    assert v.passed and v.captures["step"] == "IoCreateSymbolicLink"


def test_captures_carry_to_later_entries() -> None:
    e = exp({"sequence": ["re:^session (?P<id>\\d+) open$", "session {id} closed", "re:^bye {id}$"]})
    assert evaluate(e, dbg("session 7 open", "session 8 closed", "session 7 closed", "bye 7"), final=True).passed
    v = evaluate(e, dbg("session 7 open", "session 8 closed", "bye 8"), final=True)
    assert v.status == "fail" and v.first_missing == "session {id} closed" and v.captures == {"id": "7"}


def test_glob_treats_brackets_literally_and_exact_is_whole_message() -> None:
    e = exp({"sequence": ["exact:a*b"], "forbid": ["[WazabiEDR] * failed*"]})
    assert evaluate(e, dbg("a*b   ", "W] IoCreateDevice failed", "[WazabiEDR]x failed"), final=True).passed
    assert not evaluate(e, dbg("xa*b"), final=True).passed  # not a substring match
    assert evaluate(e, dbg("a*b", "[WazabiEDR] Step failed"), final=True).forbidden is not None


def test_prefix_filter_limits_the_lines_that_take_part() -> None:
    e = exp({"sequence": ["[D] one"], "forbid": ["re:boom"], "prefix": "[D]"})
    v = evaluate(e, dbg("[X] boom", "[D] one", "[Y] boom"), final=True)
    assert v.passed and [ln.message for ln in v.lines] == ["[D] one"]


def test_unreadable_lines_are_counted_not_fatal(phases: dict[str, Any]) -> None:
    lines = parse_bytes(b"\x00\x01garbage\r\n" + f"00000001\t1.0\t{ENTRY}\t\r\n00000002\t1.1\t{READY}\t\r\n".encode() + b"\xff\xfe\xfd")
    v = evaluate(Expectation.from_config(phases["load"], phase="load"), lines, final=True)
    assert v.passed and v.unreadable_lines == 2 and v.total_lines == 4


def test_clock_time_deltas_wrap_at_midnight() -> None:
    lines = parse_bytes(f"00000001\t11:59:59.900 PM\t{ENTRY}\r\n00000002\t12:00:00.150 AM\t{READY}\r\n".encode())
    v = evaluate(exp({"sequence": [ENTRY, READY]}), lines, final=True)
    assert v.elapsed_s == pytest.approx(0.25)


def test_bad_config_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"expect\.test\.sequence\[2\]: invalid regex"):
        exp({"sequence": ["ok", "re:([unclosed"]})
    with pytest.raises(ConfigError, match="timeout"):
        exp({"sequence": [], "timeout": 0})
    with pytest.raises(ConfigError, match="--step"):
        exp({"sequence": []}, step="bad step; rm")


def test_outputs_for_people_and_machines(phases: dict[str, Any]) -> None:
    lines = dbg(ENTRY, READY, clock=True)
    v = evaluate(Expectation.from_config(phases["load"], phase="load"), lines, final=True)
    table = render_table(v)
    assert "expected" in table and "seen" in table and "10:00:05.250" in table and "+0.250" in table
    data = json.loads(v.to_json())
    assert data["status"] == "pass" and data["entries"][1]["line"]["seq"] == 2 and data["forbidden"] is None
    md = render_markdown(v)
    assert md.startswith("### ✅") and "| # | expected |" in md
    failed = evaluate(Expectation.from_config(phases["load"], phase="load"), dbg(ENTRY), final=True)
    assert "-- not seen --" in render_table(failed)
    assert json.loads(failed.to_json())["first_missing"].startswith("re:")


def test_corpus_log_with_driver_lines_spliced_in(corpus: Path, phases: dict[str, Any]) -> None:
    """WazabiEDR lines among a real CP1251 log with pids: found in order, no false forbidden hit."""
    raw = (corpus / "dbgview" / "lithium_saved_log_multi_pid_cp1251.log").read_bytes().split(b"\r\n")
    raw.insert(700, f"00000900\t600.00000000\t{ENTRY}".encode())
    raw.insert(900, f"00000901\t600.00100000\t{READY}".encode())
    v = evaluate(Expectation.from_config(phases["load"], phase="load"), parse_bytes(b"\r\n".join(raw)), final=True)
    assert v.passed and v.elapsed_s == pytest.approx(0.001) and v.unreadable_lines == 0


def test_corpus_kernel_log_sequence(corpus: Path) -> None:
    lines = parse_bytes((corpus / "dbgview" / "wkhttp_testlog_kernel_trailing_tabs.log").read_bytes())
    e = exp({"sequence": ["[KHTTP] Initialized", "re:^\\[\\+\\] Driver unloaded", "never printed"], "forbid": ["re:BUGCHECK"]})
    v = evaluate(e, lines, final=True)
    assert v.matched == 2 and v.first_missing == "never printed" and v.last_matched is not None
    assert v.last_matched.seq == 365
    # The same real log has a failed HTTPS test: a forbid entry finds it with its position.
    hit = evaluate(exp({"sequence": ["[KHTTP] Initialized"], "forbid": ["[-] * - FAILED*"]}), lines, final=True)
    assert hit.status == "fail" and hit.forbidden is not None
    assert (hit.forbidden.index, hit.forbidden.line.seq) == (197, 197)
    assert hit.forbidden.line.message.startswith("[-] HTTPS HEAD - FAILED (0xC00000B5)")
