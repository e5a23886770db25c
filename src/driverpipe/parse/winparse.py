"""Parsers for Windows tool output: sc.exe, bcdedit.exe, verifier.exe, pnputil.exe, plus sc.exe error diagnosis.

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
# Prompts end a block: `C:\x>`, `PS C:\x>`, `cmd>`, `>`, also markdown-decorated (`` `C:\x>` ``, `**PS C:\>**`, `> C:\x>`).
_PROMPT = re.compile(r"^\s*(?:[`*_]+|>\s)*\s*(?:PS\b[^>]*>|[A-Za-z]:\\[^>]*>|\w+>|>)")
# `LABEL : value`; the label may be localized (NOMBRE_SERVICIO, CÓD_SALIDA_WIN32, 服务名称...): any text without a colon.
_FIELD = re.compile(r"^\s*([^\s:][^:]*?)\s*:\s?(.*?)\s*$")
_LEADING_INT = re.compile(r"^\s*(-?\d+)\b\s*(.*)$")


def normalize_text(text: str) -> str:
    """Tool output as text whatever way it was read: BOMs stripped, and UTF-16LE that was read
    as single-byte text (a NUL after every ASCII character) decoded, never a silent empty parse."""
    if text.count("\x00") * 4 >= len(text) > 0:
        try:
            text = text.encode("latin-1").decode("utf-16-le", "replace")
        except UnicodeEncodeError:
            text = text.replace("\x00", "")
    return text.replace("\ufeff", "")


def _lines(text: str) -> list[str]:
    """Lines without CR and without a '// ' quoting prefix."""
    text = normalize_text(text)
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
    records: list[ScRecord] = field(default_factory=list)  # every service block, in order

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


ENGLISH_FIELDS = (
    "SERVICE_NAME", "DISPLAY_NAME", "TYPE", "STATE", "WIN32_EXIT_CODE", "SERVICE_EXIT_CODE", "CHECKPOINT", "WAIT_HINT", "PID", "FLAGS",
    "START_TYPE", "ERROR_CONTROL", "BINARY_PATH_NAME", "LOAD_ORDER_GROUP", "TAG", "DEPENDENCIES", "SERVICE_START_NAME",
)  # fmt: skip
# The value words stay English in every display language: they identify a field whose label is localized.
_STATE_WORDS = {"STOPPED", "START_PENDING", "STOP_PENDING", "RUNNING", "CONTINUE_PENDING", "PAUSE_PENDING", "PAUSED"}
_START_WORDS = {"BOOT_START", "SYSTEM_START", "AUTO_START", "DEMAND_START", "DISABLED"}
_ERROR_WORDS = {"IGNORE", "NORMAL", "SEVERE", "CRITICAL"}
_TYPE_WORD = re.compile(r"^(?:KERNEL_DRIVER|FILE_SYSTEM_DRIVER|WIN32\w*|USER_\w+|INTERACTIVE\w*|ADAPTER|RECOGNIZER_DRIVER)\b")
_EXIT_VALUE = re.compile(r"^-?\d+\s+\(0x[0-9a-fA-F]+\)")
_HEX_VALUE = re.compile(r"^0x[0-9a-fA-F]+$")


def _canonical(fields: list[tuple[str, str]]) -> dict[str, str]:
    """A record's fields under their English names: by label when English, else by the value's shape
    and the fixed order sc.exe prints them in (query: name, type, state, exit codes, checkpoint, wait hint,
    pid, flags; qc: name, type, start type, error control, binary path, ...)."""
    out: dict[str, str] = {}
    exits = ("WIN32_EXIT_CODE", "SERVICE_EXIT_CODE")
    hexes = ("CHECKPOINT", "WAIT_HINT")
    for i, (label, value) in enumerate(fields):
        upper = label.strip().upper()
        if upper in ENGLISH_FIELDS:
            out.setdefault(upper, value)
            continue
        number, word = _int_field(value)
        word0 = word.split()[0] if word else ""
        if i == 0:
            out.setdefault("SERVICE_NAME", value)
        elif number is not None and word0 in _STATE_WORDS:
            out.setdefault("STATE", value)
        elif number is not None and word0 in _START_WORDS:
            out.setdefault("START_TYPE", value)
        elif number is not None and word0 in _ERROR_WORDS:
            out.setdefault("ERROR_CONTROL", value)
        elif number is not None and (_TYPE_WORD.match(word) or (not word and "TYPE" not in out and "STATE" not in out)):
            out.setdefault("TYPE", value)
        elif _EXIT_VALUE.match(value):
            out.setdefault(next((k for k in exits if k not in out), "SERVICE_EXIT_CODE"), value)
        elif _HEX_VALUE.match(value.strip()):
            out.setdefault(next((k for k in hexes if k not in out), "WAIT_HINT"), value)
        elif "WAIT_HINT" in out and number is not None and not word and "PID" not in out:
            out.setdefault("PID", value)
        elif "ERROR_CONTROL" in out and "BINARY_PATH_NAME" not in out:
            out["BINARY_PATH_NAME"] = value
        elif i == 1 and "TYPE" not in out:
            out.setdefault("DISPLAY_NAME", value)
    return out


@dataclass
class ScRecord:
    """One service's block in sc.exe output (a `sc query` without a name lists many)."""

    fields: dict[str, str]  # under English names, whatever language the labels were in
    flags: str = ""


