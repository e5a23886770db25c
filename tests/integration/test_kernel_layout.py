"""The generated wdk-sys against an independent compiler: mingw-w64's headers through gcc.

bindgen (libclang) wrote the bindings and their compile-time layout tests from
mingw-w64's DDK headers; this test asks a different compiler,
x86_64-w64-mingw32-gcc, for the offsets, sizes and constants of what the
repository's drivers touch (WazabiEDR and RustEcho), and compares them with
what Rust computes from the bindings on the host (a small program built
against wdk-sys; the bindings use the crate's own LLP64 C types, so the host
lays them out as the Windows target does). The gcc values are read back from
an object file's data section, so nothing runs under Windows or Wine.

The one known difference, fixed in one place (tools/wdk-bindgen's
align_device_object): the WDK declares DEVICE_OBJECT with
DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT), mingw-w64 does not (0x148 vs 0x150).

Marker `mingw` (gcc-mingw-w64-x86-64 + mingw-w64-x86-64-dev) and `cargo`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import need, need_tool

REPO = Path(__file__).resolve().parents[2]
WDK_SYS = REPO / "src" / "driverpipe" / "kernel" / "wdk-sys"
HOST_TRIPLE = "x86_64-unknown-linux-gnu"
# (C type, C member path, Rust member path or "sizeof"): what the drivers read or write.
FIELDS = [
    ("DRIVER_OBJECT", "DeviceObject", "DeviceObject"),
    ("DRIVER_OBJECT", "DriverUnload", "DriverUnload"),
    ("DRIVER_OBJECT", "MajorFunction", "MajorFunction"),
    ("DRIVER_OBJECT", "sizeof", "sizeof"),
    ("DEVICE_OBJECT", "Flags", "Flags"),
    ("DEVICE_OBJECT", "DeviceExtension", "DeviceExtension"),
    ("DEVICE_OBJECT", "sizeof", "sizeof"),
    ("IRP", "MdlAddress", "MdlAddress"),
    ("IRP", "AssociatedIrp.SystemBuffer", "AssociatedIrp.SystemBuffer"),
    ("IRP", "IoStatus", "IoStatus"),
    ("IRP", "Tail.Overlay.CurrentStackLocation", "Tail.Overlay.__bindgen_anon_2.__bindgen_anon_1.CurrentStackLocation"),
    ("IRP", "sizeof", "sizeof"),
    ("IO_STATUS_BLOCK", "Status", "__bindgen_anon_1.Status"),
    ("IO_STATUS_BLOCK", "Information", "Information"),
    ("IO_STATUS_BLOCK", "sizeof", "sizeof"),
    ("IO_STACK_LOCATION", "Parameters.DeviceIoControl.OutputBufferLength", "Parameters.DeviceIoControl.OutputBufferLength"),
    ("IO_STACK_LOCATION", "Parameters.DeviceIoControl.InputBufferLength", "Parameters.DeviceIoControl.InputBufferLength"),
    ("IO_STACK_LOCATION", "Parameters.DeviceIoControl.IoControlCode", "Parameters.DeviceIoControl.IoControlCode"),
    ("IO_STACK_LOCATION", "Parameters.DeviceIoControl.Type3InputBuffer", "Parameters.DeviceIoControl.Type3InputBuffer"),
    ("IO_STACK_LOCATION", "sizeof", "sizeof"),
    ("UNICODE_STRING", "Buffer", "Buffer"),
    ("UNICODE_STRING", "sizeof", "sizeof"),
    ("OBJECT_ATTRIBUTES", "ObjectName", "ObjectName"),
    ("OBJECT_ATTRIBUTES", "Attributes", "Attributes"),
    ("OBJECT_ATTRIBUTES", "sizeof", "sizeof"),
    ("KEY_VALUE_PARTIAL_INFORMATION", "DataLength", "DataLength"),
    ("KEY_VALUE_PARTIAL_INFORMATION", "Data", "Data"),
    ("MDL", "MdlFlags", "MdlFlags"),
    ("MDL", "MappedSystemVa", "MappedSystemVa"),
    ("MDL", "sizeof", "sizeof"),
    ("RTL_OSVERSIONINFOW", "dwBuildNumber", "dwBuildNumber"),
    ("RTL_OSVERSIONINFOW", "sizeof", "sizeof"),
    ("KEVENT", "sizeof", "sizeof"),
    ("KTIMER", "sizeof", "sizeof"),
    ("KDPC", "sizeof", "sizeof"),
    ("ERESOURCE", "sizeof", "sizeof"),
    ("NPAGED_LOOKASIDE_LIST", "sizeof", "sizeof"),
]
CONSTANTS = [
    "IRP_MJ_MAXIMUM_FUNCTION",
    "IRP_MJ_DEVICE_CONTROL",
    "DO_BUFFERED_IO",
    "FILE_DEVICE_UNKNOWN",
    "KEY_READ",
    "KEY_ALL_ACCESS",
    "OBJ_KERNEL_HANDLE",
    "OBJ_CASE_INSENSITIVE",
    "REG_DWORD",
    "MDL_MAPPED_TO_SYSTEM_VA",
    "MDL_SOURCE_IS_NONPAGED_POOL",
    "STATUS_SUCCESS",
    "STATUS_UNSUCCESSFUL",
    "STATUS_INVALID_DEVICE_REQUEST",
    "STATUS_BUFFER_TOO_SMALL",
    "STATUS_INVALID_PARAMETER",
]
# The WDK rounds these structures up to 16 bytes; mingw-w64 does not (see the module docstring).
ALIGNED_16 = {"DEVICE_OBJECT"}


def rust_values(tmp_path: Path) -> list[int]:
    """Offsets, sizes and constants as Rust computes them from the generated bindings (on the host)."""
    cargo = need_tool("cargo")
    crate = tmp_path / "layout"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(
        f'[package]\nname = "layout"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\nwdk-sys = {{ path = "{WDK_SYS}" }}\n\n[workspace]\n',
        encoding="utf-8",
    )
    lines = ["use core::mem::{offset_of, size_of};", "#[allow(unused_imports)] use wdk_sys::*;", "fn main() {"]
    for ctype, _c, rust in FIELDS:
        expr = f"size_of::<{ctype}>()" if rust == "sizeof" else f"offset_of!({ctype}, {rust})"
        lines.append(f'    println!("{{}}", {expr});')
    for name in CONSTANTS:
        lines.append(f'    println!("{{}}", {name} as i64);')
    lines.append("}")
    (crate / "src" / "main.rs").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run(
        [str(cargo), "run", "-q", "--target", HOST_TRIPLE],
        cwd=crate,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [int(v) for v in done.stdout.split()]


def mingw_values(tmp_path: Path) -> list[int]:
    """The same rows from x86_64-w64-mingw32-gcc and mingw-w64's ddk/ntifs.h."""
    gcc = need_tool("x86_64-w64-mingw32-gcc")
    need(Path("/usr/share/mingw-w64/include/ddk/ntifs.h").is_file(), "mingw-w64's DDK headers are missing (apt-get install mingw-w64-x86-64-dev)")
    lines = ["#include <ddk/ntifs.h>", "#include <stddef.h>"]
    exprs = [f"sizeof({t})" if c == "sizeof" else f"offsetof({t}, {c})" for t, c, _ in FIELDS] + list(CONSTANTS)
    lines += [f"const long long v{i} = (long long)({e});" for i, e in enumerate(exprs)]
    source = tmp_path / "layout.c"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    obj = tmp_path / "layout.o"
    argv = [str(gcc), "-I/usr/share/mingw-w64/include/ddk", "-c", str(source), "-o", str(obj)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"ntifs.h does not know a name the table uses:\n{done.stderr[-3000:]}"
    nm = subprocess.run([str(gcc.parent / "x86_64-w64-mingw32-nm"), str(obj)], capture_output=True, text=True, check=True).stdout
    dump = subprocess.run([str(gcc.parent / "x86_64-w64-mingw32-objdump"), "-s", "-j", ".rdata", str(obj)], capture_output=True, text=True, check=True).stdout
    data = b""
    for line in dump.splitlines():
        match = re.match(r"^ ([0-9a-f]{4,}) ((?:[0-9a-f]{2,8} ?){1,4})", line)
        if match:
            data += bytes.fromhex(match.group(2).replace(" ", ""))
    values: dict[str, int] = {}
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "R" and parts[2].startswith("v"):
            at = int(parts[0], 16)
            values[parts[2]] = int.from_bytes(data[at : at + 8], "little", signed=True)
    return [values[f"v{i}"] for i in range(len(exprs))]


@pytest.mark.mingw
@pytest.mark.cargo
def test_what_the_drivers_touch_matches_gcc_and_mingw_headers(tmp_path: Path) -> None:
    ours = rust_values(tmp_path)
    theirs = mingw_values(tmp_path)
    rows = [f"{t}.{c}" for t, c, _ in FIELDS] + CONSTANTS
    assert len(ours) == len(theirs) == len(rows)
    wrong = []
    for i, (row, a, b) in enumerate(zip(rows, ours, theirs, strict=True)):
        if i < len(FIELDS) and FIELDS[i][1] == "sizeof" and FIELDS[i][0] in ALIGNED_16:
            b = (b + 15) // 16 * 16
        if a != b:
            wrong.append(f"{row}: bindings 0x{a:x}, mingw-w64 + gcc 0x{b:x}")
    assert not wrong, "layout differs from mingw-w64's headers:\n" + "\n".join(wrong)
    checked = dict(zip(rows, ours, strict=True))
    # The offsets the WDK has (note 05), which Part 1 depends on.
    assert checked["DRIVER_OBJECT.DriverUnload"] == 0x68 and checked["DRIVER_OBJECT.MajorFunction"] == 0x70
    assert checked["DRIVER_OBJECT.sizeof"] == 0x150 and checked["DEVICE_OBJECT.Flags"] == 0x30
    assert checked["DEVICE_OBJECT.sizeof"] == 0x150, "the WDK's DECLSPEC_ALIGN(16) is applied"
    assert checked["IRP.IoStatus"] == 0x30 and checked["IRP.Tail.Overlay.CurrentStackLocation"] == 0xB8
    assert checked["IO_STACK_LOCATION.Parameters.DeviceIoControl.IoControlCode"] == 0x18
    assert checked["KEY_VALUE_PARTIAL_INFORMATION.Data"] == 0x0C and checked["OBJECT_ATTRIBUTES.sizeof"] == 0x30
