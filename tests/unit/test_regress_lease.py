"""The regress run's lease outlives any long phase: renewed inside each load/unload cycle, and a
renewal refused there stops the run (LeaseLost, exit 3) before another phase touches the guest."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from driverpipe.checks.regress import RegressPlugin, RegressSession
from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import ExitCode
from driverpipe.core.locks import GuestLease, LeaseLost
from fakes.guest import FakeGuest, FakeWindows

LEASE = "C:\\WazabiEDR\\.driverpipe-lease.json"
REPO = Path(__file__).resolve().parents[2]


def _session(project: Path) -> tuple[RegressSession, FakeWindows]:
    (project / "user-config.toml").write_text("[targets.vm]\ntransport = 'local'\ntest_machine = true\n", encoding="utf-8")
    ctx = RunContext(config=load(root=project), echo=lambda _l: None, progress=lambda _l: None)
    machine = FakeWindows.prepared()
    lease = GuestLease(FakeGuest(machine, name="vm"), LEASE, 60, "guest vm")
    lease.acquire(0, lambda _l: None)
    return RegressSession(ctx=ctx, target=ctx.config.target("vm"), report_dir=project / "report", lease=lease), machine


def _steal(machine: FakeWindows) -> None:
    now = int(time.time())
    lease = {"token": "other", "owner": "ci", "host": "runner-7", "pid": 4242, "started": now, "expires": now + 600}
    machine.files[LEASE] = json.dumps(lease).encode()


def test_renew_keeps_the_lease_and_a_refusal_is_lease_lost(project: Path) -> None:
    session, machine = _session(project)
    first = json.loads(machine.files[LEASE])["expires"]
    time.sleep(1.1)
    session.renew()
    assert json.loads(machine.files[LEASE])["expires"] > first, "renewed: the expiry moved on"
    _steal(machine)
    with pytest.raises(LeaseLost, match=r"held by ci@runner-7"):
        session.renew()
    assert session.lease_lost is not None
    with pytest.raises(LeaseLost):
        session.renew()  # lost stays lost: never a silent no-op afterwards


def test_a_renewal_refused_inside_a_cycle_stops_the_suite_before_the_next_phase(project: Path, tmp_path: Path) -> None:
    session, machine = _session(project)
    ran = tmp_path / "ran.txt"
    suite = tmp_path / "suite" / "test_phases.py"
    suite.parent.mkdir()
    suite.write_text(
        textwrap.dedent(
            f"""
            import json, time
            from pathlib import Path

            LEASE = {LEASE!r}

            def test_cycles(request):
                regress = request.config._driverpipe_regress
                for i in range(3):
                    regress.renew()
                    Path({str(ran)!r}).open("a").write(f"cycle {{i}}\\n")
                    if i == 1:
                        now = int(time.time())
                        other = {{"token": "other", "owner": "ci", "host": "runner-7", "pid": 4242, "started": now, "expires": now + 600}}
                        regress.lease.guest.machine.files[LEASE] = json.dumps(other).encode()

            def test_next_phase():
                Path({str(ran)!r}).open("a").write("next phase\\n")
            """
        ),
        encoding="utf-8",
    )
    code = pytest.main([str(suite), "-p", "no:cacheprovider", "--import-mode=importlib", "-q"], plugins=[RegressPlugin(session)])
    assert code == pytest.ExitCode.INTERRUPTED
    assert ran.read_text().splitlines() == ["cycle 0", "cycle 1"], "no cycle and no phase after the refused renewal"
    assert isinstance(session.lease_lost, LeaseLost) and session.lease_lost.exit_code == ExitCode.ENVIRONMENT == 3
    assert json.loads(machine.files[LEASE])["token"] == "other"


def test_the_cycles_phase_renews_inside_each_cycle() -> None:
    text = (REPO / "tests" / "vm" / "test_regression.py").read_text(encoding="utf-8")
    body = text[text.index("def test_load_unload_cycles") :]
    body = body[: body.index("\ndef ")]
    loop = body[body.index("for i in range") :]
    assert "regress.renew()" in loop
