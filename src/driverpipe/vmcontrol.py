"""`invoke vm.status|start|stop|revert|snapshot`: one target's VM, whatever the hypervisor.

start and revert end when the guest transport answers (a real WinRM/SSH round trip
through driverpipe.transports.connect), never after a fixed sleep; when the target can't
be probed, the task says so and returns instead of pretending to wait.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .core.config import Section
from .core.errors import ConfigError, PipelineError
from .targets.open import open_vm_host
from .vmhosts.base import VmHost, VmState

ACTIONS = ("status", "start", "stop", "revert", "snapshot")
DEFAULT_STOP_TIMEOUT = 60.0
PROBE_SCRIPT = ("Invoke-Batch.ps1", {"ItemsJson": "[]"})  # a shipped script that does nothing: one round trip


CHANGING = ("stop", "revert", "snapshot")


def run(ctx: Any, action: str, *, target: str | None = None, state: str | None = None, timeout: float | None = None, force: bool = False) -> int:
    if action not in ACTIONS:
        raise ConfigError(f"unknown VM action {action!r}", f"use one of: {', '.join(ACTIONS)}")
    section = ctx.config.target(target)
    if action in CHANGING and not section.test_machine and section.transport != "wine" and not force:
        raise ConfigError(
            f"targets.{section.name}: vm.{action} changes the VM, but test_machine is not true",
            f"set targets.{section.name}.test_machine = true for a disposable test VM, or pass --force",
        )
    if action in CHANGING:
        from .core.locks import held, target_lock

        with held(target_lock(ctx, section), ctx):
            return _run(ctx, action, section, state, timeout)
    return _run(ctx, action, section, state, timeout)


def _run(ctx: Any, action: str, section: Section, state: str | None, timeout: float | None) -> int:
    host = open_vm_host(ctx, section)
    if host is None:
        raise ConfigError(
            f"targets.{section.name}: no vm_host configured, so there is no VM to control",
            "set vm_host (a [vm_hosts.NAME] entry) and vm_name for this target",
        )
    label = f"{section.name} ({host.name})"
    interrupted = False
    try:
        if action == "status":
            st = host.status()
            ctx.say(f"{label}: {st.state.value}" + (f" - {st.detail}" if st.detail else ""))
            return 0
        if action == "start":
            ctx.step(f"starting VM {host.name}")
            host.start()
            _wait_for_guest(ctx, host, section, timeout)
            return 0
        if action == "stop":
            before = host.status()
            if before.state in (VmState.STOPPED, VmState.ABSENT) and not ctx.dry:
                host.stop(graceful_timeout=0.0)  # releases leftovers (a QEMU kept after guest shutdown)
                ctx.say(f"{label}: already stopped")
                return 0
            wait = DEFAULT_STOP_TIMEOUT if timeout is None else float(timeout)
            ctx.step(f"stopping VM {host.name} (graceful for up to {wait:g} s, then hard)")
            how = host.stop(graceful_timeout=wait)
            ctx.say(f"{label}: stopped ({how})")
            return 0
        if action == "revert":
            name = state or str(section.clean_state or "")
            if not name:
                raise ConfigError(f"targets.{section.name}.clean_state is empty and no state was given", "pass --name STATE or set clean_state")
            ctx.step(f"reverting VM {host.name} to '{name}'")
            host.revert(name)
            _wait_for_guest(ctx, host, section, timeout)
            return 0
        # snapshot
        if not state:
            raise ConfigError("vm.snapshot needs a state name", "pass --name NAME")
        ctx.step(f"saving VM {host.name} state '{state}'")
        host.snapshot(state)
        ctx.say(f"{label}: state '{state}' saved")
        return 0
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        try:
            # After Ctrl-C only bounded steps: asking the hypervisor again would re-run what may have hung.
            for event in [] if interrupted else host.events():
                ctx.say(f"{label}: hypervisor event {event.kind}" + (f" {event.detail}" if event.detail else ""))
        except PipelineError:
            pass  # the action's own outcome (or error) is what the user needs to see
        host.close()


def guest_probe(ctx: Any, section: Section) -> tuple[Callable[[], bool] | None, str]:
    """A probe that is true when the guest transport answers, or (None, why not)."""
    try:
        from .transports.connect import open_guest, uses_powershell_direct
    except ImportError:
        return None, "the guest transport module (driverpipe.transports.connect) is not available"
    if section.transport == "wine":
        from .targets.wine.host import wine_probe

        return wine_probe(ctx, section), ""
    if section.transport == "local" and not uses_powershell_direct(ctx, section):
        return None, "transport 'local' means the pipeline runs inside the guest"

    def probe() -> bool:
        try:
            guest = open_guest(ctx, section)
        except (PipelineError, OSError):
            return False
        try:
            name, params = PROBE_SCRIPT
            guest.run_script(name, dict(params), timeout=30)
            return True
        except (PipelineError, OSError):
            return False
        finally:
            try:
                guest.close()
            except Exception:
                pass  # closing a half-open connection must not hide the probe's answer

    return probe, ""


def _wait_for_guest(ctx: Any, host: VmHost, section: Section, timeout: float | None) -> None:
    label = f"{section.name} ({host.name})"
    probe, why_not = guest_probe(ctx, section)
    wait = float(timeout) if timeout else float(ctx.config.project.deploy.reboot_timeout)
    if ctx.dry:
        ctx.say(f"[dry] would wait up to {wait:g} s until the guest answers over {section.transport}")
        return
    if probe is None:
        ctx.say(f"{label}: VM is {host.status().state.value}; not waiting for the guest ({why_not})")
        return
    ctx.step(f"waiting up to {wait:g} s for the guest to answer over {section.transport}")
    host.wait_reachable(probe, wait)
    ctx.say(f"{label}: running, guest answers over {section.transport}")
