"""PowerShell Direct transport through a fake `powershell` on PATH that keeps the
contract of scripts/psdirect/ (a VM session opened with a password taken from the
environment, shipped guest scripts run inside it). Real processes and files; no Hyper-V.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import ConfigError, EnvironmentProblem, StepFailed
from driverpipe.core.scripts import load_script
from driverpipe.parse.psgrammar import check_bound_params, parse_script
from driverpipe.transports.base import GuestScriptError
from driverpipe.transports.connect import open_guest
from driverpipe.transports.errors import RemoteFileNotFound
from driverpipe.transports.psdirect import PASSWORD_ENV, SCRIPTS_DIR, PsDirectGuest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sshd_server import fake_calls

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake(fake_powershell: Path) -> Path:
    return fake_powershell


def _guest(password: str = "pw", vm_name: str = "win11", user: str = "Administrator") -> PsDirectGuest:
    return PsDirectGuest(name="vm", vm_name=vm_name, user=user, password=password, script_timeout=30)


def test_guest_scripts_run_inside_the_vm_with_bound_params(fake: Path) -> None:
    guest = _guest()
    params = {"Name": "a 'b' \"c\" $(d)", "Count": 2, "Items": ["x"], "Flag": False}
    assert guest.run_script("Get-EchoParams.ps1", params) == {"params": params}
    assert guest.run_batch([("Test-Elevation.ps1", {}), ("Get-EchoParams.ps1", {"Count": 1})]) == [
        {"elevated": True, "user": "FAKE\\tester"},
        {"params": {"Count": 1}},
    ]
    calls = fake_calls(fake)
    assert [c["script"] for c in calls] == ["Invoke-InVm.ps1", "Invoke-InVm.ps1"]
    assert guest.round_trips == 2


def test_the_password_travels_in_the_child_environment_only(fake: Path) -> None:
    (fake / "vm-password").write_text("S3cret-Pa55")
    guest = _guest(password="S3cret-Pa55")
    guest.run_script("Test-Elevation.ps1")
    guest.run_script("Get-EchoParams.ps1", {"Name": "x" * 40_000})  # payload on stdin
    calls = fake_calls(fake)
    assert [c["password_in_call"] for c in calls] == [False, False]  # never on the command line, stdin or in params
    assert PASSWORD_ENV not in os.environ  # never in our own environment


@pytest.mark.parametrize(
    ("setup", "guest_kw", "message", "fix"),
    [
        ("", {"password": "wrong"}, "the VM rejected the credentials of Administrator", "password_env"),
        ("", {"vm_name": "nope"}, "no VM named nope on this Hyper-V host", "vm_name"),
        ("vm-off", {}, "VM win11 is not running", "invoke vm.start"),
    ],
)
def test_session_failures_are_one_line_with_a_fix(fake: Path, setup: str, guest_kw: dict[str, str], message: str, fix: str) -> None:
    if setup:
        (fake / setup).write_text("")
    with pytest.raises(EnvironmentProblem) as info:
        _guest(**guest_kw).run_script("Test-Elevation.ps1")
    assert message in info.value.message and "PowerShell Direct" in info.value.message
    assert fix in (info.value.hint or "")
    assert "\n" not in info.value.message


def test_a_failing_guest_script_is_a_script_error_not_a_session_error(fake: Path) -> None:
    with pytest.raises(GuestScriptError, match=r"Invoke-Failing.ps1 failed on vm \(exit code 1\)"):
        _guest().run_script("Invoke-Failing.ps1", {"Message": "boom"})


def test_push_skips_same_hash_and_never_leaves_a_partial(fake: Path, tmp_path: Path) -> None:
    guest = _guest()
    src = tmp_path / "d.sys"
    src.write_bytes(os.urandom(70_000))
    dest = tmp_path / "vm" / "C" / "WazabiEDR" / "d.sys"
    first = guest.push(src, str(dest))
    assert first.copied and dest.read_bytes() == src.read_bytes()
    assert not guest.push(src, str(dest)).copied
    old = dest.read_bytes()
    src.write_bytes(os.urandom(70_000))
    (fake / "copy-fails").write_text("")
    with pytest.raises(StepFailed, match=r"connection to the virtual machine was lost.*nothing was replaced"):
        guest.push(src, str(dest))
    assert dest.read_bytes() == old  # the old file is intact
    assert sorted(p.name for p in dest.parent.iterdir()) == ["d.sys"]  # no partial left in the VM


def test_pull_and_read_range(fake: Path, tmp_path: Path) -> None:
    guest = _guest()
    remote = tmp_path / "vm" / "dbg.log"
    remote.parent.mkdir()
    remote.write_bytes(b"0123456789")
    guest.pull(str(remote), tmp_path / "back" / "dbg.log")
    assert (tmp_path / "back" / "dbg.log").read_bytes() == b"0123456789"
    assert guest.read_range(str(remote), 3, 4) == b"3456"
    with pytest.raises(RemoteFileNotFound):
        guest.pull(str(tmp_path / "vm" / "nope"), tmp_path / "back" / "nope")
    assert not (tmp_path / "back" / "nope").exists() and not (tmp_path / "back" / "nope.partial").exists()
    with pytest.raises(RemoteFileNotFound):
        guest.read_range(str(tmp_path / "vm" / "nope"), 0, 1)


def _user_config(project: Path, *, host_transport: str = "local", extra_target: str = "") -> None:
    (project / "user-config.toml").write_text(
        f"""
