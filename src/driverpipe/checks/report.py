"""Regression report: one data model, four outputs (JUnit XML, JSON, HTML, GitHub summary).

`invoke regress` fills a RegressReport with one Phase per test phase and calls
the writers. Everything that came from the guest (DbgPrint lines, event log
text, file names) is untrusted: it is escaped for each output format, XML-illegal
control characters are dropped, and the HTML links only to relative paths
inside the report folder. Known issues are reported with their id (JUnit
`skipped`, a warning annotation), never dropped. Every file is written
atomically (temp file + rename), so a crash never leaves half a report.
"""

# No `from __future__ import annotations`: it would clash with the public annotations() writer.
import datetime as _dt
import html
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..core.files import write_atomic

SCHEMA = "driverpipe-regress/1"
# n/a: cannot run on this kind of target; not-run: skipped because an earlier phase aborted the run
STATUSES = ("pass", "fail", "known-issue", "skipped", "n/a", "not-run", "error")
FAILING = ("fail", "error")

# XML 1.0 forbids most C0 controls, lone surrogates and U+FFFE/U+FFFF; guest text can hold any of them.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass
class Phase:
    name: str
    status: str = "pass"  # one of STATUSES
    started: float = 0.0  # epoch seconds
    duration_s: float = 0.0
    message: str = ""
    dbgprint: list[tuple[str, str]] = field(default_factory=list)  # (time as DebugView printed it, text)
    bugcheck: dict[str, Any] | None = None  # {"code": "0x0000009f", "params": [4 x "0x..."], "dump_files": [...], "source": ...}
    artifacts: list[str] = field(default_factory=list)  # paths relative to the report folder
    known_issue_id: str = ""
    known_issue_reason: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"phase {self.name!r}: unknown status {self.status!r} (one of {', '.join(STATUSES)})")
        self.dbgprint = [(str(t), str(x)) for t, x in self.dbgprint]


@dataclass
class RegressReport:
    target: str
    started: float
    finished: float
    phases: list[Phase] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for p in self.phases:
            out[p.status] += 1
        return out

    @property
    def verdict(self) -> str:
        """'fail' if anything failed; 'pass' otherwise (known issues do not fail, but are listed)."""
        if not self.phases or self.environment.get("interrupted"):
            return "error"
        return "fail" if any(p.status in FAILING for p in self.phases) else "pass"

    @property
    def duration_s(self) -> float:
        return max(0.0, self.finished - self.started)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = SCHEMA
        data["counts"] = self.counts
        data["verdict"] = self.verdict
        for p in data["phases"]:
            p["dbgprint"] = [list(line) for line in p["dbgprint"]]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RegressReport":
        phases = [Phase(**{k: v for k, v in p.items() if k in Phase.__dataclass_fields__}) for p in data.get("phases", [])]
        return cls(
            target=str(data["target"]),
            started=float(data["started"]),
            finished=float(data["finished"]),
            phases=phases,
            environment=dict(data.get("environment") or {}),
        )


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def clean(text: object) -> str:
    """Text safe for XML 1.0 and HTML: illegal control characters removed."""
    return _XML_ILLEGAL.sub("", str(text))


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else ""


def bugcheck_line(bc: dict[str, Any]) -> str:
    params = ", ".join(str(p) for p in bc.get("params") or [])
    return f"bugcheck {bc.get('code', 'unknown')}" + (f" ({params})" if params else "")


def _phase_text(p: Phase) -> str:
    """The one-paragraph explanation of a phase's outcome used by every format."""
    parts = []
    if p.known_issue_id:
        parts.append(f"known issue {p.known_issue_id}" + (f" ({p.known_issue_reason})" if p.known_issue_reason else ""))
    if p.message:
        parts.append(p.message)
    if p.bugcheck:
        parts.append(bugcheck_line(p.bugcheck))
    return "; ".join(parts)


