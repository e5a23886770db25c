"""A minimal but well-formed PE32+ image (headers + one .text section), enough for
header checks, Authenticode hashing and osslsigncode. Not a working driver.

It stands in for what a fake cargo or build host "produced", so by default it
keeps the image rules the build checks (driverpipe.image.imagecheck): a correct PE
checksum and the driver's DbgPrint texts (KMDF model: no exported entry).
"""

from __future__ import annotations

import struct

from pe_image import pe_checksum

NATIVE, WINDOWS_GUI = 1, 2
AMD64, ARM64 = 0x8664, 0xAA64


DRIVER_TEXTS = b"\xc3\0[WazabiEDR] DriverEntry called\n\0[WazabiEDR] DriverUnload called\n\0[WazabiEDR] unloaded\n\0"


def make_pe(*, machine: int = AMD64, subsystem: int = NATIVE, payload: bytes = b"", checksum: bool = True, texts: bool = True) -> bytes:
    """`payload` follows the driver's texts in .text (or replaces them with texts=False)."""
    payload = (DRIVER_TEXTS if texts else b"\xc3") + payload
    dos = bytearray(0x80)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x80)
    coff = struct.pack("<HHIIIHH", machine, 1, 0, 0, 0, 240, 0x2022)
    opt = struct.pack(
        "<HBBIIIIIQIIHHHHHHIIIIHHQQQQII",
        0x20B,
        14,
        0,
        0x200,
        0,
        0,
        0x1000,
        0x1000,
        0x140000000,
        0x1000,
        0x200,
        10,
        0,
        0,
        0,
        10,
        0,
        0,
        0x2000,
        0x200,
        0,
        subsystem,
        0x0160,
        0x100000,
        0x1000,
        0x100000,
        0x1000,
        0,
        16,
    ) + bytes(16 * 8)
    section = struct.pack("<8sIIIIIIHHI", b".text", 0x200, 0x1000, 0x200, 0x200, 0, 0, 0, 0, 0x60000020)
    headers = bytes(dos) + b"PE\0\0" + coff + opt + section
    headers += bytes(0x200 - len(headers))
    body = payload[:0x200] + bytes(0x200 - len(payload[:0x200]))
    image = bytearray(headers + body)
    if checksum:
        at = 0x80 + 4 + 20 + 64
        struct.pack_into("<I", image, at, pe_checksum(bytes(image), at))
    return bytes(image)
