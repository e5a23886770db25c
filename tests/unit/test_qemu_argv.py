"""QemuHost's QEMU command line and its config checks (no QEMU needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import ConfigError
from driverpipe.core.schema import VM_HOST_KINDS
from driverpipe.vmhosts.factory import open_vm_host
from driverpipe.vmhosts.qemu import QemuHost
from driverpipe.vmhosts.qemu_argv import build_argv

DEFAULTS = {name: key.default for name, key in VM_HOST_KINDS["qemu"].keys.items()}  # type: ignore[union-attr]


def test_default_argv_is_exactly_this() -> None:
    argv = build_argv(
        DEFAULTS,
        vm_name="win11",
        qmp_socket=Path("/s/qmp.sock"),
        disk=Path("/s/run/disk.qcow2"),
        vars_file=None,
        ovmf_code=None,
    )
    assert argv == [
        "qemu-system-x86_64", "-name", "driverpipe-win11",
        "-machine", "q35", "-accel", "kvm", "-accel", "tcg",
        "-m", "4096", "-smp", "2",
        "-nodefaults", "-vga", "std", "-display", "none",
        "-rtc", "base=localtime",
        "-qmp", "unix:/s/qmp.sock,server=on,wait=off",
        "-device", "pvpanic", "-action", "panic=pause,shutdown=pause",
        "-S",
        "-drive", "file=/s/run/disk.qcow2,format=qcow2,if=none,id=disk0,cache=writeback,discard=unmap",
        "-device", "ide-hd,drive=disk0,bus=ide.0,bootindex=0",
        "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:55986-:5986",
        "-device", "e1000,netdev=n0",
    ]  # fmt: skip


def test_uefi_forwards_loadvm_and_extra_args() -> None:
    settings = {**DEFAULTS, "forward_ssh": 2222, "forward_rdp": 53389, "nic": "virtio-net-pci", "accel": "tcg", "extra_args": ["-cpu", "max"]}
    argv = build_argv(
        settings,
        vm_name="w",
        qmp_socket=Path("/s/q.sock"),
        disk=Path("/s/run/disk.qcow2"),
        vars_file=Path("/s/run/vars.qcow2"),
        ovmf_code=Path("/usr/share/OVMF/OVMF_CODE_4M.fd"),
        loadvm="clean",
    )
    text = " ".join(argv)
    assert "-accel tcg -m" in text and "kvm" not in text
    # OVMF code read-only; vars as qcow2, or savevm refuses ("pflash1 ... does not support snapshots").
    assert "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd" in text
    assert "-drive if=pflash,format=qcow2,unit=1,file=/s/run/vars.qcow2" in text
    assert "hostfwd=tcp:127.0.0.1:55986-:5986,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:53389-:3389" in text
    assert "-device virtio-net-pci,netdev=n0" in text
    assert argv[-4:] == ["-loadvm", "clean", "-cpu", "max"]


def test_diskless_vm_without_forwards() -> None:
    argv = build_argv({**DEFAULTS, "forward_winrm": 0}, vm_name="x", qmp_socket=Path("/q"), disk=None, vars_file=None, ovmf_code=None)
    assert "-drive" not in argv
    assert argv[argv.index("-netdev") + 1] == "user,id=n0"


def _host(project: Path, extra: str = "", state_dir: str = "s") -> QemuHost:
    (project / "user-config.toml").write_text(
        f'[targets.t]\ntransport = "local"\nvm_host = "q"\n[vm_hosts.q]\nkind = "qemu"\nstate_dir = "{state_dir}"\n{extra}\n', encoding="utf-8"
    )
    cfg = load(root=project)
    host = open_vm_host(RunContext(config=cfg, echo=lambda _: None), cfg.target("t"))
    assert isinstance(host, QemuHost)
    return host


def test_vm_name_defaults_to_the_host_entry_and_state_dir_is_per_vm(project: Path) -> None:
    host = _host(project)
    assert host.name == "q"
    assert host.dir == project / "s" / "q"
    assert host.forwards() == {"winrm": 55986}


def test_config_problems_are_one_line_config_errors(project: Path) -> None:
    with pytest.raises(ConfigError, match="ovmf_vars: required with ovmf_code"):
        _host(project, f'ovmf_code = "{project / "pyproject.toml"}"')._firmware()
    with pytest.raises(ConfigError, match=r"base_image: .* does not exist"):
        _host(project, 'base_image = "missing.qcow2"')._base_image()
    with pytest.raises(ConfigError, match="too long for a UNIX socket"):
        _host(project, state_dir="x" * 120)
    host = _host(project)
    with pytest.raises(ConfigError, match="'base' is reserved"):
        host.snapshot("base")
    with pytest.raises(ConfigError, match="not allowed"):
        host.revert("../etc")


def test_status_and_stop_without_qemu_running(project: Path) -> None:
    host = _host(project)
    st = host.status()
    assert st.state.value == "stopped" and "saved states: none" in st.detail
    assert host.stop() == "graceful"  # nothing to do
    assert host.events() == []
    assert host.addresses() == []
