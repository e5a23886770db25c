"""Tiny OS-less guests for the real-QEMU tests and the benchmark, built at run time.

Each guest is one BIOS boot sector (no binary blob is committed): SeaBIOS loads
it at 0x7c00 and jumps to it in 16-bit real mode. The machine code is written out
byte by byte below, with its listing, and the image is turned into a qcow2 base
with the real `qemu-img`.

idle guest (sleeps forever, ~0 host CPU under TCG, ignores ACPI power button):
    FA        cli                 ; no interrupts: hlt never wakes up
    F4        hlt
    EB FD     jmp short -3        ; back to hlt (NMI/SMI safety)

panicking guest (reports a crash to the pvpanic ISA device, like a guest kernel would):
    FA        cli
    B0 01     mov al, 1           ; pvpanic bit 0 = PANICKED
    BA 05 05  mov dx, 0x0505      ; pvpanic's default ISA I/O port
    EE        out dx, al
    F4        hlt
    EB FD     jmp short -3        ; back to hlt

ACPI guest (q35 only: SeaBIOS puts the ICH9 ACPI PM registers at I/O 0x600): sleeps
until the power button is pressed (QMP system_powerdown), then powers off via S5,
the way an OS answers a graceful shutdown request:
    BA 02 06  mov dx, 0x0602      ; PM1_EN
    B8 00 01  mov ax, 0x0100      ; PWRBTN_EN: QEMU only latches the button when enabled
    EF        out dx, ax
    FB        sti                 ; the BIOS timer tick (18.2 Hz) wakes hlt: cheap polling
    F4        hlt                 ; offset 8
    BA 00 06  mov dx, 0x0600      ; PM1_STS
    ED        in ax, dx
    A9 00 01  test ax, 0x0100     ; PWRBTN_STS
    74 F6     jz -10              ; back to hlt (offset 8)
    BA 04 06  mov dx, 0x0604      ; PM1_CNT
    B8 00 20  mov ax, 0x2000      ; SLP_EN with SLP_TYP 0 = soft off (S5)
    EF        out dx, ax
    FA        cli
    F4        hlt
    EB FD     jmp short -3
"""

from __future__ import annotations

import subprocess
from pathlib import Path

IDLE = bytes([0xFA, 0xF4, 0xEB, 0xFD])
PANIC = bytes([0xFA, 0xB0, 0x01, 0xBA, 0x05, 0x05, 0xEE, 0xF4, 0xEB, 0xFD])
# fmt: off
ACPI_POWEROFF = bytes([
    0xBA, 0x02, 0x06, 0xB8, 0x00, 0x01, 0xEF, 0xFB, 0xF4, 0xBA, 0x00, 0x06, 0xED, 0xA9, 0x00, 0x01, 0x74, 0xF6,
    0xBA, 0x04, 0x06, 0xB8, 0x00, 0x20, 0xEF, 0xFA, 0xF4, 0xEB, 0xFD,
])
# fmt: on
BOOT_SIGNATURE = b"\x55\xaa"


def boot_sector(code: bytes) -> bytes:
    assert len(code) <= 510
    return code + bytes(510 - len(code)) + BOOT_SIGNATURE


def make_base_image(folder: Path, code: bytes = IDLE, name: str = "base.qcow2", size_mib: int = 1) -> Path:
    """A qcow2 base image whose first sector is `code` (a 1 MiB disk by default)."""
    raw = folder / (name + ".raw")
    raw.write_bytes(boot_sector(code) + bytes(size_mib * 1024 * 1024 - 512))
    out = folder / name
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(out)], check=True)
    raw.unlink()
    return out
