"""sc.exe output and its Win32 codes: parsing in any display language, and the diagnoses.

Their text is localized (the word FAILED, the system messages, the field labels),
so we read numbers and layout, never words: the Win32 code before the colon of
`[SC] <Api> FAILED <n>:`, the STATE number and the English value words. Input is tolerated as people paste it: CRLF, prompt lines, blank lines,
"// " quoting, markdown "## " heading artifacts, stray characters after a colon.
Checked against every file in the shared corpus (sc, bcdedit) (tests/unit/test_winparse.py);
not against a live Windows machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .text import _PROMPT, _lines, normalize_text

# `[SC] StartService FAILED 1275:` / `[SC] EnumQueryServicesStatus:OpenService FAILED 1060:` /
# `[SC] StartService: ошибка: 577:`. The failure word is localized (and may be several words): anything without digits.
_SC_FAILED = re.compile(r"\[SC\]\s+(\w+(?::\w+)*)(?:\s*[:：]\s*|\s+)\D*?(\d+)\s*[:：]")  # a CJK full-width colon too
_SC_SUCCESS = re.compile(r"\[SC\]\s+(\w+(?::\w+)*)(?:\s*[:：]\s*|\s+)(\S+)\s*$")
SC_UNREADABLE = -1  # sc_code's answer for output with neither a `[SC]` line nor a service record
# `LABEL : value`; the label may be localized (NOMBRE_SERVICIO, CÓD_SALIDA_WIN32, 服务名称...): any text without a colon.
_FIELD = re.compile(r"^\s*([^\s:][^:]*?)\s*:\s?(.*?)\s*$")
_LEADING_INT = re.compile(r"^\s*(-?\d+)\b\s*(.*)$")

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
    def unknown(self) -> bool:
        """Neither an `[SC]` status line nor a service record: nothing says it worked (fail closed)."""
        return not self.calls and not self.records

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unknown


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
_HEX_TYPE = re.compile(r"^\s*[0-9a-fA-F]+\s+(\S.*)$")


def _shape(value: str) -> str:
    """What sc.exe field a value looks like: "type", "state", "start" or ""."""
    number, word = _int_field(value)
    if number is None:
        hex_type = _HEX_TYPE.match(value)  # sc.exe prints TYPE in hex: `e0  USER_SHARE_PROCESS INSTANCE`
        return "type" if hex_type and _TYPE_WORD.match(hex_type.group(1)) else ""
    word0 = word.split()[0] if word else ""
    if word0 in _STATE_WORDS:
        return "state"
    if word0 in _START_WORDS:
        return "start"
    if not word or _TYPE_WORD.match(word):
        return "type"
    return ""


def _is_type_line(fields: list[tuple[str, str]], i: int) -> bool:
    """A record is told by its shape: a TYPE-shaped value directly followed by a STATE-shaped (query)
    or START_TYPE-shaped (qc) one, as sc.exe prints them."""
    if i + 1 >= len(fields) or _shape(fields[i + 1][1]) not in ("state", "start"):
        return False
    return fields[i][0].strip().upper() == "TYPE" or _shape(fields[i][1]) == "type"


_NAME_LABEL = re.compile(r"^[^\W\d]\w+$")  # SERVICE_NAME, NOMBRE_SERVICIO, 服务名称: one word (not a drive letter)


def _names(before: list[tuple[str, str]]) -> dict[str, str]:
    """SERVICE_NAME (and DISPLAY_NAME) from the one or two lines before a record's TYPE line. Other colon
    lines (`ERROR: ...`, `Run command line: ...`, a `C:\\...` path) are noise, never the name."""
    cands = [(label.strip(), value) for label, value in before[-2:] if _NAME_LABEL.match(label.strip())]
    english = {label.upper(): value for label, value in cands if label.upper() in ("SERVICE_NAME", "DISPLAY_NAME")}
    if "SERVICE_NAME" in english:
        return english
    cands = [c for c in cands if c[0].upper() not in ("ERROR", "WARNING", "INFO", "DISPLAY_NAME")]
    if len(cands) == 2 and re.search(r"\s", cands[0][1].strip()) and not re.search(r"\s", cands[1][1].strip()):
        cands = cands[1:]  # noise with a sentence for a value, then the name
    out = {"SERVICE_NAME": cands[0][1]} if cands else {}
    if len(cands) == 2:
        out["DISPLAY_NAME"] = cands[1][1]
    return out


def _canonical(fields: list[tuple[str, str]]) -> dict[str, str]:
    """A record's fields from its TYPE line on, under their English names: by label when English, else by
    the value's shape and the fixed order sc.exe prints them in (query: type, state, exit codes, checkpoint,
    wait hint, pid, flags; qc: type, start type, error control, binary path, ...)."""
    out: dict[str, str] = {}
    exits = ("WIN32_EXIT_CODE", "SERVICE_EXIT_CODE")
    hexes = ("CHECKPOINT", "WAIT_HINT")
    for i, (label, value) in enumerate(fields):
        upper = label.strip().upper()
        if upper in ENGLISH_FIELDS:
            out.setdefault(upper, value)
            continue
        number, word = _int_field(value)
        shape = _shape(value)
        if i == 0:
            out.setdefault("TYPE", value)
        elif shape == "state":
            out.setdefault("STATE", value)
        elif shape == "start":
            out.setdefault("START_TYPE", value)
        elif number is not None and (word.split() or [""])[0] in _ERROR_WORDS:
            out.setdefault("ERROR_CONTROL", value)
        elif _EXIT_VALUE.match(value):
            out.setdefault(next((k for k in exits if k not in out), "SERVICE_EXIT_CODE"), value)
        elif _HEX_VALUE.match(value.strip()):
            out.setdefault(next((k for k in hexes if k not in out), "WAIT_HINT"), value)
        elif "WAIT_HINT" in out and number is not None and not word and "PID" not in out:
            out.setdefault("PID", value)
        elif "ERROR_CONTROL" in out and "BINARY_PATH_NAME" not in out:
            out["BINARY_PATH_NAME"] = value
    return out


@dataclass
class ScRecord:
    """One service's block in sc.exe output (a `sc query` without a name lists many)."""

    fields: dict[str, str]  # under English names, whatever language the labels were in
    flags: str = ""


