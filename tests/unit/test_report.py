"""Regression report writers: JUnit counts, JSON round trip, one offline HTML file, GitHub summary/annotations."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from driverpipe.checks import report as rep

T0 = 1_700_000_000.0
EVIL = "<script>alert('x')</script> & \"quoted\" \x01\x1b[31m"


def sample() -> rep.RegressReport:
    return rep.RegressReport(
        target="win11-hyperv",
        started=T0,
        finished=T0 + 300,
        phases=[
            rep.Phase("revert_clean", "pass", T0, 12.5, dbgprint=[]),
            rep.Phase(
                "deploy_and_smoke",
                "pass",
                T0 + 13,
                40,
                dbgprint=[("0.00000000", "[WazabiEDR] DriverEntry called"), ("0.01000000", "[WazabiEDR] ready (device ok)")],
                artifacts=["capture/deploy.log"],
            ),
            rep.Phase(
                "load_unload_cycles",
                "fail",
                T0 + 60,
                100,
                message="cycle 3: " + EVIL,
                dbgprint=[("1.5", EVIL), ("1.6", "https://evil.example/x.js")],
                bugcheck={
                    "code": "0x000000d1",
                    "params": ["0x0000000000000010", "0x2", "0x0", "0xfffff80312345678"],
                    "dump_files": ["dumps/Mini1.dmp"],
                    "source": "event-1001",
                },
                artifacts=["dumps/Mini1.dmp", "/etc/passwd", "../outside.txt", "javascript:alert(1)"],
            ),
            rep.Phase("fault_IoCreateDevice", "known-issue", T0 + 170, 20, message="unwind leak", known_issue_id="WDR-12", known_issue_reason="symlink kept"),
            rep.Phase("verifier", "skipped", T0 + 190, 0, message="verifier disabled"),
            rep.Phase("fault_IoCreateSymbolicLink", "error", T0 + 191, 5, message="guest lost"),
        ],
        environment={"service": "WazabiEDR", "interrupted": False},
    )


def test_counts_and_verdict() -> None:
    r = sample()
    assert r.counts == {"pass": 2, "fail": 1, "known-issue": 1, "skipped": 1, "n/a": 0, "not-run": 0, "error": 1}
    assert r.verdict == "fail"
    ok = rep.RegressReport("t", T0, T0 + 1, [rep.Phase("a"), rep.Phase("b", "known-issue", known_issue_id="K")])
    assert ok.verdict == "pass"  # known issues are reported, not failing
    assert rep.RegressReport("t", T0, T0 + 1, []).verdict == "error"  # nothing ran is not a pass
    with pytest.raises(ValueError):
        rep.Phase("x", "passed")


def test_junit_counts_and_known_issue_as_skipped(tmp_path: Path) -> None:
    path = tmp_path / "regress.junit.xml"
    rep.write_junit(sample(), path)
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("6", "1", "1", "2")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert len(cases) == 6
    failure = cases["load_unload_cycles"].find("failure")
    assert failure is not None and "0x000000d1" in (failure.get("message") or "") and "<script>" in (failure.text or "")
    known = cases["fault_IoCreateDevice"].find("skipped")
    assert known is not None and "WDR-12" in (known.get("message") or "")
    assert cases["fault_IoCreateSymbolicLink"].find("error") is not None
    out = cases["deploy_and_smoke"].find("system-out")
    assert out is not None and "DriverEntry called" in (out.text or "")
    assert b"\x01" not in path.read_bytes()  # XML 1.0 cannot hold it: dropped, file stays parseable


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "regress.json"
    original = sample()
    rep.write_json(original, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema"] == rep.SCHEMA and data["verdict"] == "fail" and data["counts"]["known-issue"] == 1
    back = rep.read_json(path)
    assert back == original


class _Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value:
                self.refs.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_and_escapes_guest_text(tmp_path: Path) -> None:
    path = tmp_path / "regress.html"
    rep.write_html(sample(), path)
    text = path.read_text(encoding="utf-8")
    parsed = _Structure()
    parsed.feed(text)
    assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
    for ref in parsed.refs:
        assert ref.startswith("#") or not (ref.startswith(("/", "http:", "https:", "javascript:", "//", "file:")) or ".." in ref), ref
    assert "@import" not in text and "url(" not in text
    assert "<script>alert" not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    body = "".join(parsed.text)
    assert "[WazabiEDR] DriverEntry called" in body and "0x000000d1" in body and "0xfffff80312345678" in body
    assert "WDR-12" in body and "symlink kept" in body
    assert 'href="dumps/Mini1.dmp"' in text and 'href="capture/deploy.log"' in text
    # Paths leaving the report folder are shown, not linked.
    assert 'href="/etc/passwd"' not in text and 'href="../outside.txt"' not in text and 'href="javascript' not in text
    assert parsed.tags.count("details") == 6
    assert text.count('class="bar s-') == 6
    assert "\x01" not in text


def test_timeline_bars_follow_start_and_duration(tmp_path: Path) -> None:
    html = rep.render_html(sample())
    # revert_clean starts at 0 % and lasts 12.5 of 300 s.
    assert 'class="bar s-pass" style="left:0.000%;width:4.167%"' in html
    # load_unload_cycles starts at 60 s (20 %) and lasts 100 s.
    assert 'class="bar s-fail" style="left:20.000%;width:33.333%"' in html


def test_markdown_summary_table_is_escaped() -> None:
    md = rep.markdown_summary(sample())
    assert md.startswith("### Regression win11-hyperv:") and "FAIL" in md.splitlines()[0]
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 7  # header + six phases
    assert all(line.count(" | ") == 3 for line in rows)  # no stray '|' from guest text
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "WDR-12" in md and "0x000000d1" in md


def test_annotations_cannot_be_hijacked_by_guest_text() -> None:
    r = sample()
    r.phases[2].message = "boom\n::error::forged%0A"
    lines = rep.annotations(r)
    assert [line.split(" ", 1)[0] for line in lines] == ["::error", "::warning", "::error"]
    assert all("\n" not in line for line in lines)
    assert "%0A::error::forged%250A" in lines[0]
    assert lines[0].startswith("::error title=regress win11-hyperv%3A load_unload_cycles::")


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "regress.html"
    path.write_text("old report", encoding="utf-8")

    def boom(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("driverpipe.core.files.os.replace", boom)  # where every atomic write renames
    with pytest.raises(OSError):
        rep.write_html(sample(), path)
    assert path.read_text(encoding="utf-8") == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["regress.html"]  # no temp file left behind
