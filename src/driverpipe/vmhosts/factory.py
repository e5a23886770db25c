"""open_vm_host(ctx, target): the VmHost adapter for a target, or None when it has no VM host.

Also the reachability loop every adapter shares: wait until the guest transport
answers (never a fixed sleep), and stop waiting at once when the hypervisor says
the VM died or the guest panicked.
"""

from __future__ import annotations

from typing import Any

from ..core.config import Section
from .base import VmHost


def open_vm_host(ctx: Any, target: Section) -> VmHost | None:
    """The target's VM host (QEMU, libvirt or Hyper-V), or None when target.vm_host is empty."""
    if not target.vm_host:
        return None
    entry = ctx.config.named("vm_hosts", target.vm_host, f"targets.{target.name}.vm_host")
    vm_name = str(target.vm_name or "")
    kind = entry.kind
    if kind == "qemu":
        from .qemu import QemuHost

        return QemuHost(ctx, entry, vm_name or entry.name, entry=entry.name)
    if not vm_name:
        from ..core.errors import ConfigError

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