[targets.vm]
transport = "local"
vm_host = "hv"
vm_name = "win11"
user = "Administrator"
password_env = "WIN11_PW"
{extra_target}
[vm_hosts.hv]
kind = "hyperv"
transport = "{host_transport}"
host = "hv.lab"
use_powershell_direct = true
""",
        encoding="utf-8",
    )


def test_open_guest_chooses_powershell_direct(project: Path, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIN11_PW", "pw")
    _user_config(project)
    cfg = load(root=project)
    guest = open_guest(RunContext(config=cfg, echo=lambda _s: None), cfg.target("vm"))
    assert isinstance(guest, PsDirectGuest) and guest.vm_name == "win11"
    assert guest.run_script("Test-Elevation.ps1")["elevated"] is True


def test_open_guest_refuses_powershell_direct_through_a_remote_hyperv_host(project: Path, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIN11_PW", "pw")
    _user_config(project, host_transport="winrm")
    cfg = load(root=project)
    with pytest.raises(ConfigError, match=r"vm_hosts.hv.transport: PowerShell Direct works only on the Hyper-V host itself"):
        open_guest(RunContext(config=cfg, echo=lambda _s: None), cfg.target("vm"))


def test_dry_run_names_powershell_direct_and_resolves_no_password(project: Path) -> None:
    _user_config(project)  # WIN11_PW deliberately unset
    cfg = load(root=project)
    lines: list[str] = []
    guest = open_guest(RunContext(config=cfg, dry=True, echo=lines.append), cfg.target("vm"))
    guest.run_script("Test-Elevation.ps1")
    assert any("vm (PowerShell Direct to VM win11)" in line for line in lines)


@pytest.mark.parametrize("script", sorted(SCRIPTS_DIR.glob("*.ps1")), ids=lambda p: p.name)
def test_host_scripts_parse_expanded_and_bind_what_python_sends(script: Path, tmp_path: Path) -> None:
    expanded = tmp_path / script.name
    expanded.write_text(load_script(script), encoding="utf-8")
    info = parse_script(expanded)
    assert not info.errors and "#include" not in expanded.read_text()
    common = {"VMName": "win11", "UserName": "Administrator"}
    sent = {
        "Invoke-InVm.ps1": {"ScriptText": "x", "ParamsJson": "{}"},
        "Send-VmFile.ps1": {"LocalPath": "a", "RemotePath": "b", "Sha256": "c", "HashScript": "d", "CompleteScript": "e"},
        "Receive-VmFile.ps1": {"RemotePath": "a", "LocalPath": "b"},
    }[script.name]
    assert check_bound_params(expanded, {**common, **sent}) == []


def test_vm_start_waits_for_the_guest_over_powershell_direct(project: Path, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from driverpipe import vmcontrol as control

    monkeypatch.setenv("WIN11_PW", "pw")
    _user_config(project)
    cfg = load(root=project)
    ctx = RunContext(config=cfg, echo=lambda _s: None)
    probe, why = control.guest_probe(ctx, cfg.target("vm"))
    assert probe is not None and why == ""
    (fake / "vm-off").write_text("")
    assert probe() is False  # the VM is not running yet: not an error, just "not yet"
    (fake / "vm-off").unlink()
    assert probe() is True
    assert [c["script"] for c in fake_calls(fake)] == ["Invoke-InVm.ps1", "Invoke-InVm.ps1"]


def _proc_gone(pid: int, within: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


def test_a_timed_out_script_is_ended_inside_the_vm_from_a_new_session(fake: Path, tmp_path: Path) -> None:
    """Killing powershell.exe on the host leaves the VM session's script running (holding its device
    handle): the VM-side pid the session announced is ended with its tree from a second session."""
    import time

    from driverpipe.transports.errors import GuestTimeout

    pid_file = tmp_path / "stubborn.pid"
    guest = _guest()
    with pytest.raises(GuestTimeout) as info:
        guest.run_script("Start-Stubborn.ps1", {"PidFile": str(pid_file)}, timeout=3)
    assert "Start-Stubborn.ps1 did not finish within 3 s" in info.value.message and "\n" not in info.value.message
    pid = int(pid_file.read_text())
    assert _proc_gone(pid), "the script still runs in the VM"
    scripts = [c["script"] for c in fake_calls(fake)]
    assert scripts == ["Invoke-InVm.ps1", "Invoke-InVm.ps1"], "one more session: Stop-ProcessTree.ps1 for the VM-side pid"
    started = time.monotonic()
    assert guest.run_script("Get-EchoParams.ps1", {"Count": 1}) == {"params": {"Count": 1}}
    assert time.monotonic() - started < 30


def test_invoke_in_vm_announces_the_vm_side_pid_first_inside_the_session() -> None:
    text = load_script(SCRIPTS_DIR / "Invoke-InVm.ps1")
    block = text[text.index("-ScriptBlock {") :]
    assert block.index("'driverpipe-pid: ' + $PID") < block.index("& ([scriptblock]::Create($Text))")
