"""Fixtures of the VM regression suite, run by `invoke regress --target NAME`.

Outside `invoke regress` (a plain `pytest` run) every test here is skipped with
the reason, because they need a real Windows target and the regression session
that `driverpipe.checks.regress.run` hands in through its plugin.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from driverpipe.core.errors import PipelineError

SKIP_REASON = "the VM regression suite runs through `invoke regress --target NAME` (it needs a real Windows target)"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fault_step" in metafunc.fixturenames:
        session = getattr(metafunc.config, "_driverpipe_regress", None)
        steps = list(session.ctx.config.project.regress.fault_steps) if session else ["(no session)"]
        metafunc.parametrize("fault_step", list(enumerate(steps, 1)), ids=[s for s in steps])


@pytest.fixture(scope="session")
def regress(request: pytest.FixtureRequest) -> Any:
    session = getattr(request.config, "_driverpipe_regress", None)
    if session is None:
        pytest.skip(SKIP_REASON)
    return session


@pytest.fixture(scope="session")
def package(regress: Any) -> Any:
    from driverpipe.signing.sign import check_signed_package

    return check_signed_package(regress.ctx)


@pytest.fixture(scope="session")
def capture(regress: Any) -> Iterator[Any]:
    """One DebugView capture for the whole run; each phase reads the next window of the log."""
    from driverpipe.targets.operations import ops_for

    cap = ops_for(regress.guest).new_capture(regress.ctx, f"regress-{time.strftime('%Y%m%d-%H%M%S')}", regress.guest_dir)
    wait_for = cap.wait_for

    def recording_wait_for(*args: Any, **kwargs: Any) -> Any:
        verdict = wait_for(*args, **kwargs)
        regress.note_lines(verdict)  # the report's timeline shows every line each phase saw
        return verdict

    cap.wait_for = recording_wait_for  # type: ignore[method-assign]
    # load_driver() puts the capture's install/start items in every load batch; the run keeps ONE
    # capture going (each phase reads the next window of its log), so they are sent only once.
    for name in ("ensure_items", "start_items"):
        original = getattr(cap, name)

        def once(original: Any = original, sent: list[bool] = []) -> list[Any]:  # noqa: B006 - per-method flag
            if sent:
                return []
            sent.append(True)
            return list(original())

        setattr(cap, name, once)
    regress.capture = cap
    yield cap
    try:
        cap.stop()
        path = cap.pull(regress.report_dir)
        regress.artifacts.append(str(path.relative_to(regress.report_dir)))
    except PipelineError as exc:
        regress.ctx.step(f"could not stop/pull the capture: {exc.message}")


@pytest.fixture(autouse=True)
def watch_for_bugchecks(regress: Any) -> Iterator[None]:
    """Before a phase: skip it after an abort. After it: look for a bugcheck and collect its dumps."""
    from driverpipe.checks.regress import check_bugcheck, collect_dumps

    if regress.aborted:
        pytest.skip(f"not run: {regress.aborted}")
    yield
    record = regress.current
    try:
        bugcheck = check_bugcheck(regress)
    except PipelineError as exc:
        regress.aborted = f"guest unreachable after {record.name if record else 'a phase'} ({exc.message})"
        pytest.fail(regress.aborted, pytrace=False)
    if bugcheck is None:
        return
    if record is not None:
        record.bugcheck = bugcheck
        record.artifacts.extend(collect_dumps(regress, bugcheck))
    regress.aborted = f"bugcheck {bugcheck.code} during {record.name if record else 'the run'}"
    pytest.fail(f"{regress.aborted} ({bugcheck.source}; params {', '.join(bugcheck.params) or 'unknown'})", pytrace=False)
