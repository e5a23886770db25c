"""Bugcheck evidence: the code and four parameters, from Event 1001's message (any display language:
only the numbers are read) or a kernel debugger's `BugCheck 9F, {3, ...}` line. Through the shared decoding."""

from __future__ import annotations

import re

from .text import plain_text

# Event 1001 (`The bugcheck was: 0x0000009f (0x..., 0x..., 0x..., 0x...)`), the same numbers in every language.
_EVENT = re.compile(r"0x([0-9a-fA-F]{8})\s*\(\s*(0x[0-9a-fA-F`]+)\s*,\s*(0x[0-9a-fA-F`]+)\s*,\s*(0x[0-9a-fA-F`]+)\s*,\s*(0x[0-9a-fA-F`]+)\s*\)")
# kd / !analyze: `BugCheck D1, {0, 2, 0, fffff801`6b1c1234}`.
_KD = re.compile(r"\bBugCheck\s+([0-9a-fA-F]{1,8})\s*,\s*\{\s*([0-9a-fA-F`]+)\s*,\s*([0-9a-fA-F`]+)\s*,\s*([0-9a-fA-F`]+)\s*,\s*([0-9a-fA-F`]+)\s*\}")


def _hex(value: str) -> str:
    return "0x" + value.replace("`", "").lower().removeprefix("0x")


def parse_bugcheck_message(text: str | bytes) -> tuple[str, list[str]] | None:
    """(code as 0x%08x, the four parameters as 0x...) from bugcheck evidence, or None."""
    flat = plain_text(text or "")
    match = _EVENT.search(flat) or _KD.search(flat)
    if not match:
        return None
    code = int(match.group(1), 16)
    return f"0x{code:08x}", [_hex(p) for p in match.groups()[1:]]
