"""Parsers for Windows tool output: sc.exe and bcdedit.exe, plus sc.exe error diagnosis.

Their text is localized (the word FAILED, the system messages, bcdedit headings),
so we read numbers and layout, never words: the Win32 code before the colon of
`[SC] <Api> FAILED <n>:`, the STATE number, the dashed underline of a bcdedit
heading. Input is tolerated as people paste it: CRLF, prompt lines, blank lines,
"// " quoting, markdown "## " heading artifacts, stray characters after a colon.
Checked against every file in the shared corpus (sc, bcdedit) (tests/unit/test_winparse.py);
not against a live Windows machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# `[SC] StartService FAILED 1275:` / `[SC] EnumQueryServicesStatus:OpenService FAILED 1060:`.
# The failure word is localized (and may be several words): anything without digits.
_SC_FAILED = re.compile(r"\[SC\]\s+([\w:]+?)\s+\D*?(\d+)\s*:")
_SC_SUCCESS = re.compile(r"\[SC\]\s+([\w:]+)\s+(\S+)\s*$")
_QUOTE_PREFIX = re.compile(r"^\s*//\s?")
_PROMPT = re.compile(r"^\s*(?:PS\b[^>]*>|[A-Za-z]:\\[^>]*>|>)")
_FIELD = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*:\s?(.*?)\s*$")
_LEADING_INT = re.compile(r"^\s*(-?\d+)\b\s*(.*)$")


def _lines(text: str) -> list[str]:
    """Lines without CR and without a '// ' quoting prefix."""
    return [_QUOTE_PREFIX.sub("", line.rstrip("\r")) for line in text.replace("\r\n", "\n").split("\n")]


# --------------------------------------------------------------------------------------------
# sc.exe
# --------------------------------------------------------------------------------------------


@dataclass
class ScCall:
    """One `[SC] <Api> ...` status line."""

    api: str
    code: int  # Win32 error; 0 for SUCCESS
    ok: bool


@dataclass
class ScResult:
    """What one sc.exe invocation printed."""

    calls: list[ScCall] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)  # raw field values (SERVICE_NAME, TYPE, STATE, ...)
    message: str = ""  # the (localized) system message after a FAILED line
    service_name: str | None = None
    type: int | None = None
    state: int | None = None
    state_name: str | None = None
    flags: str = ""  # "(STOPPABLE, NOT_PAUSABLE, ...)" continuation of STATE
    win32_exit_code: int | None = None
    service_exit_code: int | None = None
    pid: int | None = None
    start_type: int | None = None
    binary_path: str | None = None

    @property
    def failed(self) -> bool:
        return any(not c.ok for c in self.calls)

    @property
    def code(self) -> int:
        """The first failure's Win32 code, else 0."""
        for call in self.calls:
            if not call.ok:
                return call.code
        return 0

    @property
    def ok(self) -> bool:
        return not self.failed and (bool(self.calls) or self.service_name is not None)


def _int_field(value: str | None) -> tuple[int | None, str]:
    if value is None:
        return None, ""
    m = _LEADING_INT.match(value)
    if not m:
        return None, value.strip()
    return int(m.group(1)), m.group(2).strip()


def parse_sc_output(text: str) -> ScResult:
    """Parse sc.exe output (start/stop/create/config/delete/query/queryex/qc)."""
    result = ScResult()
    last_field: str | None = None
    in_failure = False  # between a FAILED line and the next [SC]/prompt line: the system message
    message: list[str] = []
    for line in _lines(text):
        if _PROMPT.match(line):
            last_field = None
            in_failure = False
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if "[SC]" in stripped:
            in_failure = False
            failed = _SC_FAILED.search(stripped)
            if failed:
                in_failure = not result.failed  # keep the first failure's message only
                result.calls.append(ScCall(failed.group(1), int(failed.group(2)), False))
                continue
            success = _SC_SUCCESS.search(stripped)
            if success:
                result.calls.append(ScCall(success.group(1), 0, True))
            continue
        if in_failure:
            message.append(stripped)
            continue
        m = _FIELD.match(line)
        if m:
            key, value = m.group(1), m.group(2)
            result.fields[key] = value
            last_field = key
            continue
        if last_field == "STATE" and stripped.startswith("("):
            result.flags = stripped
    result.message = " ".join(message)
    f = result.fields
    result.service_name = (f["SERVICE_NAME"].strip() or None) if "SERVICE_NAME" in f else None
    result.type, _ = _int_field(f.get("TYPE"))
    result.state, name = _int_field(f.get("STATE"))
    result.state_name = name.split()[0] if name else None
    result.win32_exit_code, _ = _int_field(f.get("WIN32_EXIT_CODE"))
    result.service_exit_code, _ = _int_field(f.get("SERVICE_EXIT_CODE"))
    result.pid, _ = _int_field(f.get("PID"))
    result.start_type, _ = _int_field(f.get("START_TYPE"))
    if "BINARY_PATH_NAME" in f:
        result.binary_path = f["BINARY_PATH_NAME"].strip() or None
    return result


def sc_code(rc: int | None, text: str) -> int:
    """The Win32 code of an sc.exe run: the `[SC] ... FAILED n:` number, else the exit code."""
    parsed = parse_sc_output(text or "")
    if parsed.failed:
        return parsed.code
    return int(rc or 0)


