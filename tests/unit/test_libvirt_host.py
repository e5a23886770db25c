"""LibvirtHost against a FAKE `virsh` on PATH that records its exact argv.

No libvirtd runs here (installing libvirt-daemon-system pulls in systemd), so the
boundary is virsh's command line: the fake asserts nothing itself, it logs argv
and plays back scripted replies; the tests assert the exact commands.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import ConfigError, EnvironmentProblem, StepFailed
from driverpipe.vmhosts.base import VmState
from driverpipe.vmhosts.factory import open_vm_host
from driverpipe.vmhosts.libvirt import LibvirtHost, parse_domifaddr, parse_domstate

FAKE = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0]), *args]) + "\\n")
path = os.environ["FAKE_REPLIES"]
rules = json.load(open(path))
for rule in rules:
    if all(tok in args for tok in rule["match"]) and rule.get("times", 1) != 0:
        if rule.get("times", -1) > 0:
            rule["times"] -= 1
            json.dump(rules, open(path, "w"))
        sys.stdout.write(rule.get("out", ""))
        sys.stderr.write(rule.get("err", ""))
        sys.exit(rule.get("rc", 0))
sys.stderr.write("fake: no reply for " + " ".join(args) + "\\n")
sys.exit(99)
"""


class Fake:
    def __init__(self, folder: Path, name: str, monkeypatch: pytest.MonkeyPatch):
        bin_dir = folder / "fakebin"
        bin_dir.mkdir(exist_ok=True)
        exe = bin_dir / name
        exe.write_text(FAKE.format(python=sys.executable), encoding="utf-8")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
        self.log = folder / "fake.log"
        self.replies = folder / "replies.json"
        self.rules: list[dict[str, Any]] = []
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_LOG", str(self.log))
        monkeypatch.setenv("FAKE_REPLIES", str(self.replies))
        self.reply()

    def reply(self, *rules: dict[str, Any]) -> None:
        """Rules are tried in order; `times` limits a rule (then the next one answers)."""
        self.rules = list(rules)
        self.replies.write_text(json.dumps(self.rules), encoding="utf-8")

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


URI = "qemu+ssh://ci@hv1/system"


