"""A tiny, documented generator of a valid PE32+ native (driver-like) image for tests.

Why: signing tests need a real PE file that lief parses and osslsigncode signs,
without committing binary blobs of unknown origin. Every byte written here is
explained below; nothing is executed, only hashed and signed.

Layout (file alignment 0x200, section alignment 0x1000):

    0x000  DOS header (64 bytes, e_lfanew = 0x80) + a 64-byte DOS stub
    0x080  "PE\\0\\0", COFF header (AMD64, 2 sections), PE32+ optional header
           (Subsystem NATIVE = 1, 16 empty data directories), 2 section headers
    0x200  .text  raw data: 0xC3 (`ret`), zero padded; RVA 0x1000 (entry point)
    0x400  INIT   raw data: 0xC3 (`ret`), zero padded; RVA 0x2000, discardable
    0x600  `tail` overlay bytes (default 3), so the file size is NOT a multiple of
           8: Authenticode signing then pads the file, which changes its hash
           (note 04: why a catalog must be built after embedded signing)

SizeOfImage (0x3000), SizeOfHeaders (0x200) and the PE checksum are computed.
"""

from __future__ import annotations

import struct
from pathlib import Path

FILE_ALIGN = 0x200
SECT_ALIGN = 0x1000
E_LFANEW = 0x80
IMAGE_BASE = 0x1_4000_0000

# DOS stub: `push cs; pop ds; mov dx,0xe; mov ah,9; int 21h; mov ax,4c01h; int 21h`
# followed by the customary message, padded to 64 bytes.
_DOS_STUB = bytes.fromhex("0e1fba0e00b409cd21b8014ccd21") + b"This program cannot be run in DOS mode.\r\r\n$"

# Section characteristics.
_CODE_EXEC_READ = 0x0000_0020 | 0x2000_0000 | 0x4000_0000
_DISCARDABLE = 0x0200_0000


def pe_checksum(data: bytes, checksum_offset: int) -> int:
    """The PE image checksum (as imagehlp's CheckSumMappedFile): 16-bit one's-complement-style
    sum of the file with the CheckSum field treated as zero, folded, plus the file length."""
    buf = bytearray(data)
    buf[checksum_offset : checksum_offset + 4] = b"\0\0\0\0"
    if len(buf) % 2:
        buf += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("<H", bytes(buf)):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFF_FFFF


def build_pe(*, tail: int = 3, force_integrity: bool = False, marker: bytes = b"") -> bytes:
    """Return the bytes of a minimal PE32+ native image (see module docstring).

    `marker` (<= 0x1F0 bytes) goes into .text after the `ret`, so tests can make
    images with different hashes.
    """
    if len(marker) > FILE_ALIGN - 16:
        raise ValueError("marker too long")
    sections = [
        (b".text", _CODE_EXEC_READ, b"\xc3" + marker),
        (b"INIT", _CODE_EXEC_READ | _DISCARDABLE, b"\xc3"),
    ]
    n = len(sections)
    opt_size = 240  # PE32+ optional header with 16 data directories
    headers_len = E_LFANEW + 4 + 20 + opt_size + 40 * n
    size_of_headers = -(-headers_len // FILE_ALIGN) * FILE_ALIGN

    dos = bytearray(64)
    dos[0:2] = b"MZ"
    struct.pack_into("<HHHHHHHHHH", dos, 2, 0x90, 3, 0, 4, 0, 0xFFFF, 0, 0xB8, 0, 0)  # classic MS-DOS header values
    struct.pack_into("<H", dos, 0x18, 0x40)  # e_lfarlc: relocation table right after the header
    struct.pack_into("<I", dos, 0x3C, E_LFANEW)
    stub = _DOS_STUB.ljust(E_LFANEW - 64, b"\0")

    coff = struct.pack(
        "<HHIIIHH",
        0x8664,  # Machine: AMD64
        n,
        0x6500_0000,  # TimeDateStamp: fixed, so the image is reproducible
        0,
        0,
        opt_size,
        0x0022,  # EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE
    )

    raw_ptr = size_of_headers
    rva = SECT_ALIGN
    sect_headers = b""
    sect_data = b""
    for name, flags, body in sections:
        raw = body.ljust(FILE_ALIGN, b"\0")
        sect_headers += struct.pack("<8sIIIIIIHHI", name, len(body), rva, len(raw), raw_ptr, 0, 0, 0, 0, flags)
        sect_data += raw
        raw_ptr += len(raw)
        rva += SECT_ALIGN
    size_of_image = rva
    code_size = FILE_ALIGN * n

    dll_chars = 0x0100  # NX_COMPAT
    if force_integrity:
        dll_chars |= 0x0080  # FORCE_INTEGRITY: the loader then demands a valid signature
    opt = struct.pack(
        "<HBBIIIII",
        0x20B,  # Magic: PE32+
        14,
        0,  # linker version
        code_size,
        0,  # SizeOfInitializedData
        0,  # SizeOfUninitializedData
        SECT_ALIGN,  # AddressOfEntryPoint: the `ret` in .text
        SECT_ALIGN,  # BaseOfCode
    )
    opt += struct.pack("<QII", IMAGE_BASE, SECT_ALIGN, FILE_ALIGN)
    opt += struct.pack("<HHHHHH", 10, 0, 10, 0, 10, 0)  # OS / image / subsystem versions
    opt += struct.pack("<IIII", 0, size_of_image, size_of_headers, 0)  # Win32VersionValue, sizes, CheckSum (patched below)
    opt += struct.pack("<HH", 1, dll_chars)  # Subsystem: NATIVE
    opt += struct.pack("<QQQQ", 0x40000, 0x1000, 0x100000, 0x1000)  # stack/heap reserve and commit
    opt += struct.pack("<II", 0, 16)  # LoaderFlags, NumberOfRvaAndSizes
    opt += b"\0" * (16 * 8)  # empty data directories (no imports, relocations or certificates yet)
    assert len(opt) == opt_size

    header = bytes(dos) + stub + b"PE\0\0" + coff + opt + sect_headers
    image = bytearray(header.ljust(size_of_headers, b"\0") + sect_data + b"\xcc" * tail)
    checksum_offset = E_LFANEW + 4 + 20 + 64
    struct.pack_into("<I", image, checksum_offset, pe_checksum(bytes(image), checksum_offset))
    return bytes(image)


def write_pe(path: Path, **kwargs: object) -> Path:
    """Write build_pe(**kwargs) to path and return it."""
    path.write_bytes(build_pe(**kwargs))  # type: ignore[arg-type]
    return path


SAMPLE_INF = """\
; Minimal INF for the signing tests (content only matters for its hash)
[Version]
Signature   = "$WINDOWS NT$"
Class       = System
ClassGuid   = {4d36e97d-e325-11ce-bfc1-08002be10318}
Provider    = %ProviderName%
CatalogFile = WazabiEDR_Driver.cat
DriverVer   = 01/01/2025,1.0.0.0
PnpLockdown = 1

[Strings]
ProviderName = "WazabiEDR"
"""
