"""The QEMU command line for a test VM: machine, accelerators, firmware, the overlay disk,
QMP and serial sockets, user-mode networking with the forwarded ports (WinRM, SSH, RDP),
pvpanic. Built as argv, never a shell line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def build_argv(
    settings: Mapping[str, Any],
    *,
    vm_name: str,
    qmp_socket: Path,
    disk: Path | None,
    vars_file: Path | None,
    ovmf_code: Path | None,
    loadvm: str | None = None,
) -> list[str]:
    """The QEMU command line for one run (pure: unit-tested without QEMU)."""
    argv = [str(settings["binary"]), "-name", f"driverpipe-{vm_name}"]
    argv += ["-machine", str(settings["machine"])]
    for accel in str(settings["accel"]).split(":"):
        if accel.strip():
            argv += ["-accel", accel.strip()]  # QEMU tries them in order (kvm, then tcg)
    argv += ["-m", str(settings["memory_mb"]), "-smp", str(settings["cpus"])]
    argv += ["-nodefaults", "-vga", "std", "-display", str(settings["display"])]
    argv += ["-rtc", "base=localtime"]  # Windows keeps the RTC in local time
    argv += ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
    argv += ["-device", "pvpanic", "-action", "panic=pause,shutdown=pause"]
    argv += ["-S"]  # start paused: QMP connects and sees every event from the first instruction
    if ovmf_code is not None:
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={ovmf_code}"]
        if vars_file is not None:
            argv += ["-drive", f"if=pflash,format=qcow2,unit=1,file={vars_file}"]
    if disk is not None:
        # AHCI (q35's built-in controller, `ide.0`): Windows has the driver in-box;
        # virtio-blk would need the virtio-win drivers in the image.
        argv += ["-drive", f"file={disk},format=qcow2,if=none,id=disk0,cache=writeback,discard=unmap"]
        argv += ["-device", "ide-hd,drive=disk0,bus=ide.0,bootindex=0"]
    forwards = [f"hostfwd=tcp:127.0.0.1:{port}-:{guest}" for port, guest in forward_ports(settings) if port]
    argv += ["-netdev", ",".join(["user", "id=n0", *forwards])]
    # e1000 by default: Windows ships a driver for it, so WinRM answers on a fresh image
    # without virtio-win (virtio-net-pci is faster but needs that driver installed).
    argv += ["-device", f"{settings.get('nic') or 'e1000'},netdev=n0"]
    if loadvm:
        argv += ["-loadvm", loadvm]
    argv += [str(a) for a in settings.get("extra_args") or []]
    return argv


def forward_ports(settings: Mapping[str, Any]) -> list[tuple[int, int]]:
    return [
        (int(settings.get("forward_winrm") or 0), 5986),
        (int(settings.get("forward_ssh") or 0), 22),
        (int(settings.get("forward_rdp") or 0), 3389),
    ]
