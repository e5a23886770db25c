"""Bind parameters to a shipped script for `powershell.exe -EncodedCommand` (SSH and local transports).

No user value is ever formatted into PowerShell code. The wrapper is one FIXED
text whose only variable part is a single literal made of base64 characters
([A-Za-z0-9+/=] and the '.' separator), so no quoting or injection is possible:
the literal carries base64(UTF-8 script text) '.' base64(UTF-8 JSON params).
The wrapper decodes both, turns the JSON object into a hashtable and splats it
into `[scriptblock]::Create($text)`, exactly like Invoke-Batch.ps1 does.

Command-line length: CreateProcess allows 32767 characters, but Windows' OpenSSH
server hands the command to the default shell (cmd.exe: 8191). When the command
would exceed the transport's limit, the payload goes through the channel's stdin
instead and the wrapper reads it with `$input | Out-String` (the way Ansible's
Windows bootstrap does). One round trip either way; no temp file on the guest.

Output protocol of the wrapper: every object the script outputs is written as
UTF-8 text lines to stdout (bypassing the console encoding); a terminating error
writes `driverpipe-error: <message>` to stderr and exits 1. Python reads the LAST
JSON document from stdout (parse_last_json).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.scripts import unwrap_51_arrays

#: Marker of the wrapper's own error line on stderr.
ERROR_MARKER = "driverpipe-error: "
#: The wrapper's first stderr line: its process id, so a caller whose script hung can end it
#: (and what it started) from a second session: closing an SSH channel does not.
PID_MARKER = "driverpipe-pid: "

#: cmd.exe's limit (Windows OpenSSH runs the command through the default shell), with margin.
SSH_MAX_COMMAND = 8000
#: CreateProcess's limit (32767) with margin, for a local powershell.exe.
LOCAL_MAX_COMMAND = 32000

_PAYLOAD_SLOT = "@@PAYLOAD@@"
_INLINE = "$dpPayload = '" + _PAYLOAD_SLOT + "'"
# `$input` at the top level of -EncodedCommand enumerates stdin lines.
_FROM_STDIN = "$dpPayload = [string]($input | Out-String)"

# The fixed wrapper. Only the first line differs between inline and stdin mode.
# Names are prefixed with dp so they cannot collide with the script's own variables.
_TEMPLATE = """@@LINE1@@
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$dpUtf8 = New-Object System.Text.UTF8Encoding $false
$dpOut = [Console]::OpenStandardOutput()
$dpErr = [Console]::OpenStandardError()
function Write-DpLine([IO.Stream]$Stream, [string]$Text) {
    $bytes = $dpUtf8.GetBytes($Text + "`n")
    $Stream.Write($bytes, 0, $bytes.Length)
    $Stream.Flush()
}
Write-DpLine $dpErr ('driverpipe-pid: ' + $PID)
$dpParts = $dpPayload.Trim().Split('.')
$dpText = $dpUtf8.GetString([Convert]::FromBase64String($dpParts[0]))
$dpJson = $dpUtf8.GetString([Convert]::FromBase64String($dpParts[1]))
$dpParams = @{}
$dpObj = ConvertFrom-Json -InputObject $dpJson
if ($null -ne $dpObj) {
    foreach ($dpP in $dpObj.PSObject.Properties) { $dpParams[$dpP.Name] = $dpP.Value }
}
try {
    & ([scriptblock]::Create($dpText)) @dpParams | ForEach-Object {
        if ($_ -is [string]) { Write-DpLine $dpOut $_ } else { Write-DpLine $dpOut (($_ | Out-String).TrimEnd()) }
    }
} catch {
    $dpMsg = [string]$_.Exception.Message
    Write-DpLine $dpErr ('driverpipe-error: ' + ($dpMsg -split "`r?`n")[0])
    exit 1
}
exit 0
"""

assert ERROR_MARKER in _TEMPLATE and PID_MARKER in _TEMPLATE

_B64 = re.compile(r"^[A-Za-z0-9+/=]*$")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def params_json(params: Mapping[str, Any] | None) -> str:
    """The parameters as the JSON object the wrappers splat (Path-like values as text)."""
    return json.dumps(dict(params or {}), separators=(",", ":"), default=_json_default)


def payload(script_text: str, params: Mapping[str, Any] | None) -> str:
    """base64(script) '.' base64(json params): the only variable part of the wrapper."""
    return _b64(script_text.encode("utf-8")) + "." + _b64(params_json(params).encode("utf-8"))


def _json_default(value: Any) -> Any:
    # Paths and similar objects are bound as their text; bytes are not a valid parameter.
    if isinstance(value, bytes | bytearray):
        raise TypeError("bytes cannot be bound as a script parameter; pass base64 text")
    return str(value)


def build_wrapper(script_text: str, params: Mapping[str, Any] | None, *, stdin: bool = False) -> str:
    """The wrapper's text. With stdin=True the payload is NOT in it (send payload() on stdin)."""
    if stdin:
        return _TEMPLATE.replace("@@LINE1@@", _FROM_STDIN, 1)
    return _TEMPLATE.replace("@@LINE1@@", _INLINE, 1).replace(_PAYLOAD_SLOT, payload(script_text, params), 1)


def encode_command(wrapper: str) -> str:
    """-EncodedCommand value: base64 of the UTF-16LE text."""
    return _b64(wrapper.encode("utf-16-le"))


@dataclass
class Invocation:
    """What to run: argv (or a command line for SSH) and, in stdin mode, the bytes to send."""

    argv: list[str]
    stdin: bytes | None  # None: everything is on the command line

    def command_line(self) -> str:
        """One line for an SSH exec request (cmd.exe on Windows, sh on the test sshd)."""
        return " ".join(_quote_exe(a) if i == 0 else a for i, a in enumerate(self.argv))


