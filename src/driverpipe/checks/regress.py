"""`invoke regress`: the nightly VM regression, as a pytest suite under tests/vm/.

`run()` builds a RegressSession (config, target, guest factory, VM host), runs
pytest on tests/vm/ in-process with a plugin that hands the session to the
suite's fixtures and records every phase, then writes JUnit XML, JSON, a
self-contained HTML report and (under GitHub Actions) a job summary.

The guest and VM-host factories are parameters of `run()` only so the project's
own tests can drive the suite with a fake guest and a real QEMU host; the task
always uses the real transports.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.context import RunContext
from ..core.errors import ConfigError, EnvironmentProblem, ExitCode, PipelineError
from ..core.files import safe_basename
from ..parse.bugcheck import parse_bugcheck_message

SUITE_DIR = ("tests", "vm")


@dataclass
class Bugcheck:
    code: str  # e.g. "0x0000009f"
    params: list[str]
    source: str  # "event-1001" | "boot-time" | "minidump" | "GUEST_PANICKED"
    dump_files: list[str] = field(default_factory=list)
    message: str = ""


@dataclass
class PhaseRecord:
    name: str
    status: str = "pass"  # pass | fail | known-issue | skipped | error
    started: float = 0.0
    duration_s: float = 0.0
    message: str = ""
    dbgprint: list[tuple[str, str]] = field(default_factory=list)
    bugcheck: Bugcheck | None = None
    artifacts: list[str] = field(default_factory=list)
    known_issue_id: str = ""


class UnwindLeak(PipelineError):
    """A clean load failed right after a fault-injected failure: the unwind leaked."""

    exit_code = ExitCode.CHECK_FAILED


@dataclass
class RegressSession:
    """Everything the tests/vm suite needs, created once per `invoke regress`."""

    ctx: RunContext
    target: Any  # config Section of the target
    report_dir: Path
    faults: bool = True
    guest_factory: Callable[[], Any] | None = None
    vm_factory: Callable[[], Any] | None = None
    phases: list[PhaseRecord] = field(default_factory=list)
    current: PhaseRecord | None = None
    _guest: Any = None
    _vm: Any = None
    _vm_opened: bool = False
    boot_time: int | None = None
    started: float = field(default_factory=time.time)
    interrupted: bool = False
    aborted: str = ""  # set after a bugcheck or a lost guest: the remaining phases are skipped
    hung: str = ""  # set when the current phase hit a guest timeout: the watch forces a dump
    capture: Any = None
    lease: Any = None  # the run's lease on a remote guest (renewed before every phase)
    lease_lost: Any = None  # the renewal found another run holding the guest: the run stopped there
    artifacts: list[str] = field(default_factory=list)  # run-level artifacts (capture log), relative to report_dir
    sleep: Callable[[float], None] = time.sleep

    @property
    def guest_dir(self) -> str:
        return str(self.target.guest_dir or self.ctx.config.project.deploy.guest_dir)

    # --- connections -------------------------------------------------
    @property
    def guest(self) -> Any:
        if self._guest is None:
            if self.guest_factory is not None:
                self._guest = self.guest_factory()
            else:
                from ..targets.open import open_target as open_guest

                self._guest = open_guest(self.ctx, self.target)
        return self._guest

    @property
    def vm(self) -> Any:
        if not self._vm_opened:
            self._vm_opened = True
            if self.vm_factory is not None:
                self._vm = self.vm_factory()
            else:
                from ..targets.open import open_vm_host

                self._vm = open_vm_host(self.ctx, self.target)
        return self._vm

    def close(self) -> None:
        for thing in (self._guest, self._vm):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    pass

    def renew(self, seconds: float | None = None) -> None:
        """Keep the run's lease on the guest (before every phase, and inside any long one: each
        load/unload cycle). Refused (another run holds the guest now) -> LeaseLost: the run stops."""
        from ..core.locks import LeaseLost

        if self.lease is None:
            return
        if self.lease_lost is not None:
            raise self.lease_lost  # never touch the guest again once it is someone else's
        try:
            self.lease.renew(seconds)
        except LeaseLost as lost:
            self.lease_lost = lost
            raise
        except PipelineError:
            pass  # an unreachable guest shows in the phase's own next step

    # --- phase bookkeeping ------------------------------------------------
    def begin(self, name: str) -> PhaseRecord:
        record = PhaseRecord(name=name, started=time.time())
        self.phases.append(record)
        self.current = record
        return record

    def note_lines(self, verdict: Any) -> None:
        """Keep the DbgPrint lines a verdict saw, for the report's timeline."""
        if self.current is None or verdict is None:
            return
        for line in getattr(verdict, "lines", None) or []:
            stamp = getattr(line, "time", None) or ""
            self.current.dbgprint.append((str(stamp), str(getattr(line, "message", line))))

    def known_issue(self, message: str) -> str:
        for issue in self.ctx.config.project.regress.known_issues:
            pattern = str(issue.get("match", ""))
            if pattern and re.search(pattern, message):
                return str(issue.get("id", pattern))
        return ""


