"""HyperVHost against a FAKE `powershell.exe` on PATH (nobody here has Hyper-V).

The fake logs its exact argv and plays back the JSON a script would print; the
tests assert the argv (powershell.exe -File <shipped script> -Param value ...) and
that every bound parameter is one the .ps1 declares (tree-sitter-powershell).
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
from driverpipe.core.errors import ConfigError, StepFailed
from driverpipe.parse.psgrammar import check_bound_params, parse_script
from driverpipe.vmhosts.base import VmState
from driverpipe.vmhosts.factory import open_vm_host
from driverpipe.vmhosts.hyperv import SCRIPTS_DIR, HyperVHost

FAKE = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0]), *args]) + "\\n")
script = os.path.basename(args[args.index("-File") + 1])
path = os.environ["FAKE_REPLIES"]
replies = json.load(open(path))
queue = replies.get(script)
if not queue:
    sys.stderr.write("fake powershell: no reply for " + script + "\\n")
    sys.exit(99)
reply = queue.pop(0) if len(queue) > 1 else queue[0]
json.dump(replies, open(path, "w"))
print("WARNING: some host chatter before the result")
print(json.dumps(reply))
sys.exit(0 if reply.get("ok", True) else 1)
"""

RUNNING = {"ok": True, "exists": True, "state": "Running", "heartbeat": "OkApplicationsHealthy", "uptimeSeconds": 500,
           "checkpointType": "Production", "generation": 2, "secureBoot": "Off", "checkpoints": ["clean"]}  # fmt: skip


class FakePowerShell:
    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch):
        bin_dir = folder / "fakebin"
        bin_dir.mkdir(exist_ok=True)
        exe = bin_dir / "powershell.exe"
        exe.write_text(FAKE.format(python=sys.executable), encoding="utf-8")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
        self.log = folder / "ps.log"
        self.replies = folder / "ps-replies.json"
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_LOG", str(self.log))
        monkeypatch.setenv("FAKE_REPLIES", str(self.replies))
        self.reply({})

    def reply(self, replies: dict[str, list[dict[str, Any]]]) -> None:
        """script name -> results in order (the last one repeats)."""
        self.replies.write_text(json.dumps(replies), encoding="utf-8")

    def calls(self) -> list[tuple[str, dict[str, str]]]:
        """(script name, bound params) per call, after checking the fixed part of the argv."""
        out = []
        for line in self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []:
            argv = json.loads(line)
            assert argv[:6] == ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"]
            script = Path(argv[6])
            assert script.parent == SCRIPTS_DIR
            rest = argv[7:]
            assert all(name.startswith("-") for name in rest[::2]) and len(rest) % 2 == 0
            params = {name[1:]: value for name, value in zip(rest[::2], rest[1::2], strict=True)}
            assert check_bound_params(script, dict(params)) == [], script.name
            out.append((script.name, params))
        return out


@pytest.fixture
def ps(project: Path, monkeypatch: pytest.MonkeyPatch) -> FakePowerShell:
    return FakePowerShell(project, monkeypatch)


def _host(project: Path, dry: bool = False, lines: list[str] | None = None, direct: bool = False) -> HyperVHost:
    (project / "user-config.toml").write_text(
        '[targets.t]\ntransport = "local"\nvm_host = "hv"\nvm_name = "WDR-Win11"\nuser = "Administrator"\npassword_env = "GUEST_PW"\n'
        f'[vm_hosts.hv]\nkind = "hyperv"\nuse_powershell_direct = {"true" if direct else "false"}\n',
        encoding="utf-8",
    )
    cfg = load(root=project)
    sink = lines if lines is not None else []
    host = open_vm_host(RunContext(config=cfg, dry=dry, echo=sink.append), cfg.target("t"))
    assert isinstance(host, HyperVHost)
    return host


def test_every_hyperv_script_is_well_formed() -> None:
    scripts = sorted(SCRIPTS_DIR.glob("*.ps1"))
    assert {p.name for p in scripts} >= {
        "Get-VmState.ps1", "Start-TestVm.ps1", "Stop-TestVm.ps1", "Restore-TestVmCheckpoint.ps1",
        "New-TestVmCheckpoint.ps1", "Get-TestVmAddresses.ps1", "Set-TestVmSecureBoot.ps1",
    }  # fmt: skip
    for path in scripts:
        text = path.read_text(encoding="utf-8")
        info = parse_script(path)
        assert not info.errors, (path.name, info.errors)
        assert "[CmdletBinding()]" in text and "$ErrorActionPreference = 'Stop'" in text and "ConvertTo-Json" in text, path.name
        assert info.params.get("VMName") is True, path.name


def test_status_runs_get_vmstate_with_the_vm_name(project: Path, ps: FakePowerShell) -> None:
    ps.reply({"Get-VmState.ps1": [RUNNING]})
    st = _host(project).status()
    assert st.state is VmState.RUNNING and "Secure Boot Off" in st.detail and "Production" in st.detail
    assert ps.calls() == [("Get-VmState.ps1", {"VMName": "WDR-Win11"})]
    ps.reply({"Get-VmState.ps1": [{"ok": True, "exists": False}]})
    assert _host(project).status().state is VmState.ABSENT