@pytest.fixture
def virsh(project: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    return Fake(project, "virsh", monkeypatch)


def _host(project: Path, dry: bool = False, lines: list[str] | None = None) -> LibvirtHost:
    (project / "user-config.toml").write_text(
        f'[targets.t]\ntransport = "local"\nvm_host = "lv"\nvm_name = "win11"\n[vm_hosts.lv]\nkind = "libvirt"\nuri = "{URI}"\n', encoding="utf-8"
    )
    cfg = load(root=project)
    sink = lines if lines is not None else []
    host = open_vm_host(RunContext(config=cfg, dry=dry, echo=sink.append), cfg.target("t"))
    assert isinstance(host, LibvirtHost)
    return host


def V(*args: str) -> list[str]:
    return ["virsh", "-c", URI, *args]


def test_parsers() -> None:
    assert parse_domstate("paused (panicked)\n\n") == ("paused", "panicked")
    assert parse_domstate("shut off\n") == ("shut off", "")
    out = """ Name       MAC address          Protocol     Address
-------------------------------------------------------------------------------
 vnet0      52:54:00:8e:6f:22    ipv6         fe80::5054:ff:fe8e:6f22/64
 vnet0      52:54:00:8e:6f:22    ipv6         fd00::17/64
 vnet0      52:54:00:8e:6f:22    ipv4         192.168.122.45/24
 lo         00:00:00:00:00:00    ipv4         127.0.0.1/8
"""
    assert parse_domifaddr(out) == ["192.168.122.45", "fd00::17"]


def test_status_maps_domstate_and_uses_the_uri(project: Path, virsh: Fake) -> None:
    host = _host(project)
    virsh.reply({"match": ["domstate"], "out": "running (booted)\n", "times": 1}, {"match": ["domstate"], "out": "paused (panicked)\n"})
    assert host.status().state is VmState.RUNNING
    crashed = host.status()
    assert crashed.state is VmState.CRASHED and "panicked" in crashed.detail
    assert virsh.calls() == [V("domstate", "win11", "--reason")] * 2


def test_missing_domain_is_absent_and_unreachable_uri_is_environment(project: Path, virsh: Fake) -> None:
    host = _host(project)
    virsh.reply({"match": ["domstate"], "rc": 1, "err": "error: failed to get domain 'win11'\n"})
    assert host.status().state is VmState.ABSENT
    with pytest.raises(EnvironmentProblem, match="no libvirt domain win11"):
        host.start()
    virsh.reply({"match": ["domstate"], "rc": 1, "err": "error: failed to connect to the hypervisor\nerror: Cannot recv data: Connection reset\n"})
    with pytest.raises(EnvironmentProblem, match="failed to connect to the hypervisor; Cannot recv data"):
        host.status()


def test_start_from_off_and_resume_from_paused(project: Path, virsh: Fake) -> None:
    host = _host(project)
    virsh.reply({"match": ["domstate"], "out": "shut off (shutdown)\n"}, {"match": ["start"], "out": "Domain 'win11' started\n"})
    host.start()
    assert virsh.calls()[-1] == V("start", "win11")
    virsh.reply({"match": ["domstate"], "out": "paused (user)\n"}, {"match": ["resume"]})
    host.start()
    assert virsh.calls()[-1] == V("resume", "win11")
    virsh.reply({"match": ["domstate"], "out": "crashed (panicked)\n"})
    with pytest.raises(StepFailed, match="crashed"):
        host.start()


def test_stop_graceful_then_hard_fallback(project: Path, virsh: Fake) -> None:
    host = _host(project)
    virsh.reply(
        {"match": ["domstate"], "out": "running (booted)\n", "times": 2},
        {"match": ["domstate"], "out": "shut off (shutdown)\n"},
        {"match": ["shutdown"]},
    )
    assert host.stop(graceful_timeout=30) == "graceful"
    assert V("shutdown", "win11") in virsh.calls() and V("destroy", "win11") not in virsh.calls()
    assert host.events() == []  # we asked for that shutdown: not an unexpected event

    virsh.log.unlink()
    virsh.reply({"match": ["domstate"], "out": "running (booted)\n"}, {"match": ["shutdown"]}, {"match": ["destroy"]})
    assert host.stop(graceful_timeout=0.3) == "hard"  # the guest ignores ACPI
    calls = virsh.calls()
    assert calls[1] == V("shutdown", "win11") and calls[-1] == V("destroy", "win11")


def test_revert_snapshot_and_uefi_refusal(project: Path, virsh: Fake) -> None:
    host = _host(project)
    virsh.reply({"match": ["domstate"], "out": "running (booted)\n"}, {"match": ["snapshot-revert"]}, {"match": ["snapshot-create-as"]})
    host.revert("clean")
    host.snapshot("clean2")
    assert V("snapshot-revert", "win11", "clean", "--running") in virsh.calls()
    assert V("snapshot-create-as", "win11", "clean2", "--atomic") in virsh.calls()
    virsh.reply(
        {"match": ["domstate"], "out": "running (booted)\n"},
        {
            "match": ["snapshot-create-as"],
            "rc": 1,
            "err": "error: Operation not supported: internal snapshots of a VM with pflash based firmware are not supported\n",
        },
    )
    with pytest.raises(StepFailed) as info:
        host.snapshot("x")
    assert "10.9/10.10" in (info.value.hint or "")


def test_addresses_fall_back_lease_agent_arp(project: Path, virsh: Fake) -> None:
    host = _host(project)
    virsh.reply(
        {"match": ["domifaddr", "lease"], "out": " Name MAC address Protocol Address\n---\n"},
        {"match": ["domifaddr", "agent"], "rc": 1, "err": "error: Guest agent is not responding\n"},
        {"match": ["domifaddr", "arp"], "out": " vnet0 52:54:00:8e:6f:22 ipv4 192.168.122.45/0\n"},
    )
    assert host.addresses() == ["192.168.122.45"]
    assert virsh.calls() == [V("domifaddr", "win11", "--source", s) for s in ("lease", "agent", "arp")]


def test_events_report_panic_once_and_unexpected_shutdown(project: Path, virsh: Fake) -> None:
    host = _host(project)
    virsh.reply({"match": ["domstate"], "out": "running (booted)\n", "times": 1}, {"match": ["domstate"], "out": "crashed (panicked)\n"})
    assert host.events() == []
    assert [e.kind for e in host.events()] == ["GUEST_PANICKED"]
    assert host.events() == []
    virsh.reply({"match": ["domstate"], "out": "running (booted)\n", "times": 1}, {"match": ["domstate"], "out": "shut off (crashed)\n"})
    host.events()
    assert [e.kind for e in host.events()] == ["SHUTDOWN"]


def test_dry_runs_queries_but_prints_actions(project: Path, virsh: Fake) -> None:
    lines: list[str] = []
    host = _host(project, dry=True, lines=lines)
    virsh.reply({"match": ["domstate"], "out": "running (booted)\n"})
    host.revert("clean")
    assert virsh.calls() == [V("domstate", "win11", "--reason")]  # the read-only query ran
    assert lines == [f"[dry] $ virsh -c {URI} snapshot-revert win11 clean --running"]


def test_vm_name_is_required_for_libvirt(project: Path) -> None:
    (project / "user-config.toml").write_text('[targets.t]\ntransport = "local"\nvm_host = "lv"\n[vm_hosts.lv]\nkind = "libvirt"\n', encoding="utf-8")
    cfg = load(root=project)
    with pytest.raises(ConfigError, match=r"targets\.t\.vm_name: required"):
        open_vm_host(RunContext(config=cfg), cfg.target("t"))


def test_inject_nmi_forces_a_dump_through_virsh(project: Path, virsh: Fake) -> None:
    virsh.reply({"match": ["inject-nmi"], "out": ""})
    _host(project).inject_nmi()
    assert virsh.calls()[-1] == V("inject-nmi", "win11")
