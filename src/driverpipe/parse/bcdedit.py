"""bcdedit: listings (`bcdedit`, `/enum`), `/set` outcomes, and "is TESTSIGNING on?".

Read by layout (the dashed underline of each heading, the value column) and, for the
booleans bcdedit prints in the display language, by a table of Yes/No words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .text import _PROMPT, _lines

# --------------------------------------------------------------------------------------------
# bcdedit
# --------------------------------------------------------------------------------------------


@dataclass
class BcdEntry:
    heading: str  # e.g. "Windows Boot Loader" (localized); "" for settings outside any section
    identifier: str | None
    settings: dict[str, str] = field(default_factory=dict)  # key (lowercase) -> value; multi-line joined with "\n"

    def get(self, key: str) -> str | None:
        return self.settings.get(key.lower())


_DASHES = re.compile(r"^-{3,}\s*$")
_HEADING_ARTIFACT = re.compile(r"^\s*#+\s*")
_SETTING = re.compile(r"^(\S+)(\s+)(\S.*?)\s*$")
_GUIDISH = re.compile(r"^\{[^{}\s]+\}$")
_VALUE_COLUMN = 24  # bcdedit pads keys to this column


def parse_bcdedit(text: str) -> list[BcdEntry]:
    """Sections of `bcdedit` / `bcdedit /enum ...` output, found by the dashed underline of each heading."""
    raw = _lines(text)
    lines = [_HEADING_ARTIFACT.sub("", line) if not line.startswith((" ", "\t")) else line for line in raw]
    entries: list[BcdEntry] = []
    current: BcdEntry | None = None
    last_key: str | None = None
    for i, line in enumerate(lines):
        if _PROMPT.match(line):
            continue
        if not line.strip():
            last_key = None
            continue
        if _DASHES.match(line.strip()):
            continue
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if _DASHES.match(nxt):
            current = BcdEntry(heading=line.strip(), identifier=None)
            entries.append(current)
            last_key = None
            continue
        if line[:1] in (" ", "\t"):
            # A continuation of a multi-line value (indented under the value column).
            if current is not None and last_key is not None:
                current.settings[last_key] += "\n" + line.strip()
            continue
        m = _SETTING.match(line)
        if not m:
            continue
        key, gap, value = m.group(1), m.group(2), m.group(3)
        if len(gap) < 2 and len(key) + len(gap) < _VALUE_COLUMN:
            continue  # prose such as "The operation completed successfully."
        if current is None:
            current = BcdEntry(heading="", identifier=None)
            entries.append(current)
        current.settings[key.lower()] = value
        last_key = key.lower()
        if current.identifier is None and (key.lower() == "identifier" or (not current.settings.keys() - {key.lower()} and _GUIDISH.match(value))):
            # The identifier is the first line of a section; its key may be localized (unsure).
            current.identifier = value
    return entries


# bcdedit prints booleans in the display language (the only words read here, because it has no numbers for them).
_YES = {
    "yes",
    "ja",
    "oui",
    "sí",
    "si",
    "sì",
    "sim",
    "да",
    "так",
    "はい",
    "是",
    "예",
    "tak",
    "ano",
    "áno",
    "evet",
    "igen",
    "kyllä",
    "on",
    "true",
    "nai",
    "ναι",
    "כן",
    "نعم",
    "ใช่",
    "có",
    "ya",
    "da",
}
_NO = {
    "no",
    "nein",
    "non",
    "não",
    "nao",
    "нет",
    "ні",
    "いいえ",
    "否",
    "아니요",
    "nie",
    "ne",
    "nee",
    "nej",
    "hayır",
    "nem",
    "ei",
    "off",
    "false",
    "όχι",
    "לא",
    "لا",
    "ไม่",
    "không",
    "tidak",
    "nu",
}


def bcd_bool(value: str | None) -> bool | None:
    """A bcdedit boolean value (Yes/No; a few localized forms (unsure)); None when unreadable."""
    if value is None:
        return None
    word = value.strip().split()[0].lower() if value.strip() else ""
    if word in _YES:
        return True
    if word in _NO:
        return False
    return None


@dataclass
class BcdSetResult:
    """What `bcdedit /set ...` did: ok, secure-boot (the value is protected by Secure Boot policy),
    access-denied (not elevated), or error; `message` is its last line."""

    outcome: str
    message: str


# The Secure Boot refusal: its message names the policy; the product name often stays untranslated.
_SECURE_BOOT = re.compile(
    r"secure\s*boot|sicheren\s+start|démarrage\s+sécurisé|arranque\s+seguro|avvio\s+protetto|безопасн\w+\s+загрузк|セキュア\s*ブート|安全启动|보안\s*부팅", re.I
)
_DENIED = re.compile(
    r"access\s+is\s+denied|zugriff\s+verweigert|accès\s+refusé|acceso\s+denegado|accesso\s+negato|отказано\s+в\s+доступе|アクセスが拒否|拒绝访问|액세스가\s*거부",
    re.I,
)


def parse_bcdedit_set(rc: int | None, text: str) -> BcdSetResult:
    """The outcome of `bcdedit /set`: its exit code decides success; the words only say why it failed."""
    lines = [ln.strip() for ln in _lines(text) if ln.strip() and not _PROMPT.match(ln)]
    last = lines[-1] if lines else ""
    if rc == 0:
        return BcdSetResult("ok", last)
    joined = " ".join(lines)
    if _SECURE_BOOT.search(joined):
        return BcdSetResult("secure-boot", last)
    if _DENIED.search(joined):
        return BcdSetResult("access-denied", last)
    return BcdSetResult("error", last)


def find_entry(entries: list[BcdEntry], entry: str = "{current}") -> BcdEntry | None:
    for e in entries:
        if e.identifier and e.identifier.lower() == entry.lower():
            return e
    loaders = [e for e in entries if e.get("osdevice") is not None or e.get("systemroot") is not None]
    if entry.lower() in ("{current}", "{default}") and len(loaders) == 1:
        return loaders[0]  # `bcdedit /enum {current}` shows one loader, sometimes with its GUID (/v)
    if entry.lower() in ("{current}", "{default}") and len(entries) == 1 and entries[0].heading == "" and entries[0].get("testsigning"):
        return entries[0]  # a filtered listing without a heading (`bcdedit | findstr testsigning`)
    return None


def testsigning_enabled(text: str, entry: str = "{current}") -> bool | None:
    """Is TESTSIGNING set in the store for `entry`? None when the entry cannot be found.

    The `testsigning` line is absent when it was never set (= off). This is the
    store's value: it takes effect at the next boot (see start_options_testsigning).
    """
    found = find_entry(parse_bcdedit(text), entry)
    if found is None:
        return None
    value = found.get("testsigning")
    if value is None:
        return False
    return bcd_bool(value)


def start_options_testsigning(start_options: str | None) -> bool | None:
    """Is TESTSIGNING active in the running boot (HKLM\\...\\Control\\SystemStartOptions)?"""
    if start_options is None:
        return None
    return "TESTSIGNING" in start_options.upper().split()
