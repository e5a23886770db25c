"""Local transport through a fake `powershell` on PATH (real processes, real files; no Windows)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from driverpipe.core.errors import ConfigError, EnvironmentProblem
from driverpipe.transports.base import GuestScriptError
from driverpipe.transports.errors import GuestTimeout, RemoteFileNotFound
from driverpipe.transports.local import LocalGuest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sshd_server import fake_calls

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake(fake_powershell: Path) -> Path:
    return fake_powershell


@pytest.fixture
def guest(fake: Path) -> LocalGuest:
    return LocalGuest(name="here", script_timeout=30)


def test_finds_the_powershell_on_path(guest: LocalGuest, fake: Path) -> None:
    assert guest.powershell == str(fake / "powershell")


def test_missing_powershell_is_an_environment_problem(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="not found on PATH"):
        LocalGuest(name="here")


def test_run_script_binds_params(guest: LocalGuest) -> None:
    params = {"Name": "a 'b' \"c\" $(d)", "Count": 2, "Items": ["x"], "Flag": False}
    assert guest.run_script("Get-EchoParams.ps1", params) == {"params": params}
    assert guest.round_trips == 1


def test_long_params_use_stdin(guest: LocalGuest, fake: Path) -> None:
    big = "z" * 100_000
    assert guest.run_script("Get-EchoParams.ps1", {"Name": big}) == {"params": {"Name": big}}
    assert fake_calls(fake)[-1]["stdin"] is True


def test_failure_and_timeout(guest: LocalGuest) -> None:
    with pytest.raises(GuestScriptError, match=r"exit code 4\): no such service"):
        guest.run_script("Invoke-Failing.ps1", {"Message": "no such service", "Code": 4})
    with pytest.raises(GuestTimeout, match="within 1 s"):
        guest.run_script("Start-Sleeping.ps1", {"Seconds": 20}, timeout=1)


def test_batch(guest: LocalGuest) -> None:
    assert guest.run_batch([("Test-Elevation.ps1", {}), ("Get-EchoParams.ps1", {"Count": 1})]) == [
        {"elevated": True, "user": "FAKE\\tester"},
        {"params": {"Count": 1}},
    ]


def test_push_pull_read_range(guest: LocalGuest, tmp_path: Path) -> None:
    src = tmp_path / "d.sys"
    src.write_bytes(os.urandom(50_000))
    dest = tmp_path / "guest" / "d.sys"
    assert guest.push(src, str(dest)).copied
    assert not guest.push(src, str(dest)).copied
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["d.sys"]
    guest.pull(str(dest), tmp_path / "back" / "d.sys")
    assert (tmp_path / "back" / "d.sys").read_bytes() == src.read_bytes()
    assert guest.read_range(str(dest), 10, 4) == src.read_bytes()[10:14]
    with pytest.raises(RemoteFileNotFound):
        guest.read_range(str(tmp_path / "nope"), 0, 1)


def test_open_guest_local_and_powershell_direct(project: Path, fake: Path) -> None:
    from driverpipe.core.config import load
    from driverpipe.core.context import RunContext
    from driverpipe.transports.connect import open_guest

    (project / "user-config.toml").write_text(
        """
[targets.self]
transport = "local"

[targets.vm]
transport = "local"
vm_host = "hv"
vm_name = "win11"

[vm_hosts.hv]
kind = "hyperv"
use_powershell_direct = true
"""
    )
    cfg = load(root=project)
    ctx = RunContext(config=cfg, echo=lambda _s: None)
    guest = open_guest(ctx, cfg.target("self"))
    assert isinstance(guest, LocalGuest)
    assert guest.run_script("Test-Elevation.ps1")["elevated"] is True
    with pytest.raises(ConfigError, match=r"targets.vm.user: required for PowerShell Direct"):
        open_guest(ctx, cfg.target("vm"))  # the transport itself: tests/unit/test_psdirect_transport.py


def test_a_timeout_ends_the_whole_tree_even_when_a_child_keeps_the_pipes(tmp_path: Path) -> None:
    """A hung sc.exe that inherited PowerShell's pipes must not hang the pipeline after the timeout."""
    import stat
    import time

    from driverpipe.transports.errors import GuestTimeout
    from driverpipe.transports.local import run_wrapped

    shell = tmp_path / "stuck-powershell"
    shell.write_text("#!/bin/sh\nsleep 60 &\nsleep 60\n", encoding="utf-8")
    shell.chmod(shell.stat().st_mode | stat.S_IEXEC)
    start = time.monotonic()
    with pytest.raises(GuestTimeout):
        run_wrapped(str(shell), "Write-Output 1", {}, what="Stuck.ps1", where="here", timeout=1.0)
    assert time.monotonic() - start < 10
