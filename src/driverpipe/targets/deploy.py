"""`invoke deploy` / `invoke unload`: get the signed driver loaded and checked on a test target.

The flow is a PLAN: a list of Step records (name, what it does, when it applies,
what state an interruption leaves) run by a small loop; the target gives its plan
(the Windows one is steps.PLAN, Wine's is in wine/target.py). `--dry` prints the
plan and runs it against the DryGuest (which prints every script with its bound
parameters); regress reuses the pieces (operations.*, deploy_to, reboot_and_wait).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.context import RunContext
from ..core.errors import CheckFailed, EnvironmentProblem, PipelineError
from .operations import ops_for, read_guest_state, unload_driver
from .reboot import is_connection_error
from .state import Deployment, DeployStepFailed, PackageLike, Step, _guest_dir, _service_name
from .steps import PLAN, _render


def print_plan(ctx: RunContext, plan: list[Step]) -> None:
    ctx.say("[dry] deploy plan (steps apply when needed; a dry run assumes a first deploy):")
    for i, step in enumerate(plan, 1):
        ctx.say(f"[dry]   {i}. {step.name}: {step.summary}")


def _driver_state_now(d: Deployment) -> str:
    """Best effort after an interruption: ask the guest (one round trip) what the service is doing."""
    try:
        s = read_guest_state(d.guest, d.ctx)
    except (PipelineError, KeyboardInterrupt):
        return f"unknown: connection lost (last known: {d.driver})"
    if s.synthetic:
        return d.driver
    if s.service.running:
        return "driver left loaded (RUNNING)"
    return "driver stopped" if s.service.exists else "driver not installed"


def execute(plan: list[Step], d: Deployment) -> int:
    """Run the plan's applicable steps in order; interruptions and lost connections say what state remains."""
    for step in plan:
        if not step.when(d):
            continue
        if d.renew is not None:
            d.renew()
        d.ctx.step(f"{step.name}: {step.summary}")
        try:
            step.action(d)
        except KeyboardInterrupt:
            d.ctx.say(f"interrupted during '{step.name}': {_driver_state_now(d)} on {d.name}")
            raise
        except PipelineError as exc:
            if not is_connection_error(exc) or step.name == "state" or not ops_for(d.guest).over_network:
                raise  # unreachable from the start, or a local target (a missing tool is not a lost link): its own message says it best
            left = step.if_interrupted or f"driver {d.driver}"
            raise EnvironmentProblem(
                f"{d.name}: connection lost during '{step.name}' ({exc.message}); guest left: {left}",
                "check the VM (bugcheck? reboot?) with `invoke vm.status`/`invoke logs`, then run `invoke deploy` again",
            ) from None
    return 0


def deploy_to(
    ctx: RunContext,
    guest: Any,
    pkg: PackageLike,
    target: Any,
    *,
    verify: bool = True,
    capture_factory: Callable[[RunContext, Any, str], Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    plan: list[Step] | None = None,
    renew: Callable[[], None] | None = None,
) -> int:
    """Deploy `pkg` through an already open guest (tests and regress call this; `run` opens the guest)."""
    steps = plan if plan is not None else (ops_for(guest).deploy_plan() or PLAN)
    if ctx.dry:
        print_plan(ctx, steps)
    d = Deployment(ctx, guest, pkg, target, verify=verify, capture_factory=capture_factory, clock=clock, sleep=sleep, renew=renew)
    code = execute(steps, d)
    if not ctx.dry:
        ctx.say(f"deploy ok: {pkg.name} loaded on {d.name} ({getattr(guest, 'round_trips', '?')} round trips)")
    return code


@dataclass
class _PlaceholderPackage:
    """--dry without a signed package: show what a deploy of the configured driver would do."""

    dir: Path
    name: str
    files: list[Path]
    cert_path: Path
    manifest: dict[str, Any] = field(default_factory=dict)


def _signed_package(ctx: RunContext) -> PackageLike:
    from ..signing.sign import PackageTampered, check_signed_package

    try:
        return check_signed_package(ctx)
    except PipelineError as exc:
        if not ctx.dry or isinstance(exc, PackageTampered):
            raise  # --dry plans without a package, but never past a tampered one
        name = f"{_service_name(ctx)}_Driver"
        base = ctx.artifacts / "package"
        ctx.say(f"[dry] no signed package yet ({exc.message}); planning with {name}.sys/.inf/.cat")
        return _PlaceholderPackage(base, name, [base / f"{name}.sys", base / f"{name}.inf", base / f"{name}.cat"], base / "test.cer")


def _open_guest(ctx: RunContext, target: Any) -> Any:
    try:
        from .open import open_target as open_guest
    except ImportError as exc:
        raise EnvironmentProblem("the guest transports (driverpipe.transports.connect) are not available", "update driverpipe") from exc
    return open_guest(ctx, target)


def run(ctx: RunContext, *, target: str | None, verify: bool = True) -> int:
    """`invoke deploy`: 0 when the driver is loaded, smoke-tested and (with verify) its DbgPrint lines checked."""
    from .leases import held_guest

    section = ctx.config.target(target)
    pkg = _signed_package(ctx)
    with held_guest(ctx, section, _open_guest) as (guest, lease):
        code = deploy_to(ctx, guest, pkg, section, verify=verify, renew=lease.renew if lease is not None else None)
        if code == 0 and not ctx.dry:
            ops_for(guest).deployed()
        return code


def unload(ctx: RunContext, *, target: str | None, delete: bool = False) -> None:
    """`invoke unload`: sc stop, wait STOPPED, device path gone, optionally sc delete."""
    from .leases import held_guest

    section = ctx.config.target(target)
    with held_guest(ctx, section, _open_guest) as (guest, _lease):
        _unload_on(ctx, section, guest, delete)


def _unload_on(ctx: RunContext, section: Any, guest: Any, delete: bool) -> None:
    name = str(section.get("name") or getattr(guest, "name", "guest"))
    ctx.step(f"unload {_service_name(ctx)} on {name}")
    ops = ops_for(guest, section)
    capture = ops.new_capture(ctx, time.strftime("unload-%Y%m%d-%H%M%S"), _guest_dir(ctx, section)) if ops.capture_always_on else None
    try:
        result = unload_driver(ctx, guest, delete=delete)
    except KeyboardInterrupt:
        ctx.say(f"interrupted during unload on {name}: driver state unknown (sc stop may have run)")
        raise
    if result.dry:
        return
    if not result.stopped:
        raise DeployStepFailed(f"{name}: {result.message}")
    if not result.device_gone:
        raise CheckFailed(f"{name}: {result.message}", "the driver's DriverUnload must delete its symbolic link and device")
    if delete and result.deleted is False:
        raise DeployStepFailed(f"{name}: {result.message}")
    if capture is not None and result.stop_code == 0 and not ctx.dry:
        verdict = capture.wait_for("unload")
        ctx.say(_render(verdict))
        if not getattr(verdict, "passed", False):
            raise CheckFailed(f"{name}: DbgPrint check failed: {getattr(verdict, 'message', '')}", "the driver's DriverUnload lines did not appear")
    what = "not installed" if result.stop_code == 1060 else ("already stopped" if result.stop_code == 1062 else "stopped")
    device = str(ctx.config.project.device_path)
    gone = f"{device} is gone" if device else "device gone after unload: not applicable (no device declared)"
    ctx.say(f"{name}: {_service_name(ctx)} {what}; {gone}" + ("; service deleted" if result.deleted else ""))
