"""open_vm_host(ctx, target): the VmHost adapter for a target, or None when it has no VM host.

Also the reachability loop every adapter shares: wait until the guest transport
answers (never a fixed sleep), and stop waiting at once when the hypervisor says
the VM died or the guest panicked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..config import Section
from ..errors import CheckFailed, PipelineError, StepFailed
from .base import VmHost, VmState

FATAL_EVENTS = ("GUEST_PANICKED", "PROCESS_EXITED")


def open_vm_host(ctx: Any, target: Section) -> VmHost | None:
    """The target's VM host (QEMU, libvirt or Hyper-V; a Wine target's prefix), or None when target.vm_host is empty."""
    if target.transport == "wine":
        from ..wine.host import WineHost

        return WineHost(ctx, target)
    if not target.vm_host:
        return None
    entry = ctx.config.named("vm_hosts", target.vm_host, f"targets.{target.name}.vm_host")
    vm_name = str(target.vm_name or "")
    kind = entry.kind
    if kind == "qemu":
        from .qemu import QemuHost

        return QemuHost(ctx, entry, vm_name or entry.name, entry=entry.name)
    if not vm_name:
        from ..errors import ConfigError

        raise ConfigError(
            f"targets.{target.name}.vm_name: required with a {kind} VM host",
            f"set vm_name to the {'domain' if kind == 'libvirt' else 'VM'} name on {entry.name}",
        )
    if kind == "libvirt":
        from .libvirt import LibvirtHost

        return LibvirtHost(ctx, entry, vm_name)
    if kind == "hyperv":
        from .hyperv import HyperVHost

        return HyperVHost(ctx, entry, vm_name)
    raise AssertionError(f"unknown vm host kind {kind!r} passed validation")  # schema choices forbid it


def poll_until_reachable(
    host: VmHost,
    probe: Callable[[], bool],
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Call probe() with backoff (0.5 s doubling to 5 s) until it is true or `timeout` passes.

    Between probes, the host's events and state are checked: a panicked guest or a
    dead VM ends the wait immediately with the reason, instead of a long timeout.
    """
    deadline = time.monotonic() + timeout
    delay = 0.5
    attempts = 0
    last_error = ""
    while True:
        for event in host.events():
            if event.kind in FATAL_EVENTS:
                raise CheckFailed(f"VM {host.name}: {event.kind} while waiting for the guest to answer ({_short(event.detail)})")
        attempts += 1
        try:
            if probe():
                return
        except PipelineError as exc:
            last_error = exc.message  # not answering yet; shown if it never does
        status = host.status()
        if status.state in (VmState.CRASHED, VmState.STOPPED, VmState.ABSENT):
            raise StepFailed(f"VM {host.name} is {status.state.value} while waiting for the guest to answer: {status.detail}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise StepFailed(
                f"VM {host.name}: the guest did not answer within {timeout:g} s ({attempts} attempts" + (f"; last: {last_error})" if last_error else ")"),
                "check the guest's network/WinRM setup, or raise the timeout",
            )
        sleep(min(delay, left))
        delay = min(delay * 2, 5.0)


def _short(detail: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items()) or "no detail"