def _quote_exe(path: str) -> str:
    # Double quotes work for both cmd.exe and POSIX sh; base64 arguments never need quoting.
    return f'"{path}"' if any(c in path for c in " \t&()^") else path


def build_invocation(powershell: str, script_text: str, params: Mapping[str, Any] | None, *, max_command: int = SSH_MAX_COMMAND) -> Invocation:
    """powershell -NoProfile -NonInteractive -EncodedCommand <wrapper>, inline or with the payload on stdin."""
    head = [powershell, "-NoProfile", "-NonInteractive", "-EncodedCommand"]
    inline = encode_command(build_wrapper(script_text, params))
    if len(" ".join(head)) + 1 + len(inline) <= max_command:
        return Invocation([*head, inline], None)
    data = (payload(script_text, params) + "\n").encode("ascii")
    return Invocation([*head, encode_command(build_wrapper(script_text, params, stdin=True))], data)


# ---------------------------------------------------------------------------
# Reading results
# ---------------------------------------------------------------------------


class NoJsonResult(ValueError):
    """The script's output held no JSON document."""


def parse_last_json(stdout: str) -> Any:
    """The last line of stdout that is a JSON object/array (scripts may print other lines before)."""
    for line in reversed(stdout.splitlines()):
        text = line.strip()
        if text.startswith(("{", "[")) or text == "null":
            try:
                return unwrap_51_arrays(json.loads(text))
            except json.JSONDecodeError:
                continue
    raise NoJsonResult("the script printed no JSON result")


_CLIXML_ERROR = re.compile(r'<S S="Error">(.*?)</S>', re.S)


def _unclixml(text: str) -> str:
    # powershell.exe serialises its error stream as CLIXML when stderr is redirected.
    parts = [m.group(1) for m in _CLIXML_ERROR.finditer(text)]
    joined = "".join(parts)
    joined = re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), joined)
    for a, b in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        joined = joined.replace(a, b)
    return joined


def script_result(script: str, where: str, rc: int, out: str, err: str) -> Any:
    """What a wrapped script run returned (SSH and local share this): its JSON, or GuestScriptError."""
    from .base import GuestScriptError

    if rc != 0:
        detail = error_line(err) or (out.strip().splitlines() or [""])[-1]
        raise GuestScriptError(f"{script} failed on {where} (exit code {rc})" + (f": {detail}" if detail else ""))
    try:
        return parse_last_json(out)
    except NoJsonResult:
        detail = error_line(err)
        raise GuestScriptError(f"{script} printed no JSON result on {where}" + (f": {detail}" if detail else "")) from None


def error_line(stderr: str) -> str:
    """The guest's error message in one line: our marker line, else the first meaningful stderr line."""
    stderr = "\n".join(line for line in stderr.splitlines() if not line.startswith(PID_MARKER))
    for line in stderr.splitlines():
        # Anywhere in the line: a `#< CLIXML` record without a newline may stand before it.
        at = line.find(ERROR_MARKER)
        if at >= 0:
            return line[at + len(ERROR_MARKER) :].strip()
    text = _unclixml(stderr) if stderr.lstrip().startswith("#< CLIXML") else stderr
    for line in text.splitlines():
        if line.strip() and not line.startswith("#< CLIXML"):
            return line.strip()
    return ""


def wrapper_pid(stderr: str) -> int | None:
    """The process id the wrapper announced on stderr (None before it did)."""
    for line in stderr.splitlines():
        if line.startswith(PID_MARKER):
            value = line[len(PID_MARKER) :].strip()
            return int(value) if value.isdigit() and 0 < int(value) < 2**32 else None
    return None


# ---------------------------------------------------------------------------
# The inverse, for fakes at the PowerShell boundary and for tests
# ---------------------------------------------------------------------------


def decode_command(encoded: str) -> str:
    return base64.b64decode(encoded, validate=True).decode("utf-16-le")


def parse_wrapper(wrapper: str, stdin_text: str | None = None) -> tuple[str, dict[str, Any]]:
    """Check `wrapper` is exactly our fixed wrapper; return (script text, params).

    Raises ValueError for anything else: a fake powershell uses this to refuse
    commands that did not come from build_invocation.
    """
    if wrapper == build_wrapper("", None, stdin=True):
        if stdin_text is None:
            raise ValueError("stdin-mode wrapper but no payload on stdin")
        literal = stdin_text.strip()
    else:
        head, sep, rest = wrapper.partition("\n")
        if not (head.startswith("$dpPayload = '") and head.endswith("'") and sep):
            raise ValueError("not a driverpipe wrapper (first line)")
        literal = head[len("$dpPayload = '") : -1]
        if sep + rest != _TEMPLATE.replace("@@LINE1@@", "", 1):
            raise ValueError("not a driverpipe wrapper (body differs from the fixed template)")
    script_b64, dot, params_b64 = literal.partition(".")
    if not dot or not _B64.match(script_b64) or not _B64.match(params_b64):
        raise ValueError("payload is not base64.base64")
    script = base64.b64decode(script_b64, validate=True).decode("utf-8")
    params = json.loads(base64.b64decode(params_b64, validate=True).decode("utf-8"))
    if not isinstance(params, dict):
        raise ValueError("params payload is not a JSON object")
    return script, params


# ---------------------------------------------------------------------------
# Small helpers shared by the transports' push (kept here: no transport imports another)
# ---------------------------------------------------------------------------


def sha256_file(path: Any, block: int = 1 << 20) -> tuple[str, int]:
    """(hex sha256, size) of a local file."""
    import hashlib

    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def partial_name(remote: str) -> str:
    """`<dest>.partial-<random>`: same folder (so the final rename stays on one volume)."""
    import secrets

    return f"{remote}.partial-{secrets.token_hex(4)}"