def probe_guest(session: RegressSession) -> bool:
    """Does the guest answer (and is it past logon)? Used to wait after a revert."""
    from ..targets.operations import ops_for

    try:
        return ops_for(session.guest).ready()
    except PipelineError:
        return False


def not_applicable(session: RegressSession) -> dict[str, str]:
    """What this kind of target cannot check (Wine: bugchecks, Driver Verifier)."""
    from ..targets.operations import ops_for

    return ops_for(session.guest).not_applicable()


def build_manifest_features(ctx: RunContext) -> list[str]:
    """Cargo features of the build the package was made from (the build step's manifest)."""
    from ..core.owned import read_record
    from ..image.artifact import MANIFEST_NAME, MANIFEST_SHAPE
    from ..image.package import package_dir

    data = read_record(package_dir(ctx).parent / MANIFEST_NAME, MANIFEST_SHAPE)
    return [str(f) for f in data.get("features") or []] if data is not None else []


def read_evidence(session: RegressSession) -> dict[str, Any]:
    """Get-BugcheckEvidence.ps1, waiting (reconnecting with backoff) while a crashed guest reboots.

    Raises the transport's error when the guest does not come back within deploy.reboot_timeout.
    """
    from ..targets.reboot import is_connection_error

    deadline = time.monotonic() + float(session.ctx.config.project.deploy.reboot_timeout)
    delay = 1.0
    while True:
        try:
            result = session.guest.run_script(
                "Get-BugcheckEvidence.ps1",
                {"SinceFileTime": int(session.boot_time or 0)},
                timeout=float(session.ctx.config.project.deploy.script_timeout),
            )
            return result if isinstance(result, dict) else {}
        except PipelineError as exc:
            if not is_connection_error(exc) or time.monotonic() + delay > deadline:
                raise
        session.ctx.step(f"guest not answering; retrying in {delay:g} s (a crashed guest may be rebooting)")
        session.sleep(delay)
        delay = min(delay * 2, 12.0)
        try:
            session.guest.reconnect()
        except PipelineError:
            pass


def force_dump(session: RegressSession) -> str:
    """A guest that stopped answering within its timeout: NMI it so Windows writes a dump."""
    vm = session.vm
    inject = getattr(vm, "inject_nmi", None)
    if vm is None or inject is None:
        return "guest hung; no VM host to force a crash dump"
    try:
        inject()
    except PipelineError as exc:
        return f"guest hung; forcing a dump failed: {exc.message}"
    return "guest hung; NMI injected to force a crash dump"


