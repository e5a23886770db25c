"""verifier.exe (/querysettings, /query) and pnputil.exe (/add-driver) output."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .text import _PROMPT, _lines

# --------------------------------------------------------------------------------------------
# verifier.exe (/querysettings, /query) and pnputil.exe (/add-driver)
# --------------------------------------------------------------------------------------------

_SYS_NAME = re.compile(r"(?<![\w.-])([\w.-]+\.sys)\b", re.I)
_HEX_FLAGS = re.compile(r"^[^:]+:\s*(?:0x)?([0-9A-Fa-f]{8})\s*$")
_COUNTER = re.compile(r"([^\s,:][^,:]*?)\s*:\s*(\d+)")
_OPTION = re.compile(r"^\s*([^:-][^:]*?)\s*:\s*(\S+?)[.\s]*$")
# Enabled/Disabled in the display languages verifier.exe ships in (the only words read here).
_ON = {"enabled", "aktiviert", "activé", "activée", "habilitado", "activado", "abilitato", "ativado", "включено", "有効", "已启用", "사용", "ingeschakeld"}
_OFF = {
    "disabled",
    "deaktiviert",
    "désactivé",
    "désactivée",
    "deshabilitado",
    "desactivado",
    "disabilitato",
    "desativado",
    "отключено",
    "無効",
    "已禁用",
    "사용 안 함",
    "uitgeschakeld",
}


@dataclass
class VerifierReport:
    """What `verifier /querysettings` or `/query` shows: the flags, the options by name, the verified drivers."""

    flags: int | None = None  # the Level / flags value when printed (hex)
    options: dict[str, bool | None] = field(default_factory=dict)  # label as printed -> on/off (None: unknown word)
    drivers: dict[str, dict[str, int]] = field(default_factory=dict)  # lower-case name -> counters printed with it

    @property
    def enabled(self) -> list[str]:
        return [name for name, on in self.options.items() if on]

    def verifies(self, driver: str) -> bool:
        return driver.lower() in self.drivers


def parse_verifier(text: str) -> VerifierReport:
    """`verifier /querysettings` and `/query` in any display language: drivers are found by their
    `.sys` names and the numbers printed with them, flags by their 8-digit hex value."""
    report = VerifierReport()
    for line in _lines(text):
        stripped = line.strip()
        if not stripped or _PROMPT.match(line) or stripped.lower().startswith("verifier "):
            continue
        if report.flags is None:
            flags = _HEX_FLAGS.match(stripped)
            if flags:
                report.flags = int(flags.group(1), 16)
                continue
        names = _SYS_NAME.findall(stripped)
        if names and not stripped.startswith("-"):
            counters = {label.strip(): int(n) for label, n in _COUNTER.findall(stripped) if not label.strip().lower().endswith(".sys")}
            report.drivers.setdefault(names[0].lower(), {}).update(counters)
            continue
        option = _OPTION.match(stripped)
        if option and not stripped.startswith("-") and not option.group(2).isdigit():
            word = option.group(2).lower()
            report.options[option.group(1)] = True if word in _ON else (False if word in _OFF else None)
    return report


_PUBLISHED = re.compile(r"\b(oem\d+\.inf)\b", re.I)
_COUNT_LINE = re.compile(r"^\s*[^:]+:\s*(\d+)\s*$")


@dataclass
class PnpAddResult:
    """What `pnputil /add-driver X.inf [/install]` printed."""

    published: str | None = None  # oemNN.inf in the driver store
    total: int | None = None
    added: int | None = None
    message: str = ""  # why it failed, as printed (localized)

    @property
    def ok(self) -> bool:
        return self.published is not None or bool(self.added)


def parse_pnputil_add(text: str) -> PnpAddResult:
    """`pnputil /add-driver` in any display language: the published `oemNN.inf` name and the two
    counts at the end (total, added) are numbers; the failure reason is the line after the package line."""
    result = PnpAddResult()
    counts: list[int] = []
    after_package = False
    for line in _lines(text):
        stripped = line.strip()
        if not stripped or _PROMPT.match(line):
            continue
        published = _PUBLISHED.search(stripped)
        if published and result.published is None:
            result.published = published.group(1).lower()
            continue
        count = _COUNT_LINE.match(stripped)
        if count:
            counts.append(int(count.group(1)))
            continue
        if re.search(r"\.inf\b", stripped, re.I) and ":" in stripped:
            after_package = True  # "Adding driver package:  X.inf"
            continue
        if after_package and not result.message and ":" in stripped:
            result.message = stripped.split(":", 1)[1].strip() or stripped
    if len(counts) >= 2:
        result.total, result.added = counts[-2], counts[-1]
    if result.ok:
        result.message = ""
    return result


# --------------------------------------------------------------------------------------------
# the kernel debugger's `!verifier` (not verifier.exe: a live or dump session's view)
# --------------------------------------------------------------------------------------------

_KD_LEVEL = re.compile(r"\bVerify\s+(?:Flags\s+)?Level\s+(?:0x)?([0-9A-Fa-f]+)\b")
_KD_FLAG = re.compile(r"^\s*\[([Xx ])\]\s*\((0x[0-9A-Fa-f]+)\)\s*(\S.*?)\s*$")
_KD_STAT = re.compile(r"^\s*([A-Za-z][\w/ ]*?)\s{2,}(0x[0-9A-Fa-f]+|\d+)(?:\s+for\s+([0-9A-Fa-f]+)\s+bytes)?\s*$")
_KD_MODULE = re.compile(r"\bMODULE:\s*(0x[0-9A-Fa-f`]+)\s+(\S+?\.sys)\s*(?:\((\w+)\))?", re.I)
_KD_POOL = re.compile(r"^\s*([A-Za-z][\w ]*?):\s*\(\s*(0x[0-9A-Fa-f]+)\s*/\s*(0x[0-9A-Fa-f]+)\s*\)")
_KD_ALLOC = re.compile(r"^\s*(0x[0-9A-Fa-f`]+)\s+(0x[0-9A-Fa-f]+)\s+(\S{1,4})\s+(0x[0-9A-Fa-f`]+)(?:\s+(\S+))?\s*$")


@dataclass
class KdVerifiedDriver:
    name: str
    status: str = ""  # "Loaded" / "Unloaded" as printed
    pools: dict[str, tuple[int, int]] = field(default_factory=dict)  # "Current Pool Allocations" -> (nonpaged, paged)
    allocations: list[tuple[str, int, str, str]] = field(default_factory=list)  # (address, length, tag, caller) still held


@dataclass
class KdVerifier:
    """What `!verifier [flags] [driver]` printed in the kernel debugger."""

    level: int | None = None  # `Verify Flags Level 0x...` / `Verify Level N` (hex)
    flags: dict[str, bool] = field(default_factory=dict)  # the [X]/[ ] list: name -> enabled
    options: list[str] = field(default_factory=list)  # `... enabled options are:` (older debuggers)
    stats: dict[str, int] = field(default_factory=dict)  # "Pool Allocations Failed" -> 0x34f
    drivers: dict[str, KdVerifiedDriver] = field(default_factory=dict)  # lower-case name

    @property
    def enabled(self) -> list[str]:
        return [name for name, on in self.flags.items() if on] or list(self.options)


def parse_kd_verifier(text: str | bytes) -> KdVerifier:
    """The kernel debugger's `!verifier`: the level, the [X] flag list (or the older enabled-options list),
    the statistics (name, hex value), and per MODULE its pool counters and outstanding allocations."""
    report = KdVerifier()
    in_options = False
    driver: KdVerifiedDriver | None = None
    for line in _lines(text):
        stripped = line.strip()
        if not stripped:
            in_options = False
            continue
        level = _KD_LEVEL.search(stripped)
        if level and report.level is None:
            report.level = int(level.group(1), 16)
            in_options = stripped.rstrip().endswith(":")
            continue
        if in_options:
            report.options.append(stripped)
            continue
        flag = _KD_FLAG.match(line)
        if flag:
            report.flags[flag.group(3)] = flag.group(1) in "Xx"
            continue
        module = _KD_MODULE.search(stripped)
        if module:
            driver = report.drivers.setdefault(module.group(2).lower(), KdVerifiedDriver(module.group(2), module.group(3) or ""))
            continue
        if driver is not None:
            pool = _KD_POOL.match(line)
            if pool:
                driver.pools[pool.group(1)] = (int(pool.group(2), 16), int(pool.group(3), 16))
                continue
            alloc = _KD_ALLOC.match(line)
            if alloc:
                driver.allocations.append((alloc.group(1), int(alloc.group(2), 16), alloc.group(3), alloc.group(5) or alloc.group(4)))
                continue
        stat = _KD_STAT.match(line)
        if stat and driver is None:
            value = stat.group(2)
            report.stats[stat.group(1)] = int(value, 16) if value.lower().startswith("0x") else int(value)
    return report


# --------------------------------------------------------------------------------------------
# pnputil /enum-drivers (and the older `pnputil -e`)
# --------------------------------------------------------------------------------------------

_PNP_FIELD = re.compile(r"^\s*([^:]+?)\s*:\s*(.*?)\s*$")
_INF_NAME = re.compile(r"^[\w.-]+\.inf$", re.I)
_CLASS_GUID = re.compile(r"^\{[0-9A-Fa-f-]{36}\}$")
_DRIVER_VERSION = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}\s+\d+(?:\.\d+)+$")


@dataclass
class DriverPackage:
    """One driver-store package as pnputil lists it."""

    published: str  # oemNN.inf
    original: str | None = None  # the package's own INF name (`/enum-drivers` only)
    provider: str = ""
    class_name: str = ""
    class_guid: str | None = None
    version: str = ""  # "MM/DD/YYYY a.b.c.d"
    signer: str = ""


def parse_pnputil_enum(text: str | bytes) -> list[DriverPackage]:
    """`pnputil /enum-drivers` / `pnputil -e` in any display language, by layout: a package starts at its
    `oemNN.inf` value; the original name is the next `.inf` value, the class GUID and the date-and-version
    are told by shape, the provider and class are the first two plain values, the signer is the one after
    the version. A value on the line after its label (some languages) is joined to it."""
    packages: list[DriverPackage] = []
    current: DriverPackage | None = None
    plain = 0  # plain values seen in this package (provider, class)
    pending = False  # a label whose value is on the next line
    for line in _lines(text):
        stripped = line.strip()
        if not stripped or _PROMPT.match(line):
            pending = False
            continue
        m = _PNP_FIELD.match(stripped)
        if m and not pending:
            value = m.group(2)
            if not value:
                pending = True
                continue
        elif pending:
            value, pending = stripped, False
        else:
            continue
        if _PUBLISHED.fullmatch(value):
            current, plain = DriverPackage(published=value.lower()), 0
            packages.append(current)
        elif current is None:
            continue
        elif _INF_NAME.match(value) and current.original is None and plain == 0:
            current.original = value
        elif _CLASS_GUID.match(value):
            current.class_guid = current.class_guid or value.lower()  # not a later Extension ID
        elif _DRIVER_VERSION.match(value):
            current.version = value
        elif current.version and not current.signer:
            current.signer = value
        elif not current.version and plain < 2:
            if plain == 0:
                current.provider = value
            else:
                current.class_name = value
            plain += 1
    return packages


def foreign_signed(packages: list[DriverPackage], inf_name: str, test_signer: str) -> list[DriverPackage]:
    """The driver-store packages of `inf_name` not signed by the test certificate `test_signer` (its CN):
    an older build signed otherwise, or a package whose signer Windows could not read."""
    want = inf_name.lower()
    return [p for p in packages if (p.original or "").lower() == want and p.signer.strip().lower() != test_signer.strip().lower()]
