"""The nightly VM regression, phase by phase (run by `invoke regress --target NAME`).

Each test is one phase of the report. Phases run in file order; after every
phase the autouse fixture looks for a bugcheck (boot time changed, Event 1001,
new dumps, GUEST_PANICKED) and aborts the remaining phases if it finds one.
"""

from __future__ import annotations

from typing import Any

import pytest

from driverpipe.checks.regress import UnwindLeak, build_manifest_features, not_applicable, probe_guest
from driverpipe.core.errors import CheckFailed
from driverpipe.parse.text import native_text
from driverpipe.parse.tools import parse_verifier
from driverpipe.targets import deploy, operations, reboot, state

pytestmark = pytest.mark.vm


def test_revert_to_clean_state(regress: Any) -> None:
    vm = regress.vm
    if vm is None:
        pytest.skip("no VM host configured for this target: the guest is used as it is")
    state = str(regress.target.clean_state)
    vm.revert(state)
    vm.wait_reachable(lambda: probe_guest(regress), timeout=float(regress.ctx.config.project.deploy.reboot_timeout))
    vm.events()  # events from before the clean state are not this run's


def test_deploy_and_smoke_test(regress: Any, package: Any, capture: Any) -> None:
    regress.boot_time = operations.read_guest_state(regress.guest, regress.ctx).boot_time
    code = deploy.deploy_to(regress.ctx, regress.guest, package, regress.target, verify=True, capture_factory=lambda ctx, guest, run_id: capture)
    assert code == 0
    regress.boot_time = operations.read_guest_state(regress.guest, regress.ctx).boot_time


def _load(regress: Any, package: Any, capture: Any) -> state.LoadResult:
    return operations.load_driver(regress.ctx, regress.guest, package, capture, guest_dir=regress.guest_dir)


def _assert_loaded(regress: Any, capture: Any, result: state.LoadResult, what: str) -> None:
    if not result.ok:
        raise CheckFailed(f"{what}: {result.message or 'load failed'}")
    if result.smoke is not None and not result.smoke.ok:
        raise CheckFailed(f"{what}: smoke test: {result.smoke.describe(str(regress.ctx.config.project.device_path))}")
    verdict = capture.wait_for("load")
    if not verdict.passed:
        raise CheckFailed(f"{what}: {verdict.message}")


def _unload(regress: Any, capture: Any, what: str) -> None:
    result = operations.unload_driver(regress.ctx, regress.guest)
    if not result.stopped or not result.device_gone:
        raise CheckFailed(f"{what}: {result.message}")
    verdict = capture.wait_for("unload")
    if not verdict.passed:
        raise CheckFailed(f"{what}: {verdict.message}")


def _loaded(regress: Any) -> bool:
    return bool(operations.read_guest_state(regress.guest, regress.ctx).service.running)


def _from_unloaded(regress: Any, capture: Any, what: str) -> None:
    """A phase starts from a state it checked: a loaded driver is unloaded (its lines checked); one an
    earlier phase left unloaded has no DriverUnload lines to wait for, so that failure stays its own."""
    if _loaded(regress):
        _unload(regress, capture, what)


def test_load_unload_cycles(regress: Any, package: Any, capture: Any) -> None:
    cycles = int(regress.ctx.config.project.regress.cycles)
    if not _loaded(regress):  # the deploy phase failed: start from a load of our own
        _assert_loaded(regress, capture, _load(regress, package, capture), "load before the cycles")
    for i in range(1, cycles + 1):
        regress.renew()  # a long phase keeps its lease alive; refused -> the run stops (exit 3)
        _unload(regress, capture, f"cycle {i}/{cycles} unload")
        _assert_loaded(regress, capture, _load(regress, package, capture), f"cycle {i}/{cycles} load")


def test_fault_injection(regress: Any, package: Any, capture: Any, fault_step: tuple[int, str]) -> None:
    index, name = fault_step
    if not regress.faults:
        pytest.skip("fault-injection sweep disabled (--no-faults)")
    features = build_manifest_features(regress.ctx)
    if "fault-injection" not in features:
        pytest.skip("the package was built without the fault-injection feature: invoke build --features fault-injection sign")
    _from_unloaded(regress, capture, f"before failing step {index} ({name})")
    operations.set_fault_step(regress.guest, regress.ctx, index)
    try:
        # No capture handed to load_driver: it would read the window as a `load` phase; this
        # phase reads it as `failed_load` for exactly this step.
        result = operations.load_driver(regress.ctx, regress.guest, package, None, guest_dir=regress.guest_dir)
        if result.ok or result.start_code != 31:
            raise CheckFailed(f"step {index} ({name}): expected sc start to fail with 31 (DriverEntry failed), got {result.start_code}: {result.message}")
        verdict = capture.wait_for("failed_load", step=name)
        if not verdict.passed:
            raise CheckFailed(f"step {index} ({name}): {verdict.message}")
        if result.smoke is not None and result.smoke.open_error == 0:
            raise CheckFailed(f"step {index} ({name}): the device still opens after DriverEntry failed: the unwind left it behind")
        leak = capture.unwind_leak()  # Wine removes a failed driver's devices itself: its traces tell
        if leak:
            raise UnwindLeak(
                f"unwind bug: after a failure injected at step {index} ({name}): {leak}",
                "the unwind ladder in DriverEntry did not release everything acquired before that step",
            )
    finally:
        operations.set_fault_step(regress.guest, regress.ctx, 0)
    clean = _load(regress, package, capture)
    if not clean.ok:
        raise UnwindLeak(
            f"unwind bug: after a failure injected at step {index} ({name}), a clean load failed: {clean.message or clean.start_code}",
            "the unwind ladder in DriverEntry did not release everything acquired before that step",
        )
    _assert_loaded(regress, capture, clean, f"clean load after failing step {index} ({name})")


@pytest.mark.reboots(2)
def test_driver_verifier(regress: Any, package: Any, capture: Any) -> None:
    if not regress.ctx.config.project.regress.verifier:
        pytest.skip("Driver Verifier pass not requested (--verifier or regress.verifier = true)")
    why = not_applicable(regress).get("Driver Verifier")
    if why:
        pytest.skip(f"not applicable on {regress.target.transport}: {why}")
    sys_name = next(f.name for f in package.files if f.suffix.lower() == ".sys")
    timeout = float(regress.ctx.config.project.deploy.reboot_timeout)
    _from_unloaded(regress, capture, "before Driver Verifier")
    result = regress.guest.run_script("Set-DriverVerifier.ps1", {"Driver": sys_name})
    settings = parse_verifier(native_text((result or {}).get("settings")))
    if result is not None and not settings.verifies(sys_name):
        raise CheckFailed(f"Driver Verifier is not set for {sys_name}: verifier /querysettings lists {', '.join(settings.drivers) or 'no driver'}")
    reboot.reboot_and_wait(regress.ctx, regress.guest, timeout)
    regress.boot_time = operations.read_guest_state(regress.guest, regress.ctx).boot_time
    try:
        for i in range(1, 3):
            _assert_loaded(regress, capture, _load(regress, package, capture), f"verifier load {i}")
            _unload(regress, capture, f"verifier unload {i}")
    finally:
        regress.guest.run_script("Set-DriverVerifier.ps1", {"Reset": True})
        reboot.reboot_and_wait(regress.ctx, regress.guest, timeout)
        regress.boot_time = operations.read_guest_state(regress.guest, regress.ctx).boot_time
