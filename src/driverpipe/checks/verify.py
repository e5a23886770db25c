"""`invoke verify` and `invoke logs`: the DbgPrint expectations checked on a saved log or
on the target's newest capture, and the capture logs pulled.

The capture itself lives with the targets (targets/capture.py for a Windows guest,
targets/wine/capture.py for Wine).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.context import RunContext
from ..core.errors import ConfigError
from ..parse.dbgview import LogTail
from ..parse.expect import Expectation, Matcher, Verdict, expectation_for, follow, render_markdown, render_table
from ..targets.capture import READ_CHUNK, _status_params

# ---------------------------------------------------------------------------
# Expectations from config
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Following a log until a verdict
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Output: people, machines, GitHub Actions
# ---------------------------------------------------------------------------


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def report(ctx: RunContext, verdict: Verdict, *, as_json: bool, source: str = "") -> int:
    """Print the verdict; add a GitHub step summary / annotation when running there. 0 pass, 1 otherwise."""
    if as_json:
        data = verdict.to_dict()
        data["source"] = source
        ctx.say(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        ctx.say(render_table(verdict))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(render_markdown(verdict) + (f"\nLog: `{source}`\n" if source else "") + "\n")
        except OSError as exc:
            ctx.progress(f"warning: cannot append to GITHUB_STEP_SUMMARY ({exc.strerror})")
    if os.environ.get("GITHUB_ACTIONS") == "true" and not verdict.passed:
        line = f"::error title={_gh_escape(f'DbgPrint verify ({verdict.phase})', prop=True)}::{_gh_escape(verdict.message)}"
        # With --json stdout must stay one JSON document (unsure: whether the runner reads commands on stderr).
        (ctx.progress if as_json else ctx.say)(line)
    return 0 if verdict.passed else 1


# ---------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------


def verify_file(ctx: RunContext, path: Path, expectation: Expectation) -> Verdict:
    """The assertion over a saved log, read in bounded chunks (a 50 MB log is never held as lines)."""
    if not path.exists():
        raise ConfigError(f"--log {path}: file not found", "give the path of a saved DebugView log")
    if not path.is_file():
        raise ConfigError(f"--log {path}: not a file", "give the path of a saved DebugView log")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"--log {path}: cannot read ({exc.strerror})", "check the file's permissions") from None
    tail = LogTail.for_file(path)
    matcher = Matcher(expectation)
    while True:
        matcher.feed(tail.poll(limit=8 * READ_CHUNK))
        if tail.exhausted:
            break
    matcher.feed(tail.poll(final=True))
    return matcher.verdict(final=True)


def run(ctx: RunContext, *, target: str | None, log: Path | None, phase: str, as_json: bool, step: str | None) -> int:
    """`invoke verify`: 0 when the DbgPrint expectation holds, 1 when not.

    --log FILE: offline, no target needed. Otherwise the newest capture log on the
    target (the one deploy wrote) is checked, following it while a capture runs.
    """
    expectation = expectation_for(ctx, phase, step)
    if log is not None:
        verdict = verify_file(ctx, Path(log), expectation)
        return report(ctx, verdict, as_json=as_json, source=str(log))

    tsec = ctx.config.target(target)
    params = _status_params(ctx, tsec)
    if ctx.dry and tsec.transport == "wine":
        ctx.say(f"[dry] read Wine's debug channel of target {tsec.name}'s prefix and check phase {expectation.phase} (timeout {expectation.timeout:g} s)")
        return 0
    if ctx.dry:
        from ..core.scripts import script_path

        ctx.show_script(f"guest {tsec.name}", script_path("Get-DbgCaptureStatus.ps1"), params)
        ctx.say(f"[dry] then: tail the newest log in {params['LogDir']} and check phase {expectation.phase} (timeout {expectation.timeout:g} s)")
        return 0
    from ..targets.open import open_target as open_guest
    from ..targets.operations import ops_for

    guest = open_guest(ctx, tsec)
    try:
        source = ops_for(guest, tsec).log_source(ctx)
        tail = LogTail(source.read_range, chunk_size=READ_CHUNK)
        verdict = follow(
            tail,
            Matcher(expectation),
            timeout=expectation.timeout if source.live else 0.0,
            poll_interval=float(ctx.config.project.debugview.poll_interval),
            live=source.live,
        )
        if verdict.status == "empty-log":
            source.explain_empty(verdict)
    finally:
        guest.close()
    return report(ctx, verdict, as_json=as_json, source=f"{tsec.name}:{source.name}")


def pull_logs(ctx: RunContext, *, target: str | None, out: Path | None) -> Path:
    """`invoke logs`: copy every capture log (and minidumps) from the guest to out/ (default artifacts/logs/<target>)."""
    tsec = ctx.config.target(target)
    dest = Path(out) if out else ctx.artifacts / "logs" / str(tsec.name)
    params = _status_params(ctx, tsec)
    if ctx.dry:
        from ..core.scripts import script_path

        ctx.show_script(f"guest {tsec.name}", script_path("Get-DbgCaptureStatus.ps1"), params)
        ctx.say(f"[dry] then: pull each capture log and minidump into {dest}")
        return dest
    from ..targets.open import open_target as open_guest
    from ..targets.operations import ops_for

    guest = open_guest(ctx, tsec)
    try:
        pulled = ops_for(guest, tsec).collect_logs(ctx, dest)
    finally:
        guest.close()
    if pulled:
        ctx.say(f"pulled {len(pulled)} file(s) from {tsec.name} into {dest}")
    else:
        ctx.say(f"no capture logs and no minidumps on {tsec.name}")
    return dest


# ---------------------------------------------------------------------------
# Live capture
# ---------------------------------------------------------------------------
