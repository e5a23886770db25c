"""reboot_and_wait (note 02's boot-time identity algorithm) against the fake guest, with a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import StepFailed
from driverpipe.targets.reboot import BACKOFF_CAP, backoff, reboot_and_wait
from fakes.guest import FakeGuest, FakeWindows


class Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(seconds, 0.01)


@pytest.fixture
def ctx(project: Path) -> tuple[RunContext, list[str]]:
    progress: list[str] = []
    return RunContext(config=load(root=project), echo=progress.append, progress=progress.append), progress


def _reboot(ctx: RunContext, m: FakeWindows, timeout: float = 600) -> tuple[FakeGuest, Clock]:
    guest = FakeGuest(m)
    clock = Clock()
    reboot_and_wait(ctx, guest, timeout, clock=clock, sleep=clock.sleep, jitter=lambda: 0.5)
    return guest, clock


def test_waits_for_a_new_boot_time_then_readiness(ctx: tuple[RunContext, list[str]]) -> None:
    c, progress = ctx
    m = FakeWindows(shutdown_lag=2, down_attempts=3, ready_lag=2)
    m.bcd["testsigning"] = "Yes"
    before = m.boot_time
    guest, clock = _reboot(c, m)
    assert m.boot_time != before and m.boot_count == 1 and m.testsigning_active
    assert guest.pools_opened >= 2  # the pool was rebuilt after the reboot
    ready_calls = [name for name, _ in guest.calls if name == "Test-GuestReady.ps1"]
    assert len(ready_calls) == 3  # two "not ready" answers, then ready
    assert any("waiting for fake to come back" in p for p in progress)
    assert any("is ready" in p for p in progress)
    assert all(s <= BACKOFF_CAP for s in clock.sleeps)


def test_same_boot_time_is_not_a_reboot(ctx: tuple[RunContext, list[str]]) -> None:
    # The machine keeps answering with the old boot time for a while: that must not count.
    c, _ = ctx
    m = FakeWindows(shutdown_lag=4, down_attempts=1, ready_lag=0)
    guest, _ = _reboot(c, m)
    boot_reads = [name for name, _ in guest.calls if name == "Get-BootTime.ps1"]
    assert len(boot_reads) >= 4 and m.boot_count == 1


def test_already_scheduled_shutdown_is_aborted_and_retried(ctx: tuple[RunContext, list[str]]) -> None:
    c, _ = ctx
    m = FakeWindows(ready_lag=0)
    m.schedule_shutdown()
    m._shutdown_countdown = 99  # someone else's reboot, far away
    _reboot(c, m)
    assert m.boot_count == 1


def test_dropped_connection_on_shutdown_counts_as_success(ctx: tuple[RunContext, list[str]]) -> None:
    c, _ = ctx
    m = FakeWindows(ready_lag=0, down_attempts=2)

    from fakes.guest import HANDLERS

    original = HANDLERS["restart-guest.ps1"]

    def drop(machine: FakeWindows, params: dict[str, Any]) -> Any:
        original(machine, params)
        machine._shutdown_countdown = 0
        machine._go_down_for_reboot()
        from fakes.guest import ConnectionDropped

        raise ConnectionDropped("connection reset")

    HANDLERS["restart-guest.ps1"] = drop
    try:
        _reboot(c, m)
    finally:
        HANDLERS["restart-guest.ps1"] = original
    assert m.boot_count == 1


def test_timeout_when_the_guest_never_comes_back(ctx: tuple[RunContext, list[str]]) -> None:
    c, _ = ctx
    m = FakeWindows(fail_reboot=True)
    with pytest.raises(StepFailed, match="did not come back from the reboot within 30 s"):
        _reboot(c, m, timeout=30)


def test_timeout_when_never_ready(ctx: tuple[RunContext, list[str]]) -> None:
    c, _ = ctx
    m = FakeWindows(ready_lag=10_000)
    with pytest.raises(StepFailed, match="not ready"):
        _reboot(c, m, timeout=60)


def test_shutdown_refused_is_a_clear_error(ctx: tuple[RunContext, list[str]]) -> None:
    c, _ = ctx
    m = FakeWindows(elevated=False)
    with pytest.raises(StepFailed, match=r"shutdown\.exe /r failed with Win32 error 5"):
        _reboot(c, m)


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff(n, 0.0) for n in range(6)] == [1, 2, 4, 8, 12, 12]
    assert backoff(1, 0.7) == pytest.approx(2.7)


def test_dry_reboot_only_shows_scripts(project: Path) -> None:
    out: list[str] = []
    c = RunContext(config=load(root=project), dry=True, echo=out.append, progress=out.append)

    class Dry:
        name = "dry"

        def __init__(self) -> None:
            self.shown: list[str] = []

        def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> None:
            self.shown.append(script)

    g = Dry()
    reboot_and_wait(c, g, 600, clock=lambda: 0.0, sleep=lambda s: None)
    assert g.shown == ["Get-BootTime.ps1", "Restart-Guest.ps1", "Test-GuestReady.ps1"]


def test_reboot_with_connections_closed_mid_call(ctx: tuple[RunContext, list[str]]) -> None:
    # Transports report a connection closed mid-operation as StepFailed: still "not back yet".
    c, _ = ctx
    m = FakeWindows(shutdown_lag=0, down_attempts=2, ready_lag=1, drop_error="closed")
    _reboot(c, m)
    assert m.boot_count == 1
