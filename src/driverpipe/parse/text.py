"""Text as Windows tools and people hand it over: decoding (BOMs, UTF-16LE read as bytes),
line splitting, quoting and prompts, log prefixes. Shared by every parser here."""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Mapping
from typing import Any

_QUOTE_PREFIX = re.compile(r"^\s*//\s?")
# Prompts end a block: `C:\x>`, `PS C:\x>`, `cmd>`, `>`, also markdown-decorated (`` `C:\x>` ``, `**PS C:\>**`, `> C:\x>`).
_PROMPT = re.compile(r"^\s*(?:[`*_]+|>\s)*\s*(?:PS\b[^>]*>|[A-Za-z]:\\[^>]*>|\w+>|>)")


def normalize_text(text: str) -> str:
    """Tool output as text whatever way it was read: BOMs stripped, and UTF-16LE that was read
    as single-byte text (a NUL after every ASCII character) decoded, never a silent empty parse."""
    if text.count("\x00") * 4 >= len(text) > 0:
        try:
            text = text.encode("latin-1").decode("utf-16-le", "replace")
        except UnicodeEncodeError:
            text = text.replace("\x00", "")
    return text.replace("\ufeff", "")


def decode_native(data: bytes, code_page: int) -> str:
    """A console tool's redirected output: UTF-16 when it says so (BOM or a NUL after each ASCII
    character), else the guest's OEM code page (65001 is UTF-8). Never raises."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", "replace")
    if len(data) >= 4 and data.count(b"\x00") * 4 >= len(data):
        return data.decode("utf-16-le", "replace")
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


def _lines(text: str) -> list[str]:
    """Lines without CR and without a '// ' quoting prefix."""
    text = normalize_text(text)
    return [_QUOTE_PREFIX.sub("", line.rstrip("\r")) for line in text.replace("\r\n", "\n").split("\n")]


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