def _records(block: list[tuple[str, str, str]]) -> list[ScRecord]:
    """The service records in one run of colon lines (label, value, the STATE's `(...)` continuation)."""
    pairs = [(label, value) for label, value, _ in block]
    starts = [i for i in range(len(pairs)) if _is_type_line(pairs, i)]
    out = []
    for n, t in enumerate(starts):
        end = len(pairs)
        if n + 1 < len(starts):  # the next record's name lines belong to it
            nxt = starts[n + 1]
            end = nxt - len(_names(pairs[max(t + 1, nxt - 2) : nxt]))
        fields = {**_names(pairs[max(0, t - 2) : t]), **_canonical(pairs[t:end])}
        out.append(ScRecord(fields, next((f for _, _, f in block[t:end] if f), "")))
    return out


def parse_sc_output(text: str | bytes, service: str | None = None) -> ScResult:
    """Parse sc.exe output (start/stop/create/config/delete/query/queryex/qc), in any display language.

    With several service records (a `sc query` listing), the one named `service` is chosen (without a
    name, the first record's service); when that service has several records (a transcript of `sc start`
    then `sc query`), the last is its current state. Every record is kept in `records`.
    """
    result = ScResult()
    in_failure = False  # between a FAILED line and the end of its paragraph: the system message
    message: list[str] = []
    blocks: list[list[tuple[str, str, str]]] = []
    block: list[tuple[str, str, str]] | None = None
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
            if success and success.group(2).upper() not in ("FAILED", "ERROR"):  # a FAILED line cut before its code is no success
                result.calls.append(ScCall(success.group(1), 0, True))
            continue
        if in_failure:
            message.append(stripped)
            continue
        if stripped.startswith("(") and block:
            label, value, _ = block[-1]
            block[-1] = (label, value, stripped)  # the STATE line's (STOPPABLE, ...) continuation
            continue
        m = _FIELD.match(line)
        if m:
            if block is None:
                block = []
                blocks.append(block)
            block.append((m.group(1), m.group(2), ""))
    result.message = " ".join(message)
    result.records = [record for b in blocks for record in _records(b)]
    want = (service or "").strip().lower()
    if not want and result.records:
        want = result.records[0].fields.get("SERVICE_NAME", "").strip().lower()
    named = [r for r in result.records if want and r.fields.get("SERVICE_NAME", "").strip().lower() == want]
    chosen = named[-1] if named else None
    if chosen is None and len(result.records) == 1:
        chosen = result.records[0]  # one record whose name line was cut off, or differs from the command's name
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
    """The Win32 code of an sc.exe run: the `[SC] ... FAILED n:` number, else a nonzero exit code,
    else SC_UNREADABLE when the output shows neither a status line nor a service record (fail closed)."""
    parsed = parse_sc_output(text or "")
    if parsed.failed:
        return parsed.code
    if rc:
        return int(rc)
    return SC_UNREADABLE if parsed.unknown else 0


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
    testsigning (bool: active in the running boot), output (sc.exe's text, shown when unreadable).
    """
    ctx = dict(context or {})
    op = str(ctx.get("op") or "start")
    svc = str(ctx.get("service") or "the service")
    binpath = str(ctx.get("binpath") or "the driver image")
    if code == SC_UNREADABLE:
        raw = " | ".join(ln.strip() for ln in normalize_text(str(ctx.get("output") or "")).splitlines() if ln.strip())
        return (
            f"sc {op} {svc}: its output has neither an [SC] status line nor a service record, so it is not taken as success "
            f"(output: {raw[:400] or 'empty'!r}); fix: run `sc {op} {svc}` on the guest and check what it prints"
        )
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