def parse_sc_output(text: str, service: str | None = None) -> ScResult:
    """Parse sc.exe output (start/stop/create/config/delete/query/queryex/qc), in any display language.

    With several service records (a `sc query` listing), the one named `service` is chosen
    (the first one without a name); every record is kept in `records`.
    """
    result = ScResult()
    in_failure = False  # between a FAILED line and the end of its paragraph: the system message
    message: list[str] = []
    blocks: list[list[tuple[str, str]]] = []
    flags: list[str] = []
    block: list[tuple[str, str]] | None = None
    last_label: str | None = None
    for line in _lines(text):
        if _PROMPT.match(line):
            in_failure, block = False, None
            continue
        stripped = line.strip()
        if not stripped:
            block = None
            if in_failure and message:  # the system message is one paragraph, after a blank line
                in_failure = False
            continue
        if "[SC]" in stripped:
            in_failure, block = False, None
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
        if stripped.startswith("(") and block is not None:
            if last_label is not None and len(flags) == len(blocks):
                flags[-1] = stripped  # the STATE line's (STOPPABLE, ...) continuation
            continue
        m = _FIELD.match(line)
        if m:
            if block is None:
                block = []
                blocks.append(block)
                flags.append("")
            block.append((m.group(1), m.group(2)))
            last_label = m.group(1)
    result.message = " ".join(message)
    result.records = [ScRecord(_canonical(b), flags[i]) for i, b in enumerate(blocks)]
    chosen = next((r for r in result.records if service and r.fields.get("SERVICE_NAME", "").strip().lower() == service.lower()), None)
    if chosen is None and result.records and not service:
        chosen = result.records[0]
    if chosen is None and len(result.records) == 1:
        chosen = result.records[0]  # one record whose name line was cut off or differs in case/spacing
    if chosen is None:
        return result
    f = chosen.fields
    result.fields = dict(f)
    result.flags = chosen.flags
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


# A log or CI prefix before each line: `2024-05-01 12:00:00.123 `, `[12:00:00] `, `INFO: `, `[+] `, `##[debug]`.
_LOG_PREFIX = re.compile(
    r"^(?:\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\s+|\[\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\]\s*"
    r"|(?:INFO|DEBUG|WARN(?:ING)?|ERROR|TRACE)\s*[:|-]\s*|\[[+*!-]\]\s|##\[\w+\])"
)


def _strip_log_prefix(lines: list[str]) -> list[str]:
    """Remove a log prefix only when most non-blank lines carry one (a real bcdedit line never does)."""
    body = [ln for ln in lines if ln.strip()]
    prefixed = [ln for ln in body if _LOG_PREFIX.match(ln)]
    if not body or len(prefixed) * 2 < len(body):
        return lines
    out = []
    for line in lines:
        m = _LOG_PREFIX.match(line)
        out.append(line[m.end() :] if m else line)
    return out


def parse_bcdedit(text: str) -> list[BcdEntry]:
    """Sections of `bcdedit` / `bcdedit /enum ...` output, found by the dashed underline of each heading."""
    raw = _strip_log_prefix(_lines(text))
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
    lines = [ln.strip() for ln in _strip_log_prefix(_lines(text)) if ln.strip() and not _PROMPT.match(ln)]
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
    3: "ERROR_PATH_NOT_FOUND",
    50: "ERROR_NOT_SUPPORTED",
    87: "ERROR_INVALID_PARAMETER",
    123: "ERROR_INVALID_NAME",
    193: "ERROR_BAD_EXE_FORMAT",
    216: "ERROR_EXE_MACHINE_TYPE_MISMATCH",
    225: "ERROR_VIRUS_INFECTED",
    1450: "ERROR_NO_SYSTEM_RESOURCES",
    4551: "ERROR_SYSTEM_INTEGRITY_POLICY_VIOLATION",
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
    more = _MORE_DIAGNOSES.get(code)
    if more is not None:
        return f"{head}: {more.format(svc=svc, binpath=binpath)}"
    return f"{head}; fix: run `net helpmsg {code}` on the guest for the system's description"


# Meaning, the likely cause for a driver, and the fix, for the codes drivers hit beyond the ones above.
_MORE_DIAGNOSES = {
    3: "a folder on the image path does not exist ({binpath}); fix: run `invoke deploy` again (it creates deploy.guest_dir), check the ImagePath",
    50: "the request is not supported: usually sc.exe asked to pause/continue a driver, or a KMDF driver on a Windows without that KMDF version; "
    "fix: stop/start only, and match target-kmdf-version-minor to the guest's Windows",
    87: "a parameter was refused: often a malformed `type= kernel start= demand` (the space after '=' matters) or a bad binPath; "
    "fix: deploy creates the service itself; delete it (`invoke unload --delete`) and deploy again",
    123: "the image path is not a valid name ({binpath}): quotes or a relative path in ImagePath; fix: an absolute path, as deploy sets it",
    193: "{binpath} is not a valid image for this Windows: a user-mode DLL, a truncated copy, or a 32-bit build; "
    "fix: rebuild (`invoke build`: it checks subsystem NATIVE and the machine), then deploy",
    216: "the image was built for another CPU architecture (e.g. ARM64 on an x64 guest); fix: build for the guest's architecture (build.arch)",
    225: "Windows Defender (or another antivirus) quarantined {binpath}; fix: add an exclusion for deploy.guest_dir on the test VM, then deploy again",
    1450: "not enough kernel resources (pool) to load the driver: often leaked by earlier loads of a leaky build; fix: reboot the guest, then look for leaks",
    4551: "an Application Control (WDAC) policy blocks the driver; "
    "fix: allow test-signed drivers in the policy on the test VM, or remove the policy, then reboot",
}


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
    for line in _strip_log_prefix(_lines(text)):
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
