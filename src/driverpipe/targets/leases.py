"""Which targets get a lease on the guest itself (runs from other machines must see it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..core.locks import GuestLease


def lease_for(ctx: Any, section: Any, guest: Any) -> GuestLease | None:
    """A lease on a remote guest (winrm, ssh, PowerShell Direct); None for Wine and for the machine itself."""
    from .operations import PowerShellOps, ops_for

    if section.transport == "wine" or ctx.dry or not isinstance(ops_for(guest), PowerShellOps):
        return None
    if section.transport == "local" and not section.get("vm_host"):
        return None  # the pipeline runs on the guest itself: the local lock is the lease
    base = str(section.get("guest_dir") or ctx.config.project.deploy.guest_dir).rstrip("\\")
    d = ctx.config.project.deploy
    seconds = max(float(d.lease_seconds), float(d.reboot_timeout) + 120, float(d.script_timeout) + 120)
    return GuestLease(guest, base + "\\.driverpipe-lease.json", seconds, f"guest {section.name}")


@contextmanager
def held_guest(ctx: Any, section: Any, open_guest: Callable[[Any, Any], Any]) -> Iterator[tuple[Any, GuestLease | None]]:
    """One task's hold on a target: the local lock, the guest opened, its lease taken; released and closed after."""
    from ..core.locks import held, target_lock

    with held(target_lock(ctx, section), ctx):
        guest = open_guest(ctx, section)
        lease = lease_for(ctx, section, guest)
        try:
            if lease is not None:
                lease.acquire(float(ctx.config.project.deploy.lock_wait), ctx.step)
            yield guest, lease
        finally:
            if lease is not None:
                lease.release()
            try:
                guest.close()
            except Exception:  # closing a dead connection must not mask the real outcome
                pass