def normalize_image_path(path: str) -> str:
    r"""An ImagePath as sc.exe shows it (`\??\C:\x.sys`, `\SystemRoot\...`) -> a comparable DOS path."""
    p = path.strip().strip('"')
    for prefix in ("\\??\\", "\\\\?\\"):
        if p.startswith(prefix):
            p = p[len(prefix) :]
    if p.lower().startswith("\\systemroot\\"):
        p = "C:\\Windows\\" + p[len("\\systemroot\\") :]
    elif p.lower().startswith("system32\\"):
        p = "C:\\Windows\\" + p
    return p.replace("/", "\\").lower()


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
    lines = [_HEADING_ARTIFACT.sub("", line) if not line.startswith((" ", "\t")) else line for line in _lines(text)]
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


_YES = {"yes", "ja", "oui", "sí", "si", "sim", "да", "はい", "是", "예", "tak", "ano", "evet", "igen", "kyllä"}
_NO = {"no", "nein", "non", "não", "nao", "нет", "いいえ", "否", "아니요", "nie", "ne", "hayır", "nem", "ei"}


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


def find_entry(entries: list[BcdEntry], entry: str = "{current}") -> BcdEntry | None:
    for e in entries:
        if e.identifier and e.identifier.lower() == entry.lower():
            return e
    loaders = [e for e in entries if e.get("osdevice") is not None or e.get("systemroot") is not None]
    if entry.lower() in ("{current}", "{default}") and len(loaders) == 1:
        return loaders[0]  # `bcdedit /enum {current}` shows one loader, sometimes with its GUID (/v)
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


# --------------------------------------------------------------------------------------------
# sc.exe error diagnosis
# --------------------------------------------------------------------------------------------

_NAMES = {
    2: "ERROR_FILE_NOT_FOUND",
    5: "ERROR_ACCESS_DENIED",
    31: "ERROR_GEN_FAILURE",
    577: "ERROR_INVALID_IMAGE_HASH",
    1052: "ERROR_INVALID_SERVICE_CONTROL",
    1056: "ERROR_SERVICE_ALREADY_RUNNING",
    1058: "ERROR_SERVICE_DISABLED",
    1060: "ERROR_SERVICE_DOES_NOT_EXIST",
    1062: "ERROR_SERVICE_NOT_ACTIVE",
    1072: "ERROR_SERVICE_MARKED_FOR_DELETE",
    1073: "ERROR_SERVICE_EXISTS",
    1275: "ERROR_DRIVER_BLOCKED",
}


def win32_name(code: int) -> str:
    return _NAMES.get(code, f"Win32 error {code}")


def diagnose_sc_error(code: int, *, context: Mapping[str, Any] | None = None) -> str:
    """One sentence: what sc.exe's Win32 `code` means here, the likely cause, and the fix.

    context keys (all optional): op (start/stop/create/config/delete/query), service,
    binpath, failed_line (the driver's `<step> failed` DbgPrint line), hvci (bool),
    testsigning (bool: active in the running boot).
    """
    ctx = dict(context or {})
    op = str(ctx.get("op") or "start")
    svc = str(ctx.get("service") or "the service")
    binpath = str(ctx.get("binpath") or "the driver image")
    head = f"sc {op} {svc} failed with {code} ({win32_name(code)})"
    if code == 2:
        return f"{head}: the driver file {binpath} does not exist on the guest; fix: run `invoke deploy` again to push it, or check deploy.guest_dir"
    if code == 5:
        return (
            f"{head}: access denied, the remote session is not elevated; fix: use an account in the guest's Administrators group "
            "(local accounts: LocalAccountTokenFilterPolicy=1)"
        )
    if code == 31:
        line = str(ctx.get("failed_line") or "").strip()
        what = f"DriverEntry failed: {line}" if line else "DriverEntry returned a failure NTSTATUS (no `<step> failed` line was captured)"
        return (
            f"{head}: {what}; fix: the failing step and its status are in the DbgPrint log (`invoke logs`); "
            "check for a leftover device or a fault-injection FailAtStep value"
        )
    if code == 577:
        why = "TESTSIGNING is not active in the running boot" if ctx.get("testsigning") is False else "the driver is not signed, or TESTSIGNING is off"
        return (
            f"{head}: Windows cannot verify the image's signature ({why}); fix: `invoke sign`, and "
            "`bcdedit /set testsigning on` + reboot (deploy does both on test machines)"
        )
    if code == 1052:
        return f"{head}: the driver cannot be stopped (no DriverUnload routine); fix: reboot the guest to unload it, and set DriverUnload in DriverEntry"
    if code == 1056:
        return f"{head}: an instance is already running (an older build is still loaded); fix: `invoke unload`, then deploy again"
    if code == 1058:
        return f"{head}: the service is disabled or has the wrong start type; fix: sc config {svc} type= kernel start= demand"
    if code == 1060:
        return f"{head}: the service does not exist; fix: `invoke deploy` creates it"
    if code == 1062:
        return f"{head}: the service is not running (nothing to stop)"
    if code == 1072:
        return (
            f"{head}: the service is marked for deletion while a handle is still open (services.msc, an open device handle); "
            "fix: close them, or reboot the guest"
        )
    if code == 1073:
        return f"{head}: the service already exists; fix: update it with sc config instead of sc create (deploy does)"
    if code == 1275:
        why = "HVCI (memory integrity) is on" if ctx.get("hvci") else "TESTSIGNING is off or HVCI (memory integrity) is on"
        return (
            f"{head}: Code Integrity blocked the driver ({why}); fix: turn off Core isolation > Memory integrity "
            "(HKLM\\SYSTEM\\CurrentControlSet\\Control\\DeviceGuard\\Scenarios\\HypervisorEnforcedCodeIntegrity Enabled=0) "
            "and `bcdedit /set testsigning on`, then reboot"
        )
    return f"{head}; fix: run `net helpmsg {code}` on the guest for the system's description"
