"""The Wine prefix as a VM host: `invoke vm.status|start|stop|revert|snapshot` and regress's revert.

A named state is the prefix's registry hives (services, trusted certificates and
FailAtStep live there), saved by `vm.snapshot NAME`; "clean" is saved when the
prefix is created. Revert stops Wine, puts the hives back, deletes what deploys
put in the prefix, and starts Wine again. A prefix of ours (it holds driverpipe's
marker) that is broken or was made by another Wine version is deleted and created
anew by `vm.revert` (the reset); a folder without the marker is refused untouched,
with or without --force.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ...core.config import Section
from ...core.errors import StepFailed
from ...vmhosts.base import VmEvent, VmState, VmStatus
from .prefix import WinePrefix
from .target import TOOLS_DIR, _guest_dir, prefix_path


class WineHost:
    """VmHost over one target's prefix."""

    def __init__(self, ctx: Any, section: Section):
        self.ctx = ctx
        self.section = section
        w = section.wine
        self.prefix = WinePrefix(
            prefix_path(ctx, section),
            wine=str(w["wine"]),
            wineserver=str(w["wineserver"]),
            start_timeout=float(w["start_timeout"]),
            say=ctx.step,
            key=f"targets.{section.name}.wine.prefix",
        )
        self.name = f"wine prefix {self.prefix.path}"

    def status(self) -> VmStatus:
        if self.prefix.foreign():
            return VmStatus(self.name, VmState.UNKNOWN, f"not made by driverpipe: left alone (point {self.prefix.key} at a new folder to use this target)")
        problem = self.prefix.describe_problem()
        if problem:
            return VmStatus(self.name, VmState.UNKNOWN, f"not usable: {problem}; `invoke vm.revert` resets it")
        if not (self.prefix.path / "system.reg").exists():
            return VmStatus(self.name, VmState.ABSENT, "no prefix yet: the first deploy (or vm.start) creates it")
        pids = self.prefix.processes()
        if self.prefix.running():
            return VmStatus(self.name, VmState.RUNNING, f"{self.prefix.version()}; Wine processes {', '.join(map(str, sorted(pids)))}")
        return VmStatus(self.name, VmState.STOPPED, self.prefix.version() + (f"; stray Wine processes {sorted(pids)}" if pids else ""))

    def start(self) -> None:
        if self.ctx.dry:
            self.ctx.say(f"[dry] create {self.prefix.path} if missing, wineserver -p, start Wine's services with the capture")
            return
        self.prefix.ensure()
        self.prefix.start()

    def stop(self, graceful_timeout: float = 60.0) -> str:
        if self.ctx.dry:
            self.ctx.say(f"[dry] WINEPREFIX={self.prefix.path} wineserver -k; end what is left by pid")
            return "dry"
        return "wineserver -k" if self.prefix.stop() else "nothing was running"

    def revert(self, state: str) -> None:
        if self.prefix.foreign():
            raise self.prefix.foreign_error()  # --force or not: never someone else's prefix
        if self.ctx.dry:
            self.ctx.say(f"[dry] stop Wine, restore the registry hives of state '{state}', delete the pushed files, start Wine")
            return
        problem = self.prefix.describe_problem()
        if problem:
            self.ctx.step(f"resetting the Wine prefix ({problem}): deleting and recreating {self.prefix.path}")
            self.prefix.delete()
        if not (self.prefix.path / "system.reg").exists():
            self.prefix.ensure()  # creates it, and its "clean" state
            if state != "clean":
                raise StepFailed(f"the prefix was recreated; it has no state {state!r}", "revert to 'clean', or save the state again with vm.snapshot")
        else:
            remove = [self.prefix.host_path(_guest_dir(self.ctx, self.section)), self.prefix.host_path(TOOLS_DIR)]
            self.prefix.restore(state, remove=remove)
        self.prefix.start()

    def snapshot(self, state: str) -> None:
        if self.ctx.dry:
            self.ctx.say(f"[dry] save the registry hives of {self.prefix.path} as state '{state}'")
            return
        self.prefix.ensure()
        self.prefix.snapshot(state)

    def addresses(self) -> list[str]:
        return []

    def inject_nmi(self) -> None:
        raise StepFailed("not applicable on wine: no kernel to crash-dump (a hung DriverEntry is ended by pid instead)")

    def events(self) -> list[VmEvent]:
        return []

    def wait_reachable(self, probe: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                raise StepFailed(f"Wine in {self.prefix.path} did not come up in {timeout:g} s", "see `invoke vm.status`")
            time.sleep(0.1)

    def close(self) -> None:
        pass


def wine_probe(ctx: Any, section: Section) -> Callable[[], bool]:
    """True when our Wine server for the target's prefix runs (what `vm.start`/`vm.revert` wait for)."""
    prefix = WinePrefix(prefix_path(ctx, section))
    return prefix.running
