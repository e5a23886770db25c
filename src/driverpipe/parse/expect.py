"""DbgPrint expectations and their verdicts.

An expectation (one phase of [tool.driverpipe.expect.*]) is an ordered
`sequence` of entries that must appear as an ordered subsequence of the log's
lines, `forbid` entries that must not appear anywhere in the lines checked, a
`timeout` and an optional `prefix` (only lines starting with it take part).

Entry syntax (one string each):
  - `re:<regex>`     Python regex searched in the message; named groups become
                     captures usable by later entries as `{name}`;
  - `glob:<text>`    `*` matches any run of characters, everything else literal;
  - `exact:<text>`   the whole message, literally;
  - anything else    sequence: exact; forbid: glob when it contains `*`, else exact.
`{name}` in any entry is replaced by a known capture (the `step` capture comes
from --step) or, when unknown yet, matches any text and captures it. Messages
are compared without trailing whitespace (DebugView pads some lines).

Matching is incremental (Matcher.feed) so a live capture evaluates each new
chunk once; evaluate() is the one-shot form over a list of lines.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ..core.errors import ConfigError
from .dbgview import LogLine, LogTail

if TYPE_CHECKING:
    from ..core.context import RunContext

Status = Literal["pass", "fail", "pending", "empty-log"]

KEEP_LINES = 2000  # lines a verdict keeps for reports; a 50 MB log must not be held twice
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Pattern:
    """One sequence or forbid entry as written in the config."""

    source: str
    kind: Literal["exact", "regex", "glob"]
    body: str

    @classmethod
    def parse(cls, source: str, *, forbid: bool = False) -> Pattern:
        for prefix, kind in (("re:", "regex"), ("glob:", "glob"), ("exact:", "exact")):
            if source.startswith(prefix):
                return cls(source, kind, source[len(prefix) :])  # type: ignore[arg-type]
        if forbid and "*" in source:
            return cls(source, "glob", source)
        return cls(source, "exact", source)

    def names(self) -> list[str]:
        return _PLACEHOLDER.findall(self.body)

    def compile(self, captures: Mapping[str, str]) -> re.Pattern[str]:
        """The regex for this entry with known captures filled in and unknown ones capturing."""
        seen: set[str] = set()

        def hole(name: str) -> str:
            if name in captures:
                return re.escape(captures[name])
            if name in seen:
                return f"(?P={name})"
            seen.add(name)
            return f"(?P<{name}>.+?)"

        if self.kind == "regex":
            if self.names():  # only rewrite when there are placeholders, so a plain regex stays as written
                body = _PLACEHOLDER.sub(lambda m: hole(m.group(1)), self.body)
            else:
                body = self.body
            return re.compile(body)
        pieces: list[str] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(self.body):
            pieces.append(self._literal(self.body[pos : m.start()]))
            pieces.append(hole(m.group(1)))
            pos = m.end()
        pieces.append(self._literal(self.body[pos:]))
        return re.compile("^" + "".join(pieces) + r"\Z", re.DOTALL)

    def _literal(self, text: str) -> str:
        if self.kind == "glob":
            return ".*".join(re.escape(part) for part in text.split("*"))
        return re.escape(text)


@dataclass(frozen=True)
class Expectation:
    phase: str
    sequence: tuple[Pattern, ...]
    forbid: tuple[Pattern, ...]
    timeout: float
    prefix: str = ""
    captures: tuple[tuple[str, str], ...] = ()  # given up front (e.g. step)

    @classmethod
    def from_config(cls, section: Mapping[str, Any], step: str | None = None, *, phase: str = "") -> Expectation:
        """Build from one validated [expect.<phase>] table; --step fills `{step}`."""
        where = f"expect.{phase}" if phase else "expect"
        sequence = tuple(Pattern.parse(str(s)) for s in section.get("sequence", []) or [])
        forbid = tuple(Pattern.parse(str(s), forbid=True) for s in section.get("forbid", []) or [])
        captures: dict[str, str] = {}
        if step:
            if not re.fullmatch(r"[A-Za-z0-9_.:-]+", step):
                raise ConfigError(f"--step {step!r} is not a step name", "pass the DriverEntry step, e.g. --step IoCreateDevice")
            captures["step"] = step
        for kind, entries in (("sequence", sequence), ("forbid", forbid)):
            for i, pattern in enumerate(entries, 1):
                try:
                    pattern.compile(captures)
                except re.error as exc:
                    raise ConfigError(
                        f"{where}.{kind}[{i}]: invalid regex {pattern.source!r}: {exc}",
                        "fix the regex (TOML: use a literal string '...' so backslashes stay as written)",
                    ) from None
        timeout = section.get("timeout", 30)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigError(f"{where}.timeout: expected a positive number of seconds, got {timeout!r}", "e.g. timeout = 30")
        return cls(phase, sequence, forbid, float(timeout), str(section.get("prefix", "") or ""), tuple(captures.items()))


class EntryResult(NamedTuple):
    expected: str
    line: LogLine | None
    at: float | None  # seconds (log time) after the first matched entry


@dataclass
class Forbidden:
    line: LogLine
    index: int  # position among all lines read (1-based physical line when known)
    pattern: str


@dataclass
class Verdict:
    phase: str
    status: Status
    entries: list[EntryResult]
    first_missing: str | None
    last_matched: LogLine | None
    forbidden: Forbidden | None
    captures: dict[str, str]
    elapsed_s: float | None  # log time from the first to the last matched line
    unreadable_lines: int
    total_lines: int
    message: str
    waited_s: float | None = None  # wall-clock seconds a live check waited
    notes: list[str] = field(default_factory=list)
    lines: list[LogLine] = field(default_factory=list, repr=False)  # lines that took part (capped), for timelines

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def matched(self) -> int:
        return sum(1 for e in self.entries if e.line is not None)

    def to_dict(self) -> dict[str, Any]:
        def line(ln: LogLine | None) -> dict[str, Any] | None:
            return ln.to_dict() if ln is not None else None

        return {
            "phase": self.phase,
            "status": self.status,
            "passed": self.passed,
            "message": self.message,
            "entries": [{"expected": e.expected, "line": line(e.line), "at": e.at} for e in self.entries],
            "first_missing": self.first_missing,
            "last_matched": line(self.last_matched),
            "forbidden": ({"line": line(self.forbidden.line), "index": self.forbidden.index, "pattern": self.forbidden.pattern} if self.forbidden else None),
            "captures": dict(self.captures),
            "elapsed_s": self.elapsed_s,
            "waited_s": self.waited_s,
            "unreadable_lines": self.unreadable_lines,
            "total_lines": self.total_lines,
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)


def _delta(a: LogLine, b: LogLine) -> float | None:
    """b's log time minus a's, in seconds; clock time wraps at midnight."""
    sa, sb = a.seconds, b.seconds
    if sa is None or sb is None or (a.elapsed is None) != (b.elapsed is None):
        return None
    d = sb - sa
    if d < 0 and a.clock is not None:
        d += 86400.0
    return d


class Matcher:
    """Incremental ordered-subsequence matcher (feed lines as they arrive)."""

    def __init__(self, expectation: Expectation):
        self.exp = expectation
        self.captures: dict[str, str] = dict(expectation.captures)
        self.matches: list[LogLine] = []
        self.forbidden: Forbidden | None = None
        self.total = 0  # lines (readable or not) fed, headers excluded
        self.unreadable = 0
        self.lines: list[LogLine] = []
        self._next: re.Pattern[str] | None = None
        self._forbid = [(p, p.compile(self.captures)) for p in expectation.forbid]
        self._compile_next()

    @property
    def done(self) -> bool:
        return len(self.matches) == len(self.exp.sequence)

    def _compile_next(self) -> None:
        self._next = self.exp.sequence[len(self.matches)].compile(self.captures) if not self.done else None

    def feed(self, lines: Iterable[LogLine]) -> Matcher:
        prefix = self.exp.prefix
        for ln in lines:
            if ln.kind in ("header", "blank"):
                continue
            self.total += 1
            if not ln.ok:
                self.unreadable += 1
            if self.forbidden is not None:
                continue  # the verdict is already negative; keep counting only
            text = ln.message.rstrip()
            if prefix and not text.startswith(prefix):
                continue
            if len(self.lines) < KEEP_LINES:
                self.lines.append(ln)
            if self._next is not None:
                m = self._next.search(text)
                if m is not None:
                    self.captures.update({k: v for k, v in m.groupdict().items() if v is not None})
                    self.matches.append(ln)
                    self._compile_next()
                    continue
            for pattern, rx in self._forbid:
                if rx.search(text):
                    self.forbidden = Forbidden(ln, ln.lineno or self.total, pattern.source)
                    break
        return self

    def verdict(self, final: bool, *, waited_s: float | None = None) -> Verdict:
        exp = self.exp
        entries: list[EntryResult] = []
        first = self.matches[0] if self.matches else None
        for i, pattern in enumerate(exp.sequence):
            ln = self.matches[i] if i < len(self.matches) else None
            at = _delta(first, ln) if (first is not None and ln is not None) else None
            entries.append(EntryResult(pattern.source, ln, at))
        missing_i = len(self.matches) if not self.done else None
        first_missing = exp.sequence[missing_i].source if missing_i is not None else None
        last = self.matches[-1] if self.matches else None
        elapsed = _delta(first, last) if first is not None and last is not None else None
        total = len(exp.sequence)
        got = len(self.matches)
        status: Status
        if self.forbidden is not None:
            status = "fail"
            f = self.forbidden
            msg = f"forbidden line {f.index}{_seq(f.line)} {_q(f.line.message)} matches {_q(f.pattern)}"
        elif self.done:
            status = "pass"
            msg = f"{total}/{total} lines in order" + (f", last at line {last.lineno}{_seq(last)} {_q(last.message)}" if last else "")
            if elapsed is not None:
                msg += f" ({elapsed:.3f} s log time)"
        elif final and self.total == 0:
            status = "empty-log"
            msg = "the log has no lines at all"
        elif final:
            status = "fail"
            msg = f"missing entry {got + 1}/{total} {_q(first_missing or '')}"
            msg += f" after line {last.lineno}{_seq(last)} {_q(last.message)}" if last else " (no expected line seen)"
            msg += f"; {self.total} lines read, {self.unreadable} unreadable"
        else:
            status = "pending"
            msg = f"{got}/{total} matched, waiting for {_q(first_missing or '')}"
        if waited_s is not None and status != "pending":
            msg += f"; waited {waited_s:.1f} s"
        label = {"pass": "PASS", "fail": "FAIL", "pending": "PENDING", "empty-log": "EMPTY LOG"}[status]
        return Verdict(
            phase=exp.phase,
            status=status,
            entries=entries,
            first_missing=first_missing,
            last_matched=last,
            forbidden=self.forbidden,
            captures=dict(self.captures),
            elapsed_s=elapsed,
            unreadable_lines=self.unreadable,
            total_lines=self.total,
            message=f"{exp.phase or 'verify'}: {label}: {msg}",
            waited_s=waited_s,
            lines=list(self.lines),
        )


def _seq(line: LogLine) -> str:
    return f" (seq {line.seq})" if line.seq is not None else ""


def _q(text: str, width: int = 120) -> str:
    text = text if len(text) <= width else text[: width - 3] + "..."
    return f"`{text}`"


def evaluate(expectation: Expectation, lines: Iterable[LogLine], *, final: bool, waited_s: float | None = None) -> Verdict:
    """Verdict over `lines`. `final=False`: an incomplete sequence is 'pending', not 'fail'."""
    return Matcher(expectation).feed(lines).verdict(final, waited_s=waited_s)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _cut(text: str, width: int) -> str:
    text = text.replace("\t", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _rows(verdict: Verdict) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for i, e in enumerate(verdict.entries, 1):
        ln = e.line
        if ln is None:
            rows.append((str(i), e.expected, "-- not seen --", "", "", ""))
        else:
            at = f"+{e.at:.3f}" if e.at is not None else ""
            rows.append((str(i), e.expected, ln.message, str(ln.lineno or ""), ln.time or "", at))
    return rows


def render_table(verdict: Verdict) -> str:
    """A short table for people: expected vs seen, with line numbers and log times."""
    head = ("#", "expected", "seen", "line", "time", "+s")
    rows = [head, *[(a, _cut(b, 60), _cut(c, 60), d, e, f) for a, b, c, d, e, f in _rows(verdict)]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = [verdict.message]
    for r in rows:
        out.append("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())
    if verdict.forbidden is not None:
        f = verdict.forbidden
        out.append(f"  forbidden: line {f.index}{_seq(f.line)} {f.line.time or ''} {_cut(f.line.message, 100)}  (matches {f.pattern})")
    out.append(f"  lines read: {verdict.total_lines}, unreadable: {verdict.unreadable_lines}")
    out.extend(f"  note: {n}" for n in verdict.notes)
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'").replace("\n", " ")


def render_markdown(verdict: Verdict) -> str:
    """The same table as GitHub-flavoured markdown (for $GITHUB_STEP_SUMMARY)."""
    icon = {"pass": "✅", "fail": "❌", "pending": "⏳", "empty-log": "⚠️"}[verdict.status]
    out = [f"### {icon} DbgPrint verdict: {_md(verdict.phase)} ({verdict.status})", "", _md(verdict.message), ""]
    out.append("| # | expected | seen | line | time | +s |")
    out.append("|---|---|---|---|---|---|")
    for r in _rows(verdict):
        out.append("| " + " | ".join(f"`{_md(c)}`" if i in (1, 2) and c else _md(c) for i, c in enumerate(r)) + " |")
    if verdict.forbidden is not None:
        f = verdict.forbidden
        out += ["", f"Forbidden line {f.index}: `{_md(f.line.message)}` (matches `{_md(f.pattern)}`)"]
    out += ["", f"Lines read: {verdict.total_lines}, unreadable: {verdict.unreadable_lines}"]
    out.extend(f"> {_md(n)}" for n in verdict.notes)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# Expectations from config, and following a log until a verdict
# ---------------------------------------------------------------------------

PHASES = ("load", "unload", "failed_load")


def normalize_phase(phase: str) -> str:
    name = (phase or "load").strip().lower().replace("-", "_")
    if name == "failed":
        name = "failed_load"
    if name not in PHASES:
        raise ConfigError(f"--phase {phase!r}: unknown phase", f"use one of: {', '.join(PHASES)}")
    return name


def expectation_for(ctx: RunContext, phase: str, step: str | None = None) -> Expectation:
    """The configured expectation of a phase; --step N (1-based) names regress.fault_steps[N-1]."""
    name = normalize_phase(phase)
    if step is not None and step.strip().isdigit():
        steps = list(ctx.config.project.regress.fault_steps)
        n = int(step)
        if not 1 <= n <= len(steps):
            raise ConfigError(f"--step {step}: no such fault step (regress.fault_steps has {len(steps)})", f"use 1..{len(steps)} or a name: {', '.join(steps)}")
        step = steps[n - 1]
    return Expectation.from_config(ctx.config.project.expect[name], step=step, phase=name)


def follow(
    tail: LogTail,
    matcher: Matcher,
    *,
    timeout: float,
    poll_interval: float,
    live: bool,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_lines: Callable[[list[LogLine]], None] | None = None,
) -> Verdict:
    """Poll `tail` every poll_interval until pass/fail, or until timeout (then a final verdict).

    `live=False` (a finished log): read everything once and decide.
    """
    start = clock()
    while True:
        lines = tail.poll(final=not live)
        if on_lines is not None:
            on_lines(lines)
        matcher.feed(lines)
        waited = clock() - start
        verdict = matcher.verdict(final=not live, waited_s=waited if live else None)
        if verdict.status != "pending":
            return verdict
        if waited >= timeout:
            rest = tail.poll(final=True)
            if on_lines is not None:
                on_lines(rest)
            matcher.feed(rest)
            return matcher.verdict(final=True, waited_s=clock() - start)
        sleep(max(0.0, min(poll_interval, timeout - waited)))