def check_bugcheck(session: RegressSession) -> Bugcheck | None:
    """After a phase: did the guest bugcheck? Evidence from the hypervisor and the guest."""
    if "bugcheck detection" in not_applicable(session):
        return None
    if session.hung:
        note = force_dump(session)
        session.ctx.step(note)
        if session.current is not None:
            session.current.message = f"{session.current.message}; {note}" if session.current.message else note
    panicked = None
    vm = session.vm
    if vm is not None:
        for event in vm.events():
            if event.kind == "GUEST_PANICKED":
                panicked = event
    try:
        evidence = read_evidence(session)
    except PipelineError:
        if panicked is None:
            raise
        evidence = {}  # the hypervisor saw the panic; the guest is not back to say more
    if session.boot_time is None and panicked is None:
        # First look in this run: a baseline. Older crashes are not this run's.
        session.boot_time = int(evidence.get("boot_time") or 0) or None
        return None
    boot_changed = bool(session.boot_time and evidence.get("boot_time") and int(evidence["boot_time"]) != int(session.boot_time))
    events = evidence.get("events") or []
    dumps = [str(d) for d in (evidence.get("new_dumps") or [])]
    if not (panicked or boot_changed or events or dumps):
        return None
    code, message = "unknown", ""
    params: list[str] = []
    for ev in events:
        parsed = parse_bugcheck_message(str(ev.get("message", "")))
        if parsed:
            code, params = parsed
            message = str(ev.get("message", "")).strip()
            break
    source = "event-1001" if events else ("GUEST_PANICKED" if panicked else ("minidump" if dumps else "boot-time"))
    if evidence.get("boot_time"):
        session.boot_time = int(evidence["boot_time"])
    return Bugcheck(code=code, params=params, source=source, dump_files=dumps, message=message)


def collect_dumps(session: RegressSession, bugcheck: Bugcheck) -> list[str]:
    out_dir = session.report_dir / "dumps"
    local: list[str] = []
    for remote in bugcheck.dump_files:
        try:
            name = safe_basename(remote, "crash dump")
        except PipelineError as exc:
            session.ctx.step(exc.message)
            continue
        dest = out_dir / name
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            session.guest.pull(remote, dest)
            local.append(str(dest.relative_to(session.report_dir)))
        except PipelineError as exc:
            session.ctx.step(f"could not pull {remote}: {exc.message}")
    return local


def preflight(session: RegressSession) -> None:
    """Before any phase: the VM host answers, or (no VM host) the guest does and accepts the credentials.
    An unreachable guest is one line and exit 3 here, not a wall of failed phases."""
    session.ctx.step(f"checking that {session.target.name} answers")
    vm = session.vm
    if vm is not None:
        vm.status()
        return
    from ..targets.operations import ops_for

    ops_for(session.guest).read_state(session.ctx)


def leave_vm_safe(session: RegressSession) -> str:
    """Always leave the VM stopped (or reverted): never a half-tested guest running."""
    vm = session.vm
    if vm is None:
        return "no VM host configured: the guest was left as it is"
    try:
        how = vm.stop(graceful_timeout=float(session.ctx.config.project.regress.stop_timeout))
        return f"VM stopped ({how})"
    except PipelineError as exc:
        return f"could not stop the VM: {exc.message}"


class RegressPlugin:
    """pytest plugin: gives tests/vm the session, records phases."""

    def __init__(self, session: RegressSession):
        self.session = session

    def pytest_configure(self, config: Any) -> None:
        config.addinivalue_line("markers", "vm: the VM regression suite")
        config.addinivalue_line("markers", "reboots(n): the phase reboots the guest n times (its lease is extended to outlive them)")
        config._driverpipe_regress = self.session

    def pytest_runtest_setup(self, item: Any) -> None:
        from ..core.locks import LeaseLost

        if self.session.lease is not None:
            # No renewal can reach a rebooting guest: a phase that reboots extends the lease first.
            marker = item.get_closest_marker("reboots")
            reboots = int(marker.args[0]) if marker is not None and marker.args else 0
            seconds = self.session.lease.seconds + reboots * (float(self.session.ctx.config.project.deploy.reboot_timeout) + 120)
            try:
                self.session.renew(seconds)
            except LeaseLost as lost:
                # Another run holds the guest now: no further phase may touch it.
                item.session.shouldstop = lost.message
                raise
        self.session.begin(item.name)
        self.session.hung = ""

    # The suite's own output goes to the report; progress is shown from these hooks, which
    # pytest runs outside its output capture.
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.session.ctx.step(f"phase {nodeid.rsplit('::', 1)[-1]}")

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        record = self.session.current
        if record is not None:
            detail = f": {record.message}" if record.status != "pass" and record.message else ""
            self.session.ctx.step(f"  {record.name}: {record.status} ({record.duration_s:.1f} s){detail}")

    def pytest_runtest_makereport(self, item: Any, call: Any) -> None:
        from ..transports.errors import GuestTimeout

        if call.when == "call" and call.excinfo is not None and isinstance(call.excinfo.value, GuestTimeout):
            self.session.hung = str(call.excinfo.value)
        if self.session.lease_lost is not None:
            item.session.shouldstop = self.session.lease_lost.message  # lost inside a phase (a cycle's renewal): stop after it

    def pytest_runtest_logreport(self, report: Any) -> None:
        record = self.session.current
        if record is None:
            return
        if report.when == "call" or (report.when == "setup" and (report.failed or report.skipped)):
            record.duration_s = time.time() - record.started
            if report.skipped:
                record.message = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
                record.status = "n/a" if "not applicable on " in record.message else ("not-run" if record.message.startswith("not run") else "skipped")
            elif report.failed:
                message = _failure_line(report)
                issue = self.session.known_issue(message)
                record.status = "known-issue" if issue else ("fail" if report.when == "call" else "error")
                record.known_issue_id = issue
                record.message = message
        elif report.when == "teardown" and report.failed:
            # The bugcheck watch fails in teardown: the phase itself is what failed.
            message = _failure_line(report)
            record.status = "fail"
            record.message = f"{record.message}; {message}" if record.message and record.status != "pass" else message


