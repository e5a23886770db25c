"""The WDM image's kernel bindings against an independent source: mingw-w64's ddk/wdm.h.

A hand-written layout compiles even when it is wrong (a DriverUnload at 0x18
instead of 0x68 writes into the wrong field of the kernel's DRIVER_OBJECT). So
every offset, size and constant the bindings declare (their `layout` table,
printed by an example run on the host) is compared with what
x86_64-w64-mingw32-gcc computes from wdm.h: the C program is compiled to an
object file and the values are read back from its data section, so nothing
needs to run under Windows or Wine.

Marker `mingw` (gcc-mingw-w64-x86-64 + mingw-w64-x86-64-dev, installed by .ci/run).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import need, need_tool

REPO = Path(__file__).resolve().parents[2]
WDM = REPO / "driver" / "wdm"
BINDINGS = WDM / "kernel" / "wdk-sys" / "src" / "lib.rs"
HOST_TRIPLE = "x86_64-unknown-linux-gnu"
# mingw-w64 declares DEVICE_OBJECT without the WDK's DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT):
# its fields sit where the WDK's do, but its size is not rounded up to 16.
ALIGNED_16 = {"DEVICE_OBJECT"}
# Fields named differently in Rust because C's member is in an anonymous union.
ANONYMOUS = {("IO_STATUS_BLOCK", "__bindgen_anon_1"): "Status"}


def bindings_table() -> list[tuple[str, str, str, int]]:
    cargo = need_tool("cargo")
    done = subprocess.run(
        [str(cargo), "run", "-q", "--locked", "-p", "wazabi-kernel-sys", "--example", "layout", "--target", HOST_TRIPLE],
        cwd=WDM,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = []
    for line in done.stdout.splitlines():
        kind, name, field, value = line.split()
        rows.append((kind, name, field, int(value)))
    assert rows, "the layout example printed nothing"
    return rows


def mingw_values(rows: list[tuple[str, str, str, int]], tmp_path: Path) -> dict[str, int]:
    """Compile one `const long long vN = offsetof/sizeof/constant;` per row and read the values back."""
    gcc = need_tool("x86_64-w64-mingw32-gcc")
    need(Path("/usr/share/mingw-w64/include/ddk/wdm.h").is_file(), "mingw-w64's ddk/wdm.h is missing (apt-get install mingw-w64-x86-64-dev)")
    lines = ["#include <ddk/wdm.h>", "#include <stddef.h>"]
    for i, (kind, name, field, _value) in enumerate(rows):
        if kind == "const":
            expr = f"(long long)({name})"
        elif field == "sizeof":
            expr = f"(long long)sizeof({name})"
        else:
            expr = f"(long long)offsetof({name}, {field})"
        lines.append(f"const long long v{i} = {expr};")
    source = tmp_path / "layout.c"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    obj = tmp_path / "layout.o"
    done = subprocess.run([str(gcc), "-c", str(source), "-o", str(obj)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"wdm.h does not know a name the bindings use:\n{done.stderr[-3000:]}"
    nm = subprocess.run([str(gcc.parent / "x86_64-w64-mingw32-nm"), str(obj)], capture_output=True, text=True, check=True).stdout
    dump = subprocess.run([str(gcc.parent / "x86_64-w64-mingw32-objdump"), "-s", "-j", ".rdata", str(obj)], capture_output=True, text=True, check=True).stdout
    data = b""
    for line in dump.splitlines():
        match = re.match(r"^ ([0-9a-f]{4,}) ((?:[0-9a-f]{2,8} ?){1,4})", line)
        if match:
            data += bytes.fromhex(match.group(2).replace(" ", ""))
    values = {}
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "R" and parts[2].startswith("v"):
            at = int(parts[0], 16)
            values[parts[2]] = int.from_bytes(data[at : at + 8], "little", signed=True)
    return values


@pytest.mark.mingw
@pytest.mark.cargo
def test_every_offset_size_and_constant_matches_wdm_h(tmp_path: Path) -> None:
    rows = bindings_table()
    values = mingw_values(rows, tmp_path)
    wrong = []
    for i, (kind, name, field, ours) in enumerate(rows):
        theirs = values[f"v{i}"]
        if kind == "field" and field == "sizeof" and name in ALIGNED_16:
            theirs = (theirs + 15) // 16 * 16
        if ours != theirs:
            what = name if kind == "const" else f"{name}.{field}"
            wrong.append(f"{what}: bindings 0x{ours:x}, wdm.h 0x{theirs:x}")
    assert not wrong, "layout differs from mingw-w64's ddk/wdm.h:\n" + "\n".join(wrong)
    # The offsets note 05 lists, which the driver depends on, are among those checked.
    checked = {(n, f): v for k, n, f, v in rows if k == "field"}
    assert checked[("DRIVER_OBJECT", "DriverUnload")] == 0x68
    assert checked[("DRIVER_OBJECT", "MajorFunction")] == 0x70
    assert checked[("DRIVER_OBJECT", "sizeof")] == 0x150
    assert checked[("DEVICE_OBJECT", "Flags")] == 0x30
    assert checked[("IRP", "IoStatus")] == 0x30
    assert checked[("KEY_VALUE_PARTIAL_INFORMATION", "Data")] == 0x0C


@pytest.mark.mingw
@pytest.mark.cargo
def test_the_layout_table_covers_every_field_the_bindings_declare() -> None:
    """A field added to a struct but not to the table would escape the check above."""
    text = BINDINGS.read_text(encoding="utf-8")
    rows = bindings_table()
    table = {(n, f) for k, n, f, _ in rows if k == "field"}
    structs = re.findall(r"pub struct _(\w+) \{(.*?)\n\}", text, re.S)
    assert structs
    for name, body in structs:
        assert (name, "sizeof") in table, f"{name}: its size is not in the layout table"
        for field in re.findall(r"^\s*pub (\w+):", body, re.M):
            field = ANONYMOUS.get((name, field), field)
            assert (name, field) in table, f"{name}.{field} is not in the layout table"
