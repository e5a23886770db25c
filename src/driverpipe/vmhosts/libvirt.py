"""LibvirtHost: an existing libvirt domain, driven with `virsh -c <uri>` through ctx.runner.

virsh reaches remote hosts itself (`-c qemu+ssh://user@host/system`), so every
operation here is one virsh call; nothing needs paramiko. Events are observed by
polling `domstate --reason` (a `virsh event` listener would need a long-lived
child process per VM; the regression polls between phases anyway):
"crashed"/"paused (panicked)" is a guest panic (libvirt's <on_crash> policy
decides which), a running->shut off transition nobody asked for is a SHUTDOWN,
and "running (booted)" after "running (unpaused)" etc. is not distinguishable,
so RESET is only reported by backends that see it (QEMU's QMP).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..core.errors import EnvironmentProblem, StepFailed
from ..core.runner import Completed
from .base import VmEvent, VmState, VmStatus

_STATES = {
    "running": VmState.RUNNING,
    "idle": VmState.RUNNING,
    "blocked": VmState.RUNNING,
    "paused": VmState.PAUSED,
    "pmsuspended": VmState.PAUSED,
    "in shutdown": VmState.RUNNING,
    "shut off": VmState.STOPPED,
    "crashed": VmState.CRASHED,
    "dying": VmState.STOPPED,
}
ADDRESS_SOURCES = ("lease", "agent", "arp")


def parse_domstate(text: str) -> tuple[str, str]:
    """'paused (panicked)' -> ('paused', 'panicked'); 'shut off' -> ('shut off', '')."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    state, _, reason = line.partition(" (")
    return state.strip(), reason.rstrip(")").strip()


def parse_domifaddr(text: str) -> list[str]:
    """IP addresses (no prefix length, no loopback/link-local) from `virsh domifaddr` output."""
    found: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[2] not in ("ipv4", "ipv6"):
            continue
        try:
            ip = ipaddress.ip_interface(parts[3]).ip
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local:
            continue
        if str(ip) not in found:
            found.append(str(ip))
    # IPv4 first: WinRM/SSH targets are usually configured by IPv4 address.
    return sorted(found, key=lambda a: ipaddress.ip_address(a).version)


class LibvirtHost:
    """VmHost over virsh (local or remote URI)."""

    kind = "libvirt"

    def __init__(self, ctx: Any, settings: Mapping[str, Any], vm_name: str):
        self.ctx = ctx
        self.settings = settings
        self.name = vm_name
        self.uri = str(settings.get("uri") or "qemu:///system")
        self.virsh = str(settings.get("virsh") or "virsh")
        self._last: tuple[str, str] | None = None
        self._expect_off = False
        self._reported_crash = False

    # -- virsh ----------------------------------------------------------------
    def _virsh(self, *args: str, mutates: bool = True, check: bool = True, timeout: float = 120.0) -> Completed:
        argv = [self.virsh, "-c", self.uri, *args]
        done = self.ctx.runner.run(argv, check=False, mutates=mutates, timeout=timeout, what=f"virsh {args[0]}")
        if check and not done.ok:
            message = _virsh_error(done)
            if "failed to connect" in message.lower() or "authentication" in message.lower():
                raise EnvironmentProblem(f"virsh cannot reach {self.uri}: {message}", "check the URI, libvirtd and (for qemu+ssh) your SSH key")
            raise StepFailed(f"virsh {args[0]} {self.name} failed: {message}")
        return done

    def _domstate(self) -> tuple[str, str] | None:
        done = self._virsh("domstate", self.name, "--reason", mutates=False, check=False, timeout=60.0)
        if not done.ok:
            message = _virsh_error(done)
            if "failed to get domain" in message.lower() or "domain not found" in message.lower():
                return None
            raise EnvironmentProblem(f"virsh cannot query {self.name} on {self.uri}: {message}", "check the URI and that libvirtd runs")
        return parse_domstate(done.stdout)

    # -- VmHost ---------------------------------------------------------------
    def status(self) -> VmStatus:
        ds = self._domstate()
        if ds is None:
            return VmStatus(self.name, VmState.ABSENT, f"no domain {self.name} on {self.uri}")
        state, reason = ds
        vm_state = _STATES.get(state, VmState.UNKNOWN)
        if reason == "panicked":
            vm_state = VmState.CRASHED
        return VmStatus(self.name, vm_state, f"{state}" + (f" ({reason})" if reason else "") + f" on {self.uri}")

    def start(self) -> None:
        ds = self._require()
        state, reason = ds
        if state in ("running", "idle", "blocked", "in shutdown"):
            return
        if state == "crashed" or reason == "panicked":
            raise StepFailed(f"domain {self.name} is {state} ({reason})", "revert it (`invoke vm.revert`) or stop it (`invoke vm.stop`)")
        if state in ("paused", "pmsuspended"):
            self._virsh("resume" if state == "paused" else "dompmwakeup", self.name)
        else:
            self._virsh("start", self.name)
        self._expect_off = False

    def inject_nmi(self) -> None:
        """virsh inject-nmi: turns a hung Windows guest into a crash dump (NMICrashDump=1)."""
        self._virsh("inject-nmi", self.name)

    def stop(self, graceful_timeout: float = 60.0) -> str:
        ds = self._require()
        if ds[0] == "shut off":
            return "graceful"
        self._expect_off = True
        if ds[0] in ("running", "idle", "blocked", "in shutdown") and graceful_timeout > 0:
            self._virsh("shutdown", self.name)
            if self.ctx.dry:
                self.ctx.say(f"[dry] poll `domstate` for up to {graceful_timeout:g} s, then `virsh destroy` if still running")
                return "graceful"
            deadline = time.monotonic() + graceful_timeout
            while time.monotonic() < deadline:
                current = self._domstate()
                if current is None or current[0] == "shut off":
                    return "graceful"
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        self._virsh("destroy", self.name)
        return "hard"

    def revert(self, state: str) -> None:
        self._require()
        # --running: the domain ends up running even if the snapshot was taken while off.
        self._virsh("snapshot-revert", self.name, state, "--running", timeout=600.0)
        self._expect_off = False
        self._reported_crash = False

    def snapshot(self, state: str) -> None:
        self._require()
        done = self._virsh("snapshot-create-as", self.name, state, "--atomic", check=False, timeout=1800.0)
        if not done.ok:
            message = _virsh_error(done)
            hint = "save it under another name (`invoke vm.snapshot --name NEW`): a snapshot is never replaced" if "already exists" in message else None
            if "internal snapshot" in message.lower() and ("pflash" in message.lower() or "uefi" in message.lower() or "nvram" in message.lower()):
                hint = "libvirt before 10.9/10.10 refuses internal snapshots of UEFI guests: use the qemu VM host kind, or external snapshots"
            raise StepFailed(f"virsh snapshot-create-as {self.name} {state} failed: {message}", hint)

    def addresses(self) -> list[str]:
        for source in ADDRESS_SOURCES:
            done = self._virsh("domifaddr", self.name, "--source", source, mutates=False, check=False, timeout=60.0)
            if done.ok:
                found = parse_domifaddr(done.stdout)
                if found:
                    return found
        return []

    def events(self) -> list[VmEvent]:
        ds = self._domstate()
        out: list[VmEvent] = []
        now = time.time()
        if ds is not None:
            state, reason = ds
            if (state == "crashed" or reason == "panicked") and not self._reported_crash:
                self._reported_crash = True
                out.append(VmEvent("GUEST_PANICKED", now, {"domstate": f"{state} ({reason})"}))
            prev = self._last
            if prev is not None and prev[0] != "shut off" and state == "shut off" and not self._expect_off:
                out.append(VmEvent("SHUTDOWN", now, {"reason": reason, "guest": reason == "shutdown"}))
        elif self._last is not None:
            out.append(VmEvent("PROCESS_EXITED", now, {"detail": f"domain {self.name} disappeared from {self.uri}"}))
        self._last = ds
        return out

    def wait_reachable(self, probe: Callable[[], bool], timeout: float) -> None:
        from .base import poll_until_reachable

        poll_until_reachable(self, probe, timeout)

    def close(self) -> None:
        pass  # every call is its own virsh process: nothing held open

    def _require(self) -> tuple[str, str]:
        ds = self._domstate()
        if ds is None:
            raise EnvironmentProblem(f"no libvirt domain {self.name} on {self.uri}", "fix targets.*.vm_name (see `virsh list --all`)")
        return ds


def _virsh_error(done: Completed) -> str:
    """virsh's own `error: ...` lines, joined (it often prints a summary then the cause)."""
    lines = [ln.strip().removeprefix("error:").strip() for ln in (done.stderr + "\n" + done.stdout).splitlines() if ln.strip().startswith("error:")]
    if lines:
        return "; ".join(ln for ln in lines if ln)
    text = (done.stderr or done.stdout).strip()
    return text.splitlines()[-1] if text else f"exit code {done.returncode}"
