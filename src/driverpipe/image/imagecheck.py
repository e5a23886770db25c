"""The rules a driver image must keep, checked on the linked file after every build.

A kernel image that breaks one of these links fine and fails only when Windows
loads it (or, worse, loads and corrupts memory): so the build fails here, with
one line naming the rule. Read with lief (imported lazily: `invoke --list`
stays fast).

Rules for every model: PE32+ for the configured machine, subsystem NATIVE, a
correct PE checksum (Windows refuses a driver whose checksum is wrong),
relocatable (IMAGE_FILE_RELOCS_STRIPPED clear: the kernel picks the load
address), imports only from kernel-mode modules, and the driver's fixed
DbgPrint texts present. WDM images (entry DriverEntry) additionally import only
from ntoskrnl.exe / hal.dll and have DriverEntry as their entry point; a KMDF
image's entry is the WDK's FxDriverEntry stub, which is not exported.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import CheckFailed, PipelineError, StepFailed

WDM_IMPORTS = frozenset({"ntoskrnl.exe", "hal.dll"})
# KMDF images also bind to the framework loader; CNG and TraceLogging helpers
# are kernel modules a later part may add.
KMDF_IMPORTS = WDM_IMPORTS | {"wdfldr.sys", "cng.sys", "ksecdd.sys", "fltmgr.sys"}
MACHINES = {"amd64": 0x8664, "arm64": 0xAA64}
PE32_PLUS = 0x20B
IMAGE_FILE_RELOCS_STRIPPED = 0x0001
SUBSYSTEM_NATIVE = 1


@dataclass
class ImageFacts:
    """What the rules read from an image (also recorded in the build manifest)."""

    machine: int
    magic: int
    subsystem: int
    checksum: int
    computed_checksum: int
    characteristics: int
    entry_rva: int
    exports: dict[str, int]
    imports: dict[str, list[str]]
    relocations: bool
    size: int
    data: bytes = field(repr=False, default=b"")
    sections: list[tuple[str, int, int]] = field(default_factory=list)  # (name, raw offset, raw size)
    headers_size: int = 0

    @property
    def model_guess(self) -> str:
        """wdm when the image exports DriverEntry and does not bind to the KMDF loader, else kmdf."""
        return "wdm" if "DriverEntry" in self.exports and "wdfldr.sys" not in self.imports else "kmdf"

    def summary(self) -> dict[str, Any]:
        return {
            "entry": next((name for name, rva in self.exports.items() if rva == self.entry_rva), f"rva 0x{self.entry_rva:x}"),
            "imports": {dll: sorted(names) for dll, names in sorted(self.imports.items())},
            "checksum": f"0x{self.checksum:08x}",
            "relocations": self.relocations,
            "size": self.size,
        }


def pe_checksum(data: bytes) -> int:
    """The PE image checksum (ImageHlp's CheckSumMappedFile), with the stored field zeroed.

    Written here because lief's API for it changed between the versions we accept.
    """
    pe = int.from_bytes(data[0x3C:0x40], "little")
    field_at = pe + 24 + 64
    total = 0
    padded = data + b"\0" * (len(data) % 2)
    for i in range(0, len(padded), 2):
        if field_at <= i < field_at + 4:
            continue
        total += padded[i] | (padded[i + 1] << 8)
        total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFFFF) + len(data)


def prewarm() -> threading.Thread:
    """Import lief on a thread while cargo runs: the check needs it right after, and its import
    (~0.3 s, in C with the GIL mostly released by the waiting main thread) then costs no wall time.
    The caller joins it before going on, so no import is left running at exit."""

    def load() -> None:
        try:
            import lief  # noqa: F401
        except ImportError:
            pass  # read_facts reports it where it is needed

    thread = threading.Thread(target=load, name="lief-import", daemon=True)
    thread.start()
    return thread


def read_facts(path: Path) -> ImageFacts:
    """Parse `path` with lief; a file lief cannot read as PE is a failed rule too."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StepFailed(f"image check: cannot read {path} ({exc.strerror})", "re-run `invoke build`") from None
    import lief  # lazy: heavy

    lief.logging.disable()
    binary = lief.PE.parse(list(data)) if data[:2] == b"MZ" else None
    if binary is None:
        raise StepFailed(f"image check: {path.name} is not a PE image", "re-run `invoke build`; pass the linked .dll/.sys")
    oh = binary.optional_header
    exports: dict[str, int] = {}
    export = binary.get_export() if binary.has_exports else None
    if export is not None:
        for entry in export.entries:
            exports[str(entry.name)] = int(entry.address)
    imports: dict[str, list[str]] = {}
    for imp in binary.imports:
        imports.setdefault(str(imp.name).lower(), []).extend(str(e.name) for e in imp.entries if e.name)
    return ImageFacts(
        machine=int(binary.header.machine.value if hasattr(binary.header.machine, "value") else binary.header.machine),
        magic=int(oh.magic.value if hasattr(oh.magic, "value") else oh.magic),
        subsystem=int(oh.subsystem.value if hasattr(oh.subsystem, "value") else oh.subsystem),
        checksum=int(oh.checksum),
        computed_checksum=pe_checksum(data),
        characteristics=int(binary.header.characteristics),
        entry_rva=int(oh.addressof_entrypoint),
        exports=exports,
        imports=imports,
        relocations=bool(binary.has_relocations),
        size=len(data),
        data=data,
        sections=[(str(sec.name), int(sec.pointerto_raw_data), int(sec.sizeof_raw_data)) for sec in binary.sections],
        headers_size=int(oh.sizeof_headers),
    )


def check(path: Path, *, model: str, arch: str, texts: Iterable[str], error: type[PipelineError] = CheckFailed) -> ImageFacts:
    """Every rule for `model` ("wdm" | "kmdf"); the first broken one fails the build.

    `error`: CheckFailed (exit 1) for an image we built, ConfigError (exit 2) for one given with --from.
    """
    facts = read_facts(path)
    name = path.name
    fix_build = "rebuild with `invoke build` (the WDM route writes its link flags into <crate>/target/driverpipe-wdm/.cargo/config.toml)"
    want_machine = MACHINES.get(arch)
    if facts.magic != PE32_PLUS:
        raise error(f"image check: {name} is not PE32+ (optional header magic 0x{facts.magic:x})", f"build for a 64-bit target; {fix_build}")
    if want_machine is not None and facts.machine != want_machine:
        raise error(f"image check: {name} is for machine 0x{facts.machine:04x}, not {arch}", "build for the configured build.arch")
    if facts.headers_size > facts.size or not facts.sections:
        raise error(f"image check: {name} is truncated or has no sections", "rebuild it; a download or copy may have been cut")
    for sec_name, offset, raw in facts.sections:
        if raw and offset + raw > facts.size:
            raise error(
                f"image check: {name}'s section {sec_name} ends at 0x{offset + raw:x}, past the end of the file (0x{facts.size:x}): truncated", "rebuild it"
            )
    if facts.subsystem != SUBSYSTEM_NATIVE:
        raise error(
            f"image check: {name} has subsystem {facts.subsystem}, not NATIVE (1): it will not load as a driver", f"link with /SUBSYSTEM:NATIVE; {fix_build}"
        )
    if facts.characteristics & IMAGE_FILE_RELOCS_STRIPPED:
        raise error(f"image check: {name} has its relocations stripped: the kernel cannot load it at the address it picks", "do not link with /FIXED")
    if facts.checksum != facts.computed_checksum:
        raise error(
            f"image check: {name} has PE checksum 0x{facts.checksum:08x}, the file's is 0x{facts.computed_checksum:08x}: Windows refuses such a driver",
            "link with /RELEASE (lld-link writes the checksum)",
        )
    allowed = WDM_IMPORTS if model == "wdm" else KMDF_IMPORTS
    for dll in sorted(facts.imports):
        if dll not in allowed:
            symbols = ", ".join(sorted(facts.imports[dll])[:4])
            raise error(
                f"image check: {name} imports from {dll} ({symbols}): a kernel image may only import from {', '.join(sorted(allowed))}",
                "call it through wdk-sys (bound to ntoskrnl.exe), never through windows-sys",
            )
    if model == "wdm":
        entry = facts.exports.get("DriverEntry")
        if entry is None:
            raise error(f"image check: {name} exports no DriverEntry", 'keep #[unsafe(export_name = "DriverEntry")] on the entry function')
        if entry != facts.entry_rva:
            raise error(f"image check: {name}'s entry point is rva 0x{facts.entry_rva:x}, not DriverEntry (0x{entry:x})", "link with /ENTRY:DriverEntry")
    for text in texts:
        if text.encode("utf-8") not in facts.data:
            raise error(
                f"image check: {name} does not contain the DbgPrint text {text!r} the expectations wait for",
                "keep the driver's messages and [tool.driverpipe.expect.*] in step",
            )
    return facts


def expected_texts(expect: Mapping[str, Any]) -> list[str]:
    """The literal lines of the load and unload expectations (regex, glob and {hole} entries skipped)."""
    texts: list[str] = []
    for phase in ("load", "unload"):
        for item in (expect.get(phase) or {}).get("sequence", []):
            item = str(item)
            if not item.startswith("re:") and "{" not in item and "*" not in item:
                texts.append(item)
    return texts
