"""`invoke vm.*` (driverpipe.vmcontrol) and the shared reachability loop, with fake hosts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from driverpipe import commands
from driverpipe import vmcontrol as control
from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import CheckFailed, ConfigError, StepFailed
from driverpipe.vmhosts.base import VmEvent, VmState, VmStatus, poll_until_reachable


class FakeHost:
    def __init__(self, state: VmState = VmState.RUNNING, events: list[list[VmEvent]] | None = None):
        self.name = "vm1"
        self.state = state
        self.calls: list[tuple[str, Any]] = []
        self._events = events or []

    def status(self) -> VmStatus:
        return VmStatus(self.name, self.state, "detail")

    def start(self) -> None:
        self.calls.append(("start", None))

    def stop(self, graceful_timeout: float = 60.0) -> str:
        self.calls.append(("stop", graceful_timeout))
        return "hard"

    def revert(self, state: str) -> None:
        self.calls.append(("revert", state))

    def snapshot(self, state: str) -> None:
        self.calls.append(("snapshot", state))

    def addresses(self) -> list[str]:
        return []

    def events(self) -> list[VmEvent]:
        return self._events.pop(0) if self._events else []

    def wait_reachable(self, probe: Callable[[], bool], timeout: float) -> None:
        poll_until_reachable(self, probe, timeout, sleep=lambda _: None)

    def close(self) -> None:
        self.calls.append(("close", None))


def _ctx(project: Path, target: str = 'transport = "local"\nvm_host = "q"', lines: list[str] | None = None) -> RunContext:
    (project / "user-config.toml").write_text(
        f'default_target = "t"\n[targets.t]\n{target}\nclean_state = "golden"\ntest_machine = true\n[vm_hosts.q]\nkind = "qemu"\n', encoding="utf-8"
    )
    sink = lines if lines is not None else []
    return RunContext(config=load(root=project), echo=sink.append, progress=lambda _: None)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    host = FakeHost()
    monkeypatch.setattr(control, "open_vm_host", lambda ctx, section: host)
    return host


def test_status_prints_one_line(project: Path, fake: FakeHost) -> None:
    lines: list[str] = []
    assert control.run(_ctx(project, lines=lines), "status") == 0
    assert lines == ["t (vm1): running - detail"]
    assert fake.calls == [("close", None)]


def test_revert_defaults_to_clean_state_and_says_why_it_cannot_wait(project: Path, fake: FakeHost) -> None:
    lines: list[str] = []
    control.run(_ctx(project, lines=lines), "revert", state=None)
    assert fake.calls[0] == ("revert", "golden")
    assert lines[-1].startswith("t (vm1): VM is running; not waiting for the guest (transport 'local'")


def test_stop_timeout_and_already_stopped(project: Path, fake: FakeHost) -> None:
    lines: list[str] = []
    control.run(_ctx(project, lines=lines), "stop", timeout=7)
    assert fake.calls[0] == ("stop", 7.0) and lines[-1] == "t (vm1): stopped (hard)"
    fake.state = VmState.STOPPED
    control.run(_ctx(project, lines=lines), "stop")
    assert lines[-1] == "t (vm1): already stopped"


def test_snapshot_needs_a_name(project: Path, fake: FakeHost) -> None:
    with pytest.raises(ConfigError, match="needs a state name"):
        control.run(_ctx(project), "snapshot")
    control.run(_ctx(project), "snapshot", state="s1")
    assert ("snapshot", "s1") in fake.calls


def test_start_waits_for_the_guest_transport(project: Path, fake: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([False, False, True])
    monkeypatch.setattr(control, "guest_probe", lambda ctx, section: (lambda: next(answers), ""))
    monkeypatch.setattr(time, "sleep", lambda _: None)
    lines: list[str] = []
    control.run(_ctx(project, target='transport = "winrm"\nhost = "127.0.0.1"\nvm_host = "q"', lines=lines), "start")
    assert lines[-1] == "t (vm1): running, guest answers over winrm"


def test_probe_uses_a_real_guest_round_trip(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import driverpipe.transports.connect as connect

    seen: list[tuple[str, dict[str, Any]]] = []

    class G:
        def run_script(self, name: str, params: dict[str, Any], *, timeout: float | None = None) -> Any:
            seen.append((name, params))
            return []

        def close(self) -> None:
            pass

    monkeypatch.setattr(connect, "open_guest", lambda ctx, section: G())
    ctx = _ctx(project, target='transport = "winrm"\nhost = "127.0.0.1"\nvm_host = "q"')
    probe, why = control.guest_probe(ctx, ctx.config.target())
    assert probe is not None and why == "" and probe() is True
    assert seen == [("Invoke-Batch.ps1", {"ItemsJson": "[]"})]


def test_no_vm_host_is_a_config_error_with_exit_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "user-config.toml").write_text('default_target = "t"\n[targets.t]\ntransport = "local"\n', encoding="utf-8")
    with pytest.raises(commands.TaskExit) as info:
        commands.vm(False, "status", target=None)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: targets.t: no vm_host configured") and "\n" not in err


def test_poll_stops_at_once_on_panic_or_dead_vm() -> None:
    panicked = FakeHost(events=[[], [VmEvent("GUEST_PANICKED", 0.0, {"action": "pause"})]])
    with pytest.raises(CheckFailed, match="GUEST_PANICKED"):
        poll_until_reachable(panicked, lambda: False, 600, sleep=lambda _: None)
    with pytest.raises(StepFailed, match="is crashed"):
        poll_until_reachable(FakeHost(VmState.CRASHED), lambda: False, 600, sleep=lambda _: None)
    with pytest.raises(StepFailed, match="did not answer within 0 s"):
        poll_until_reachable(FakeHost(), lambda: False, 0, sleep=lambda _: None)


def test_changing_a_vm_that_is_not_a_test_machine_needs_force(project: Path) -> None:
    (project / "user-config.toml").write_text(
        'default_target = "t"\n[targets.t]\ntransport = "local"\nvm_host = "q"\n[vm_hosts.q]\nkind = "qemu"\n', encoding="utf-8"
    )
    ctx = RunContext(config=load(root=project), echo=lambda _l: None, progress=lambda _: None)
    for action in ("stop", "revert", "snapshot"):
        with pytest.raises(ConfigError, match=f"vm.{action} changes the VM, but test_machine is not true"):
            control.run(ctx, action, state="s1")
