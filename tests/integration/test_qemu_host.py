"""QemuHost against real QEMU (Debian qemu-system-x86 7.2, software emulation).

The guests are OS-less boot sectors built by tests/qemu_guest.py (idle, panicking,
ACPI-aware), on a 1 MiB qcow2 base made with qemu-img in tmp_path. Every test kills
the QEMU processes it started (by pid) in teardown.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import CheckFailed, ConfigError
from driverpipe.vmhosts.base import VmState
from driverpipe.vmhosts.factory import open_vm_host
from driverpipe.vmhosts.qemu import QemuHost

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import need_tool
from qemu_guest import ACPI_POWEROFF, IDLE, PANIC, make_base_image

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(120)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _user_config(root: Path, base: Path, *, machine: str = "q35", extra: str = "") -> None:
    (root / "user-config.toml").write_text(
        textwrap.dedent(
            f"""
            default_target = "t"
            [targets.t]
            transport = "local"
            vm_host = "q"
            vm_name = "tiny"
            clean_state = "clean"
            test_machine = true
            [vm_hosts.q]
            kind = "qemu"
            machine = "{machine}"
            accel = "tcg"
            memory_mb = 32
            cpus = 1
            base_image = "{base}"
            state_dir = "{root / "s"}"
            forward_winrm = 0
            {extra}
            """
        ),
        encoding="utf-8",
    )


@pytest.fixture
def vm(project: Path) -> Iterator[Callable[..., QemuHost]]:
    """make(code=IDLE, dry=False) -> a QemuHost on a fresh tiny base image; QEMU killed afterwards."""
    need_tool("qemu-system-x86_64")
    need_tool("qemu-img")
    hosts: list[QemuHost] = []

    def make(code: bytes = IDLE, *, dry: bool = False, lines: list[str] | None = None) -> QemuHost:
        base = project / "base.qcow2"
        if not base.exists():
            make_base_image(project, code)
            _user_config(project, base)
        ctx = RunContext(config=load(root=project), dry=dry, echo=(lines.append if lines is not None else print))
        host = open_vm_host(ctx, ctx.config.target())
        assert isinstance(host, QemuHost)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()
        inst = host._instance()
        if inst and isinstance(inst.get("pid"), int) and host._alive(inst)[0]:
            os.kill(inst["pid"], signal.SIGKILL)  # only the QEMU this test started
            host._wait_exit(inst, 10)


def _settle(host: QemuHost) -> None:
    """Wait until the boot sector runs and the CPU halts (the BIOS no longer touches the
    CMOS index port between our monitor commands): the tiny guest's "reachable"."""
    host.wait_reachable(lambda: "HLT=1" in (regs := host.hmp("info registers")) and "EIP=00007c" in regs, timeout=60)


def _cmos(host: QemuHost, reg: int, value: int | None = None) -> int:
    """Read (or write) a CMOS byte through the monitor's port I/O: guest-visible device state."""
    host.hmp(f"o /b 0x70 {reg:#x}")
    if value is not None:
        host.hmp(f"o /b 0x71 {value:#x}")
    out = host.hmp("i /b 0x71")  # "portb[0x0071] = 0x5a"
    return int(out.strip().rsplit("=", 1)[1], 16)


def test_start_status_reconnect_and_hard_stop_fallback(vm: Callable[..., QemuHost]) -> None:
    host = vm(IDLE)
    assert host.status().state is VmState.STOPPED
    host.start()
    assert host.status().state is VmState.RUNNING
    pid = host._instance()["pid"]  # type: ignore[index]
    host.close()

    later = vm()  # what a later `invoke vm.status` builds: reconnects through qmp.sock
    st = later.status()
    assert st.state is VmState.RUNNING and f"pid {pid}" in st.detail
    later.start()  # already running: a no-op, not a second QEMU
    assert later._instance()["pid"] == pid  # type: ignore[index]
    # An OS-less guest ignores the ACPI power button: the graceful wait runs out, quit follows.
    assert later.stop(graceful_timeout=1.0) == "hard"
    assert later.status().state is VmState.STOPPED
    assert not later.instance_path.exists() and not later.socket.exists()


def test_graceful_stop_when_guest_powers_off(vm: Callable[..., QemuHost]) -> None:
    host = vm(ACPI_POWEROFF)
    host.start()

    def power_button_armed() -> bool:
        # Stand-in for "the guest transport answers": our boot sector runs and has enabled
        # PWRBTN_EN. The bit alone is not enough: it can read as set while the firmware still
        # runs, and a power-button press then is lost to the firmware's reset of PM1 status.
        in_boot_sector = "EIP=00007c" in host.hmp("info registers")
        return in_boot_sector and int(host.hmp("i /w 0x602").strip().rsplit("=", 1)[1], 16) & 0x100 != 0

    host.wait_reachable(power_button_armed, timeout=60)
    assert host.stop(graceful_timeout=60) == "graceful"
    assert host.status().state is VmState.STOPPED


def test_overlay_per_run_and_base_image_unchanged(vm: Callable[..., QemuHost], project: Path) -> None:
    host = vm(IDLE)
    base = project / "base.qcow2"
    before = _sha256(base)
    host.start()
    overlay = host.run_dir / "disk.qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(overlay)], capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and Path(info["backing-filename"]) == base
    host.hmp('qemu-io disk0 "write -P 0xab 0 64k"')  # the run writes to its disk...
    assert host.stop(graceful_timeout=0.5) == "hard"
    assert not overlay.exists()  # ...and the write is thrown away with the overlay
    assert _sha256(base) == before
    host.start()  # next run: a fresh overlay on the untouched base
    assert host.hmp('qemu-io disk0 "read -P 0 0 64k"').find("Pattern verification failed") < 0
    host.stop(graceful_timeout=0)