def test_start_waits_for_heartbeat_in_the_script(project: Path, ps: FakePowerShell) -> None:
    ps.reply({"Get-VmState.ps1": [{**RUNNING, "state": "Off"}], "Start-TestVm.ps1": [{"ok": True, "heartbeatOk": True, "heartbeat": "OkApplicationsHealthy"}]})
    _host(project).start()
    assert ps.calls()[-1] == ("Start-TestVm.ps1", {"VMName": "WDR-Win11", "TimeoutSeconds": "600"})
    ps.reply({"Get-VmState.ps1": [RUNNING], "Start-TestVm.ps1": [{"ok": True, "heartbeatOk": False, "heartbeat": "NoContact"}]})
    with pytest.raises(StepFailed, match="Heartbeat is not OK"):
        _host(project).start()


def test_stop_reports_graceful_or_hard(project: Path, ps: FakePowerShell) -> None:
    ps.reply({"Stop-TestVm.ps1": [{"ok": True, "mode": "graceful"}, {"ok": True, "mode": "hard", "reason": "no shutdown within 5 s"}]})
    host = _host(project)
    assert host.stop(graceful_timeout=30) == "graceful"
    assert host.stop(graceful_timeout=5) == "hard"
    assert [p for _, p in ps.calls()] == [{"VMName": "WDR-Win11", "TimeoutSeconds": "30"}, {"VMName": "WDR-Win11", "TimeoutSeconds": "5"}]


def test_revert_production_checkpoint_and_missing_one(project: Path, ps: FakePowerShell) -> None:
    script = (SCRIPTS_DIR / "Restore-TestVmCheckpoint.ps1").read_text(encoding="utf-8")
    assert "Restore-VMSnapshot -VMName $VMName -Name $CheckpointName -Confirm:$false" in script
    assert "Start-VM -Name $VMName" in script  # a Production checkpoint comes back Off
    ps.reply({"Restore-TestVmCheckpoint.ps1": [{"ok": True, "stateAfterRestore": "Off", "startedAfterRestore": True, "state": "Running"}]})
    _host(project).revert("clean")
    assert ps.calls() == [("Restore-TestVmCheckpoint.ps1", {"VMName": "WDR-Win11", "CheckpointName": "clean"})]
    ps.reply({"Restore-TestVmCheckpoint.ps1": [{"ok": False, "missing": True, "error": "no checkpoint 'nope' (known: clean)"}]})
    with pytest.raises(ConfigError, match="no checkpoint 'nope'") as info:
        _host(project).revert("nope")
    assert info.value.exit_code == 2


def test_snapshot_addresses_and_secure_boot(project: Path, ps: FakePowerShell) -> None:
    ps.reply({
        "New-TestVmCheckpoint.ps1": [{"ok": True, "checkpoint": "clean", "checkpointType": "Standard"}],
        "Get-TestVmAddresses.ps1": [{"ok": True, "addresses": ["fe80::1", "2001:db8::5", "192.168.1.50"]}],
        "Set-TestVmSecureBoot.ps1": [{"ok": True, "secureBoot": "Off"}],
    })  # fmt: skip
    host = _host(project)
    host.snapshot("clean")
    assert host.addresses() == ["192.168.1.50", "2001:db8::5"]
    host.set_secure_boot(False)
    assert ps.calls() == [
        ("New-TestVmCheckpoint.ps1", {"VMName": "WDR-Win11", "CheckpointName": "clean"}),
        ("Get-TestVmAddresses.ps1", {"VMName": "WDR-Win11"}),
        ("Set-TestVmSecureBoot.ps1", {"VMName": "WDR-Win11", "SecureBoot": "Off"}),
    ]


def test_script_failure_is_one_line(project: Path, ps: FakePowerShell) -> None:
    ps.reply({"Set-TestVmSecureBoot.ps1": [{"ok": False, "error": "VM WDR-Win11 is Running; Set-VMFirmware needs it Off"}]})
    with pytest.raises(StepFailed, match=r"Set-TestVmSecureBoot.ps1 on the Hyper-V host \(local\) failed: VM WDR-Win11 is Running"):
        _host(project).set_secure_boot(False)


def test_events_from_state_polls(project: Path, ps: FakePowerShell) -> None:
    ps.reply({"Get-VmState.ps1": [RUNNING, {**RUNNING, "uptimeSeconds": 20}, {**RUNNING, "state": "Off", "uptimeSeconds": 0}]})
    host = _host(project)
    assert host.events() == []  # first poll: the baseline
    assert [e.kind for e in host.events()] == ["RESET"]  # uptime went back: the guest rebooted (bugcheck?)
    assert [e.kind for e in host.events()] == ["SHUTDOWN"]


def test_dry_shows_mutating_scripts_and_runs_only_queries(project: Path, ps: FakePowerShell) -> None:
    lines: list[str] = []
    ps.reply({"Get-VmState.ps1": [RUNNING]})
    host = _host(project, dry=True, lines=lines)
    host.revert("clean")
    assert host.stop() == "graceful"
    assert host.status().state is VmState.RUNNING  # a status query still runs
    assert [name for name, _ in ps.calls()] == ["Get-VmState.ps1"]
    assert lines[0] == '[dry] Hyper-V host (local): Restore-TestVmCheckpoint.ps1 {"CheckpointName": "clean", "VMName": "WDR-Win11"}'
    assert any("Restore-VMSnapshot" in line for line in lines)


def test_inject_nmi_runs_debug_vm_script(project: Path, ps: FakePowerShell) -> None:
    ps.reply({"Invoke-TestVmNmi.ps1": [{"ok": True}]})
    _host(project).inject_nmi()
    assert ps.calls()[-1] == ("Invoke-TestVmNmi.ps1", {"VMName": "WDR-Win11"})
