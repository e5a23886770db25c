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