def test_snapshot_then_revert_warm_and_cold(vm: Callable[..., QemuHost], project: Path) -> None:
    host = vm(IDLE)
    base_hash = _sha256(project / "base.qcow2")
    host.start()
    _settle(host)
    _cmos(host, 0x40, 0x11)
    host.snapshot("clean")
    assert host.saved_states() == ["clean"]
    assert (host.states_dir / "clean" / "disk.qcow2").is_file()
    assert host.status().state is VmState.RUNNING  # saving does not leave the guest paused

    _cmos(host, 0x40, 0x22)
    host.revert("clean")  # warm: loadvm in the running QEMU
    assert host.status().state is VmState.RUNNING
    assert _cmos(host, 0x40) == 0x11
    assert host.events() == []  # our own STOP/RESUME are not reported as news

    host.stop(graceful_timeout=0)
    cold = vm()
    cold.revert("clean")  # cold: kept files copied to a new run, QEMU started with -loadvm
    assert cold.status().state is VmState.RUNNING
    assert "-loadvm" in cold._instance()["argv"]  # type: ignore[index]
    assert _cmos(cold, 0x40) == 0x11
    _cmos(cold, 0x40, 0x33)
    cold.revert("clean")  # the cold-started run holds the state: warm path again
    assert _cmos(cold, 0x40) == 0x11
    with pytest.raises(ConfigError, match="no saved state 'nope'"):
        cold.revert("nope")
    cold.revert("base")  # reserved: fresh overlay on the base image
    assert cold.status().state is VmState.RUNNING
    cold.stop(graceful_timeout=0)
    assert _sha256(project / "base.qcow2") == base_hash


def test_killed_qemu_is_detected_and_reported(vm: Callable[..., QemuHost]) -> None:
    host = vm(IDLE)
    host.start()
    pid = host._instance()["pid"]  # type: ignore[index]
    host.close()
    os.kill(pid, signal.SIGKILL)
    later = vm()
    deadline = time.monotonic() + 10
    while later.status().state is not VmState.CRASHED and time.monotonic() < deadline:
        time.sleep(0.05)
    st = later.status()
    assert st.state is VmState.CRASHED
    assert f"QEMU (pid {pid}) exited unexpectedly" in st.detail
    events = later.events()
    assert [e.kind for e in events] == ["PROCESS_EXITED"] and events[0].detail["pid"] == pid
    assert later.events() == []  # drained
    later.start()  # a new run replaces the dead one
    assert later.status().state is VmState.RUNNING
    later.stop(graceful_timeout=0)


def test_guest_panic_is_surfaced(vm: Callable[..., QemuHost]) -> None:
    host = vm(PANIC)  # the guest writes 1 to pvpanic's port 0x505 right after boot
    host.start()
    with pytest.raises(CheckFailed, match="GUEST_PANICKED"):
        host.wait_reachable(lambda: False, timeout=60)
    st = host.status()
    assert st.state is VmState.CRASHED and "panicked" in st.detail
    host.close()
    later = vm()  # a later invoke missed the QMP event but still sees the runstate
    assert later.status().state is VmState.CRASHED
    assert [e.kind for e in later.events()] == ["GUEST_PANICKED"]
    assert later.stop(graceful_timeout=5) == "hard"  # a paused guest can't shut down


def test_host_side_panic_then_revert_recovers(vm: Callable[..., QemuHost]) -> None:
    host = vm(IDLE)
    host.start()
    host.snapshot("clean")
    assert host.events() == []
    host.hmp("o 0x505 1")  # what a guest kernel's pvpanic driver does on a bugcheck
    deadline = time.monotonic() + 10
    kinds: list[str] = []
    while "GUEST_PANICKED" not in kinds and time.monotonic() < deadline:
        kinds += [e.kind for e in host.events()]
    assert kinds[:2] == ["GUEST_PANICKED", "STOP"]
    assert host.status().state is VmState.CRASHED
    host.revert("clean")
    assert host.status().state is VmState.RUNNING
    host.stop(graceful_timeout=0)


def test_dry_prints_the_plan_and_starts_nothing(vm: Callable[..., QemuHost]) -> None:
    lines: list[str] = []
    host = vm(IDLE, dry=True, lines=lines)
    host.start()
    text = "\n".join(lines)
    assert "[dry] $ qemu-img create -q -f qcow2 -F qcow2 -b" in text
    assert "[dry] $ qemu-system-x86_64 -name driverpipe-tiny" in text and "-device pvpanic" in text
    assert not host.dir.exists()


def test_invoke_vm_tasks_across_processes(vm: Callable[..., QemuHost], project: Path) -> None:
    """Each `invoke vm.*` is its own process: the QEMU started by one is found by the next."""
    vm(IDLE)  # writes the config and base image

    def invoke(action: str, *args: str) -> subprocess.CompletedProcess[str]:
        code = f"from driverpipe import commands; commands.vm(False, {action!r}, target=None{''.join(args)})"
        return subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=60)

    started = invoke("start")
    assert started.returncode == 0, started.stderr
    assert "not waiting for the guest" in started.stdout  # transport 'local' can't be probed from here
    assert "running" in invoke("status").stdout
    assert invoke("snapshot", ", name='clean'").returncode == 0
    assert invoke("revert").returncode == 0  # defaults to clean_state
    stopped = invoke("stop", ", timeout=1")
    assert stopped.returncode == 0 and "stopped (hard)" in stopped.stdout
    assert "stopped" in invoke("status").stdout
    missing = invoke("revert", ", name='nope'")
    assert missing.returncode == 2 and missing.stderr.splitlines()[-1].startswith("error: VM tiny: no saved state 'nope'")