def _failure_line(report: Any) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0] if str(crash.message) else "failed"
    return str(report.longrepr).strip().splitlines()[-1] if report.longrepr else "failed"


def build_report(session: RegressSession) -> Any:
    from . import report as rep

    phases = [
        rep.Phase(
            name=p.name,
            status=p.status,
            started=p.started,
            duration_s=p.duration_s,
            message=p.message,
            dbgprint=p.dbgprint,
            bugcheck=(
                {"code": p.bugcheck.code, "params": p.bugcheck.params, "dump_files": p.artifacts or p.bugcheck.dump_files, "source": p.bugcheck.source}
                if p.bugcheck
                else None
            ),
            artifacts=p.artifacts,
            known_issue_id=p.known_issue_id,
        )
        for p in session.phases
    ]
    return rep.RegressReport(
        target=str(session.target.name),
        started=session.started,
        finished=time.time(),
        phases=phases,
        environment=_environment(session),
    )


def _environment(session: RegressSession) -> dict[str, Any]:
    """What the report says the run was: service, target kind, driver model, what could not be checked there."""
    from ..image.package import package_dir
    from ..signing.sign import package_model

    env: dict[str, Any] = {"service": session.ctx.config.project.service_name, "interrupted": session.interrupted}
    env["target_kind"] = str(session.target.get("transport") or "")
    try:
        env["driver_model"] = package_model(package_dir(session.ctx))
    except PipelineError:
        env["driver_model"] = "unknown"
    if session._guest is not None:
        na = not_applicable(session)
        if na:
            env["not_applicable"] = "; ".join(f"{k} ({v})" for k, v in na.items())
    return env


def write_reports(session: RegressSession) -> dict[str, Path]:
    from . import report as rep

    report = build_report(session)
    out = session.report_dir
    out.mkdir(parents=True, exist_ok=True)
    paths = {"junit": out / "regress.junit.xml", "json": out / "regress.json", "html": out / "regress.html"}
    rep.write_junit(report, paths["junit"])
    rep.write_json(report, paths["json"])
    rep.write_html(report, paths["html"])
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(rep.markdown_summary(report) + "\n")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in rep.annotations(report):
            print(line)
    return paths