def _safe_href(rel: str) -> str | None:
    """A link target inside the report folder, or None (absolute paths, URLs, '..' escape the report)."""
    rel = rel.replace("\\", "/")
    if not rel or rel.startswith("/") or _SCHEME.match(rel) or ".." in rel.split("/"):
        return None
    return quote(rel, safe="/-_.~")


# ---------------------------------------------------------------------------------------------
# JUnit
# ---------------------------------------------------------------------------------------------


def junit_xml(report: RegressReport) -> bytes:
    import xml.etree.ElementTree as ET

    counts = report.counts
    suites = ET.Element("testsuites", name="driverpipe regress", tests=str(len(report.phases)), time=f"{report.duration_s:.3f}")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=clean(f"regress.{report.target}"),
        tests=str(len(report.phases)),
        failures=str(counts["fail"]),
        errors=str(counts["error"]),
        skipped=str(counts["skipped"] + counts["known-issue"] + counts["n/a"] + counts["not-run"]),
        time=f"{report.duration_s:.3f}",
        timestamp=_iso(report.started),
    )
    props = ET.SubElement(suite, "properties")
    for key, value in sorted(report.environment.items()):
        ET.SubElement(props, "property", name=clean(key), value=clean(value))
    for p in report.phases:
        case = ET.SubElement(suite, "testcase", classname=clean(f"regress.{report.target}"), name=clean(p.name), time=f"{p.duration_s:.3f}")
        text = clean(_phase_text(p))
        if p.status == "fail":
            el = ET.SubElement(case, "failure", message=text or "failed", type="bugcheck" if p.bugcheck else "failure")
            el.text = text
        elif p.status == "error":
            el = ET.SubElement(case, "error", message=text or "error", type="error")
            el.text = text
        elif p.status == "known-issue":
            # Reported, not hidden: JUnit has no "known issue", and skipped keeps the run green while showing the id.
            ET.SubElement(case, "skipped", message=text or f"known issue {p.known_issue_id}")
        elif p.status in ("skipped", "n/a", "not-run"):
            ET.SubElement(case, "skipped", message=text or p.status)
        out = [f"{t}\t{x}" for t, x in p.dbgprint]
        if p.artifacts:
            out.append("")
            out.extend(f"[[ATTACHMENT|{a}]]" for a in p.artifacts)
        if out:
            ET.SubElement(case, "system-out").text = clean("\n".join(out))
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


# Reports are read by people and uploaded by CI: 0644, not the 0600 of a temp file.
REPORT_MODE = 0o644


