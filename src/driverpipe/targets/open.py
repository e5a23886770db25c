"""Opening a target and its VM host, whatever kind it is: a Wine prefix, or a Windows guest
over a transport (and its hypervisor). The one place that knows both kinds exist."""

from __future__ import annotations

from typing import Any

from ..core.config import Section
from ..core.context import RunContext


def open_target(ctx: RunContext, section: Section) -> Any:
    """The target's guest: a WineTarget (its own guest operations) or a connected transport."""
    if section.transport == "wine":
        from .wine.target import open_target as open_wine

        return open_wine(ctx, section)
    from ..transports.connect import open_guest

    return open_guest(ctx, section)


def open_vm_host(ctx: RunContext, section: Section) -> Any:
    """The target's VM host: the Wine prefix for a Wine target, else its [vm_hosts] entry (or None)."""
    if section.transport == "wine":
        from .wine.host import WineHost

        return WineHost(ctx, section)
    from ..vmhosts.factory import open_vm_host as open_host

    return open_host(ctx, section)