def run(
    ctx: RunContext,
    *,
    target: str | None,
    faults: bool = True,
    report_dir: Path | None = None,
    guest_factory: Callable[[], Any] | None = None,
    vm_factory: Callable[[], Any] | None = None,
    pytest_args: list[str] | None = None,
) -> int:
    target_section = ctx.config.target(target)
    for issue in ctx.config.project.regress.known_issues:
        try:
            re.compile(str(issue.get("match", "")))
        except re.error as exc:
            raise ConfigError(
                f"regress.known_issues: {issue.get('id', '?')}: match {issue.get('match')!r} is not a valid regex ({exc})", "fix the pattern"
            ) from None
    if not target_section.test_machine and target_section.transport != "wine":  # a Wine prefix is disposable by nature
        raise ConfigError(
            f"targets.{target_section.name}: regress loads, crashes and reverts the guest, but test_machine is false",
            "set test_machine = true for this target (only on a disposable test VM)",
        )
    if target_section.transport == "wine":
        from ..targets.wine.target import prefix_path

        prefix_path(ctx, target_section)  # a bad prefix setting is one line now, not an error in every phase
    suite = ctx.config.root.joinpath(*SUITE_DIR)
    if not suite.is_dir():
        raise EnvironmentProblem(f"the regression suite {suite} is missing", "run from a checkout of the project")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = report_dir or ctx.artifacts / "regress" / f"{target_section.name}-{stamp}"
    if ctx.dry:
        ctx.say(f"[dry] would run the VM regression suite {suite} against target {target_section.name}")
        ctx.say(
            f"[dry] phases: revert to '{target_section.clean_state}', deploy + smoke test, "
            f"{ctx.config.project.regress.cycles} load/unload cycles"
            + (f", fault sweep over {', '.join(ctx.config.project.regress.fault_steps)}" if faults else "")
            + (", Driver Verifier pass" if ctx.config.project.regress.verifier else "")
            + "; bugcheck checks after every phase; VM left stopped"
        )
        ctx.say(f"[dry] reports would be written to {out}")
        return 0
    from ..core.locks import held, target_lock
    from ..targets.leases import lease_for

    with held(target_lock(ctx, target_section), ctx):
        return _run_held(ctx, target_section, out, suite, faults, guest_factory, vm_factory, pytest_args, lease_for)


def _run_held(
    ctx: RunContext,
    target_section: Any,
    out: Path,
    suite: Path,
    faults: bool,
    guest_factory: Callable[[], Any] | None,
    vm_factory: Callable[[], Any] | None,
    pytest_args: list[str] | None,
    lease_for: Callable[..., Any],
) -> int:
    import pytest

    session = RegressSession(ctx=ctx, target=target_section, report_dir=out, faults=faults, guest_factory=guest_factory, vm_factory=vm_factory)
    preflight(session)
    if session.vm is None:  # with a VM host the guest may be off until the revert phase: the local lock is what holds
        session.lease = lease_for(ctx, target_section, session.guest)
        if session.lease is not None:
            session.lease.acquire(float(ctx.config.project.deploy.lock_wait), ctx.step)
    # importlib mode: the suite may be collected inside another pytest run (our own tests) without module-name clashes.
    args = [str(suite), "-p", "no:cacheprovider", "--import-mode=importlib", "-q", "-rN", "--no-header", "-m", "vm", *(pytest_args or [])]
    ctx.step(f"regression suite against {target_section.name}; reports in {out}")
    out.mkdir(parents=True, exist_ok=True)
    try:
        # The suite's own output (tracebacks included) goes to the report folder, never the terminal.
        with (out / "pytest-output.txt").open("w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
            code = pytest.main(args, plugins=[RegressPlugin(session)])
    except KeyboardInterrupt:
        session.interrupted = True
        code = ExitCode.INTERRUPTED
    finally:
        if session.lease is not None:
            session.lease.release()
        where = leave_vm_safe(session)
        ctx.step(where)
        session.close()
    if code == pytest.ExitCode.INTERRUPTED:
        session.interrupted = True
    paths = write_reports(session)
    if session.lease_lost is not None:
        ctx.say(f"report: {paths['html']}")
        raise session.lease_lost
    ctx.say(f"report: {paths['html']}")
    failed = [p for p in session.phases if p.status in ("fail", "error")]
    known = [p for p in session.phases if p.status == "known-issue"]
    for p in session.phases:
        ctx.say(f"  {p.status:<11} {p.name}" + (f"  — {p.message}" if p.message and p.status != "pass" else ""))
    if known:
        ctx.say(f"{len(known)} known issue(s) reported: {', '.join(p.known_issue_id for p in known)}")
    if session.interrupted:
        return ExitCode.INTERRUPTED
    if failed or (int(code) not in (0,) and not known):
        return ExitCode.CHECK_FAILED
    return ExitCode.OK