def write_junit(report: RegressReport, path: Path) -> None:
    write_atomic(Path(path), junit_xml(report), mode=REPORT_MODE)


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def write_json(report: RegressReport, path: Path) -> None:
    write_atomic(Path(path), (json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8"), mode=REPORT_MODE)


def read_json(path: Path) -> RegressReport:
    return RegressReport.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# ---------------------------------------------------------------------------------------------
# HTML (one file, inline CSS, no script, no external reference: opens offline from an artifact zip)
# ---------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em;color:#1b1f24;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.4em 0 .5em}
.verdict{display:inline-block;padding:.1em .6em;border-radius:4px;color:#fff;font-weight:600}
.v-pass{background:#1a7f37}.v-fail{background:#cf222e}.v-error{background:#8250df}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}
.counts td{text-align:right}
.timeline{position:relative;border:1px solid #d0d7de;background:#f6f8fa;padding:4px 0}
.row{position:relative;height:22px;margin:2px 0}
.lbl{position:absolute;left:4px;width:26%;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;line-height:22px}
.track{position:absolute;left:28%;right:8px;top:0;bottom:0}
.bar{position:absolute;top:3px;height:16px;min-width:3px;border-radius:2px}
.s-pass{background:#2da44e}.s-fail{background:#cf222e}.s-error{background:#8250df}.s-known-issue{background:#bf8700}.s-skipped{background:#8c959f}
.badge{display:inline-block;padding:0 .45em;border-radius:3px;color:#fff;font-size:.85em}
.bugcheck{border:2px solid #cf222e;background:#ffebe9;padding:.5em .8em;margin:.5em 0;font-family:ui-monospace,Consolas,monospace}
.bugcheck .code{font-size:1.3em;font-weight:700;color:#a40e26}
pre,.log{font-family:ui-monospace,Consolas,monospace;font-size:12px}
.log td{border:none;border-bottom:1px solid #eaeef2;padding:1px .5em;white-space:pre-wrap;word-break:break-all}
.log td.t{color:#57606a;white-space:nowrap}
details{border:1px solid #d0d7de;border-radius:4px;margin:.5em 0;padding:.3em .8em}
summary{cursor:pointer;font-weight:600}
.msg{white-space:pre-wrap}
.muted{color:#57606a}
"""


def _e(text: object) -> str:
    return html.escape(clean(text), quote=True)


def _badge(status: str) -> str:
    return f'<span class="badge s-{_e(status)}">{_e(status)}</span>'


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _timeline(report: RegressReport) -> str:
    starts = [p.started for p in report.phases if p.started]
    t0 = min([report.started, *starts]) if report.started else min(starts, default=0.0)
    t1 = max([report.finished, *(p.started + p.duration_s for p in report.phases if p.started)])
    span = max(t1 - t0, 1e-6)
    rows = []
    for p in report.phases:
        left = max(0.0, (p.started - t0) / span * 100) if p.started else 0.0
        width = max(0.0, min(100.0 - left, p.duration_s / span * 100))
        tip = f"{p.name}: {p.status}, {_fmt_s(p.duration_s)}, +{_fmt_s(max(0.0, p.started - t0))}"
        rows.append(
            f'<div class="row" title="{_e(tip)}"><div class="lbl">{_e(p.name)}</div>'
            f'<div class="track"><div class="bar s-{_e(p.status)}" style="left:{left:.3f}%;width:{width:.3f}%"></div></div></div>'
        )
    return '<div class="timeline">' + "".join(rows) + "</div>" + f'<p class="muted">0 to {_fmt_s(span)}</p>'


def _phase_html(p: Phase, index: int) -> str:
    parts = [f'<details id="phase-{index}"' + (" open" if p.status in (*FAILING, "known-issue") else "") + ">"]
    parts.append(f'<summary>{_badge(p.status)} {_e(p.name)} <span class="muted">({_fmt_s(p.duration_s)}, {len(p.dbgprint)} DbgPrint lines)</span></summary>')
    if p.known_issue_id:
        reason = f" — {_e(p.known_issue_reason)}" if p.known_issue_reason else ""
        parts.append(f"<p><strong>Known issue {_e(p.known_issue_id)}</strong>{reason}</p>")
    if p.message:
        parts.append(f'<p class="msg">{_e(p.message)}</p>')
    if p.bugcheck:
        bc = p.bugcheck
        params = "".join(f"<td>{_e(x)}</td>" for x in (bc.get("params") or []))
        parts.append(
            '<div class="bugcheck"><div>BUGCHECK <span class="code">'
            + _e(bc.get("code", "unknown"))
            + "</span>"
            + (f' <span class="muted">(source: {_e(bc["source"])})</span>' if bc.get("source") else "")
            + "</div>"
            + (f"<table><tr><th>P1</th><th>P2</th><th>P3</th><th>P4</th></tr><tr>{params}</tr></table>" if params else "")
            + "</div>"
        )
        dumps = [str(d) for d in bc.get("dump_files") or []]
        if dumps:
            parts.append("<p>Dumps: " + ", ".join(_link(d) for d in dumps) + "</p>")
    if p.artifacts:
        parts.append("<p>Artifacts: " + ", ".join(_link(a) for a in p.artifacts) + "</p>")
    if p.dbgprint:
        rows = "".join(f'<tr><td class="t">{_e(t)}</td><td>{_e(x)}</td></tr>' for t, x in p.dbgprint)
        parts.append(f'<table class="log">{rows}</table>')
    else:
        parts.append('<p class="muted">no DbgPrint lines recorded for this phase</p>')
    parts.append("</details>")
    return "\n".join(parts)


def _link(rel: str) -> str:
    href = _safe_href(rel)
    return f'<a href="{href}">{_e(rel)}</a>' if href else f"<code>{_e(rel)}</code>"


def render_html(report: RegressReport) -> str:
    counts = report.counts
    count_row = "".join(f"<th>{_e(s)}</th>" for s in STATUSES)
    count_val = "".join(f"<td>{counts[s]}</td>" for s in STATUSES)
    env = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in sorted(report.environment.items()))
    overview = "".join(
        f'<tr><td><a href="#phase-{i}">{_e(p.name)}</a></td><td>{_badge(p.status)}</td>'
        f'<td>{_fmt_s(p.duration_s)}</td><td class="msg">{_e(_phase_text(p))}</td></tr>'
        for i, p in enumerate(report.phases)
    )
    title = f"driverpipe regress: {report.target}: {report.verdict.upper()}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            # No network at all: even if a guest string slipped through, the browser may not fetch anything.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
            f'<h1>Regression report: {_e(report.target)} <span class="verdict v-{_e(report.verdict)}">{_e(report.verdict.upper())}</span></h1>',
            f'<p class="muted">started {_e(_iso(report.started))}, finished {_e(_iso(report.finished))} ({_fmt_s(report.duration_s)})</p>',
            f'<table class="counts"><tr>{count_row}</tr><tr>{count_val}</tr></table>',
            "<h2>Timeline</h2>",
            _timeline(report),
            "<h2>Phases</h2>",
            f"<table><tr><th>phase</th><th>status</th><th>duration</th><th>details</th></tr>{overview}</table>",
            *(_phase_html(p, i) for i, p in enumerate(report.phases)),
            "<h2>Environment</h2>",
            f"<table>{env}</table>" if env else '<p class="muted">none recorded</p>',
            "</body></html>",
            "",
        ]
    )


def write_html(report: RegressReport, path: Path) -> None:
    write_atomic(Path(path), render_html(report).encode("utf-8"), mode=REPORT_MODE)


# ---------------------------------------------------------------------------------------------
# GitHub Actions: job summary and annotations
# ---------------------------------------------------------------------------------------------


def _md_cell(text: object, limit: int = 300) -> str:
    value = clean(text).replace("\r", " ").replace("\n", " ")
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    # GitHub renders summary Markdown with (sanitised) HTML: escape markup and the table separator.
    return html.escape(value, quote=False).replace("|", "\\|").replace("`", "\\`")


def markdown_summary(report: RegressReport) -> str:
    icon = {"pass": "✅", "fail": "❌", "error": "⛔", "known-issue": "⚠️", "skipped": "⏭️", "n/a": "➖", "not-run": "⏸️"}
    counts = report.counts
    lines = [
        f"### Regression {_md_cell(report.target)}: {icon.get(report.verdict, '')} {report.verdict.upper()}",
        "",
        ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s]) + f" in {_fmt_s(report.duration_s)}",
        "",
        "| phase | status | duration | details |",
        "|---|---|---:|---|",
    ]
    for p in report.phases:
        lines.append(f"| {_md_cell(p.name)} | {icon.get(p.status, '')} {p.status} | {_fmt_s(p.duration_s)} | {_md_cell(_phase_text(p))} |")
    known = [p for p in report.phases if p.status == "known-issue"]
    if known:
        lines += ["", "Known issues (reported, not failing the run): " + ", ".join(_md_cell(p.known_issue_id) for p in known)]
    return "\n".join(lines) + "\n"


def _gh_data(text: str) -> str:
    # Workflow-command escaping: a guest line can never start a new command or break the line.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def annotations(report: RegressReport) -> list[str]:
    """`::error` for failed phases, `::warning` for known issues (visible on the run page)."""
    out = []
    for p in report.phases:
        if p.status in FAILING:
            level = "error"
        elif p.status == "known-issue":
            level = "warning"
        else:
            continue
        title = _gh_prop(clean(f"regress {report.target}: {p.name}"))
        out.append(f"::{level} title={title}::{_gh_data(clean(_phase_text(p) or p.status))}")
    return out
