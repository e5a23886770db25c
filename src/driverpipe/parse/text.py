"""Text as Windows tools and people hand it over: decoding (BOMs, UTF-16LE read as bytes),
line splitting, quoting and prompts, log prefixes. Shared by every parser here."""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

_QUOTE_PREFIX = re.compile(r"^\s*//\s?")
# Prompts end a block: `C:\x>`, `PS C:\x>`, `cmd>`, `>`, also markdown-decorated (`` `C:\x>` ``, `**PS C:\>**`, `> C:\x>`)
# and redacted (`***:\Users\**\x>`: the drive letter starred out).
_PROMPT = re.compile(r"^\s*(?:[`*_]+|>\s)*\s*(?:PS\b[^>]*>|(?:[A-Za-z]|\*+)?:\\[^>]*>|\w+>|>)")
# Markdown emphasis and code marks around or after a message (`**[SC] ... FAILED 5:**`, "text.****", "`x`").
_MD_LEAD = re.compile(r"^(\s*)(?:\*+|`+)+(?=\S)")
_MD_TAIL = re.compile(r"(?:\*{2,}|`+)+\s*$")
_MD_ONLY = re.compile(r"^\s*[*`]+\s*$")  # a line of marks only (what a bold blank line leaves)
_MD_BOLD = re.compile(r"\*{2,}(?=\S)|(?<=\S)\*{2,}")  # `**Label:** value` inside a line (backticks inside are kept: kd addresses use them)


def _single_bytes(text: str) -> bytes | None:
    """The bytes a single-byte reading (latin-1, cp1252, or a common OEM code page) turned into `text`, or None."""
    for codec in ("latin-1", "cp1252", "cp437", "cp850", "cp866"):
        try:
            return text.encode(codec)
        except UnicodeEncodeError:
            continue
    return None


def utf16_body(data: bytes) -> bytes | None:
    """`data` (without its BOM) when it is UTF-16LE text, else None. Told by the pattern, not by a share of
    ASCII (a Russian or Japanese message has few ASCII characters): the single-byte reading has NULs, and the
    UTF-16LE reading is clean (no control, unassigned or private-use characters) and has spaces or line ends,
    whose NUL high bytes sit at odd offsets whatever the language."""
    body = data[2:] if data[:2] == b"\xff\xfe" else data
    body = body[: len(body) // 2 * 2]
    if len(body) < 4 or 0 not in body:
        return None
    try:
        decoded = body.decode("utf-16-le")
    except UnicodeDecodeError:
        return None
    if not any(c in decoded for c in " \n\t"):
        return None
    if any((ord(c) < 32 and c not in "\t\r\n\f") or unicodedata.category(c) in ("Cn", "Co", "Cs") for c in decoded):
        return None
    return body


def normalize_text(text: str | bytes) -> str:
    """Tool output as text whatever way it was read: BOMs stripped, and UTF-16LE that was read as
    single-byte text decoded (whatever its language), never a silent empty parse. Bytes are read as UTF-8
    unless they are UTF-16."""
    if isinstance(text, bytes | bytearray):
        return decode_native(bytes(text), 65001)
    if "\x00" in text:
        data = _single_bytes(text)
        body = utf16_body(data) if data is not None else None
        if body is not None:
            text = body.decode("utf-16-le")
        elif data is not None and text.count("\x00") * 4 >= len(text):
            text = data.decode("utf-16-le", "replace")  # mostly ASCII with a damaged byte: still UTF-16
        else:
            text = text.replace("\x00", "")
    text = text.replace("\ufeff", "")
    return text[3:] if text.startswith("\u00ef\u00bb\u00bf") else text  # a UTF-8 BOM read as single bytes


def decode_native(data: bytes, code_page: int) -> str:
    """A console tool's redirected output: UTF-16 when it says so (a BOM) or looks so (utf16_body),
    else the guest's OEM code page (65001 is UTF-8). Never raises."""
    if data[:2] == b"\xfe\xff":
        return data.decode("utf-16", "replace")
    body = utf16_body(data)
    if body is not None:
        return body.decode("utf-16-le").replace("\ufeff", "")
    if data[:2] == b"\xff\xfe":
        return data[2:].decode("utf-16-le", "replace")
    codec = "utf-8" if code_page == 65001 else f"cp{code_page}"
    try:
        codecs.lookup(codec)
    except LookupError:
        codec = "utf-8"
    return data.decode(codec, "replace").replace("\ufeff", "")


def native_text(result: Any) -> str:
    """The text of a guest's Invoke-Native result ({rc, output, outputB64, codePage}): decoded
    here from the raw bytes when the guest sent them (Windows PowerShell 5.1 decodes native
    output with whatever [Console]::OutputEncoding a remote session has), else its `output`.
    A plain string (an older guest script) is returned as it is."""
    if isinstance(result, str):
        return result
    if not isinstance(result, Mapping):
        return ""
    raw = result.get("outputB64")
    code_page = result.get("codePage")
    if isinstance(raw, str) and isinstance(code_page, int) and not isinstance(code_page, bool) and code_page > 0:
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            data = None
        if data is not None:
            return decode_native(data, code_page).rstrip("\r\n")
    return str(result.get("output") or "")


def _lines(text: str | bytes) -> list[str]:
    """Lines through the shared decoding: no CR, no '// ' quoting prefix, no markdown emphasis around
    them, no log prefix (when most lines carry one)."""
    text = normalize_text(text)
    # `\r\r\n` (text mode written twice) is one line end, not a blank line. Decorations before a quote or
    # log prefix (`**// x**`, `**2024-... | x**`) and after it (`... | **[SC] ...**`) both go.
    lines = [_QUOTE_PREFIX.sub("", _MD_LEAD.sub(r"\1", line.rstrip("\r"))) for line in text.split("\n")]
    return [_MD_BOLD.sub("", _MD_TAIL.sub("", _MD_LEAD.sub(r"\1", _MD_ONLY.sub("", line)))) for line in _strip_log_prefix(lines)]


def plain_text(text: str | bytes) -> str:
    """The whole text through the shared decoding (_lines), joined with LF: for parsers that cut at labels."""
    return "\n".join(_lines(text))


# A log or CI prefix before each line: `2024-05-01 12:00:00.123 `, `2024-05-01 12:00:00 | pid 42 | `, `[12:00:00] `,
# `INFO: `, `[+] `, `##[debug]`.
_LOG_PREFIX = re.compile(
    r"^(?:\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?(?:\s*\|(?:\s*[\w.-]+(?:\s+[\w.-]+)?\s*\|)*\s*|\s+)"
    r"|\[\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\]\s*|(?:INFO|DEBUG|WARN(?:ING)?|ERROR|TRACE)\s*[:|-]\s*|\[[+*!-]\]\s|##\[\w+\])"
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
