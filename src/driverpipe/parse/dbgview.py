"""Read DebugView logs in every shape DebugView (or a person copying its window) writes.

A DebugView line is `<seq>\\t<time>\\t<message>`, often with a trailing tab:
  - seq: a zero-padded counter (it may start above 1 and jump);
  - time: elapsed seconds (`159.96389771`) or clock time in the guest's locale
    (`17:48:44`, `17:48:44.123`, `05:48:44.123 PM`);
  - message: Win32 OutputDebugString lines start with `[pid] `, kernel DbgPrint
    lines have no prefix.
Saved logs may begin with a `[\\\\COMPUTER]` header line, use CRLF or LF, be ANSI
(any code page, not UTF-8), UTF-8 or UTF-16 with a BOM, and end in a blank or
cut-off line. Parsing never raises: a line that does not fit is kept as raw text
(`ok=False`) and counted, so a garbage log yields a verdict, not a traceback.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Fallback for bytes that are not UTF-8: DebugView writes the ANSI code page of
# the guest, which we cannot know. cp1252 reads Western text right; its five
# undefined bytes map to the same-valued Latin-1 character instead of failing,
# so decoding never raises and no byte is lost.
FALLBACK_ENCODING = "cp1252"
_ERRORS = "driverpipe-latin1"


def _latin1_fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start : exc.end].decode("latin-1"), exc.end


codecs.register_error(_ERRORS, _latin1_fallback)

# A DbgPrint call prints at most 512 bytes; anything this long without a newline
# is not a DebugView line and is flushed as raw text so the buffer stays bounded.
MAX_LINE_BYTES = 64 * 1024

_ELAPSED = re.compile(r"\d+\.\d+\Z")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,7}))?")
_AMPM = re.compile(r"(?<![A-Za-z])([AaPp])\.?\s?[Mm]\.?(?![A-Za-z])")
# Locale AM/PM markers, before or after the time (Korean, Chinese, Japanese, German).
_LOCAL_PM = {"오후", "下午", "午後", "nachm."}
_LOCAL_AMPM = re.compile(r"오전|오후|上午|下午|午前|午後|vorm\.|nachm\.", re.I)
_PID = re.compile(r"\[(\d{1,10})\] ")
_TRAILING_TAB = re.compile(r"\t[\t ]*\Z")
_HEADER = re.compile(r"\[\\\\[^\]\t]*\]\Z")


@dataclass(slots=True)
class LogLine:
    """One line of a DebugView log.

    kind: "line" (a DebugView entry), "raw" (unreadable, kept as text, ok=False),
    "header" (the `[\\\\COMPUTER]` line of a saved log) or "blank".
    lineno: 1-based physical line number in the log (set by parse_bytes/LogTail).
    """

    seq: int | None
    time: str | None
    elapsed: float | None
    clock: str | None
    pid: int | None
    message: str
    raw: str
    ok: bool
    kind: str = "line"
    lineno: int | None = None

    @property
    def seconds(self) -> float | None:
        """Log time in seconds: elapsed time, or seconds since midnight for clock time."""
        if self.elapsed is not None:
            return self.elapsed
        if self.clock is not None:
            return clock_seconds(self.clock)
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clock_seconds(text: str) -> float | None:
    """Seconds since midnight of a locale clock string (12h or 24h, optional fraction)."""
    m = _CLOCK.search(text)
    if m is None:
        return None
    hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3))
    frac = float("0." + m.group(4)) if m.group(4) else 0.0
    ampm = _AMPM.search(text)
    local = _LOCAL_AMPM.search(text)
    if ampm is not None or local is not None:
        pm = (ampm.group(1) in "Pp") if ampm is not None else (local is not None and local.group(0).lower() in _LOCAL_PM)
        if pm and hour < 12:
            hour += 12
        elif not pm and hour == 12:
            hour = 0
    return hour * 3600 + minute * 60 + second + frac


def decode_line(data: bytes) -> str:
    """UTF-8 when the bytes are valid UTF-8, else the never-failing single-byte fallback."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(FALLBACK_ENCODING, errors=_ERRORS)


def _raw(text: str, kind: str = "raw") -> LogLine:
    return LogLine(None, None, None, None, None, text.strip("\t\r\n "), text, kind != "raw", kind)


def parse_line(raw: bytes | str) -> LogLine:
    """Parse one line (without or with its line ending). Never raises."""
    text = decode_line(raw) if isinstance(raw, bytes | bytearray) else str(raw)
    text = text.rstrip("\r\n").lstrip("\ufeff")
    if not text.strip():
        return _raw(text, "blank")
    parts = text.split("\t", 2)
    if len(parts) == 3:
        seq_text, time_text, message = parts
        seq_text = seq_text.strip()
        time_text = time_text.strip()
        if seq_text.isascii() and seq_text.isdigit() and time_text:
            elapsed: float | None = None
            clock: str | None = None
            if _ELAPSED.match(time_text):
                elapsed = float(time_text)
            elif _CLOCK.search(time_text):
                clock = time_text
            if elapsed is not None or clock is not None:
                # DebugView ends many lines with a tab (copies add spaces after it); the message itself never does.
                message = _TRAILING_TAB.sub("", message.rstrip("\r\n"))
                pid: int | None = None
                m = _PID.match(message)
                if m is not None:
                    pid = int(m.group(1))
                    message = message[m.end() :]
                return LogLine(int(seq_text), time_text, elapsed, clock, pid, message, text, True)
    if _HEADER.match(text.strip()):
        return _raw(text, "header")
    return _raw(text)


# ---------------------------------------------------------------------------
# Byte streams -> lines (shared by parse_bytes and LogTail)
# ---------------------------------------------------------------------------

_UTF16 = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}


class _Splitter:
    """Cuts a byte stream into lines; decides the encoding from the first bytes."""

    def __init__(self) -> None:
        self.encoding: str | None = None  # "utf-16-le", "utf-16-be" or "8bit"
        self.buffer = bytearray()
        self.lineno = 0
        self._started = False

    def _decide(self, final: bool) -> bool:
        buf = self.buffer
        if len(buf) < 4 and not final:
            return False  # a BOM is up to 3 bytes and BOM-less UTF-16 needs 4 to be told from 8-bit text
        head = bytes(buf[:2])
        if head in _UTF16:
            self.encoding = _UTF16[head]
            del buf[:2]
        elif len(buf) >= 4 and buf[1] == 0 and buf[3] == 0 and buf[0] and buf[2]:
            self.encoding = "utf-16-le"  # no BOM, but "0\0 0\0" is unmistakable
        else:
            if buf.startswith(b"\xef\xbb\xbf"):
                del buf[:3]
            self.encoding = "8bit"
        return True

    def feed(self, data: bytes, final: bool = False) -> list[LogLine]:
        self.buffer += data
        if self.encoding is None and not self._decide(final):
            return []
        out: list[LogLine] = []
        if self.encoding == "8bit":
            self._cut_8bit(out, final)
        else:
            self._cut_utf16(out, final)
        return out

    def _emit(self, out: list[LogLine], line: bytes | str) -> None:
        self.lineno += 1
        parsed = parse_line(line)
        if parsed.kind != "blank":
            parsed.lineno = self.lineno
            out.append(parsed)

    def _cut_8bit(self, out: list[LogLine], final: bool) -> None:
        buf = self.buffer
        end = buf.rfind(b"\n") + 1
        if end:
            for piece in bytes(buf[:end]).split(b"\n")[:-1]:
                self._emit(out, piece)
            del buf[:end]
        if buf and (final or len(buf) > MAX_LINE_BYTES):
            self._emit(out, bytes(buf))
            buf.clear()

    def _cut_utf16(self, out: list[LogLine], final: bool) -> None:
        buf = self.buffer
        codec = self.encoding or "utf-16-le"
        newline = b"\n\x00" if codec == "utf-16-le" else b"\x00\n"
        limit = len(buf) - len(buf) % 2
        i = buf.rfind(newline, 0, limit)
        while i > 0 and i % 2:  # a match straddling two code units is not a newline
            i = buf.rfind(newline, 0, i + 1)
        if i >= 0 and i % 2 == 0:
            end = i + 2
            text = bytes(buf[:end]).decode(codec, errors="replace")
            for piece in text.split("\n")[:-1]:
                self._emit(out, piece)
            del buf[:end]
        if buf and (final or len(buf) > MAX_LINE_BYTES):
            self._emit(out, bytes(buf).decode(codec, errors="replace"))
            buf.clear()


def parse_bytes(data: bytes) -> list[LogLine]:
    """Every non-blank line of a whole log (encoding detected: UTF-16 BOM, UTF-8, ANSI fallback)."""
    return _Splitter().feed(bytes(data), final=True)


def parse_file(path: Path) -> list[LogLine]:
    return parse_bytes(Path(path).read_bytes())


class LogTail:
    """Offset-based incremental reader of a growing log.

    `read_range(offset, max_bytes)` returns up to max_bytes from offset (b"" at
    the end, or when the file does not exist yet). Each poll reads only bytes
    after the last offset; an incomplete last line stays buffered until its
    newline arrives (or is flushed by `poll(final=True)`).
    """

    def __init__(self, read_range: Callable[[int, int], bytes], *, chunk_size: int = 1 << 20):
        self._read = read_range
        self.chunk_size = chunk_size
        self.offset = 0
        self.bytes_read = 0
        self.polls = 0
        self.reads = 0
        self.exhausted = False  # the last read returned less than asked (we are at the end)
        self._splitter = _Splitter()

    @classmethod
    def for_file(cls, path: Path, **kw: Any) -> LogTail:
        path = Path(path)

        def read_range(offset: int, max_bytes: int) -> bytes:
            try:
                with path.open("rb") as fh:
                    fh.seek(offset)
                    return fh.read(max_bytes)
            except FileNotFoundError:
                return b""

        return cls(read_range, **kw)

    @property
    def lines_seen(self) -> int:
        return self._splitter.lineno

    @property
    def pending_bytes(self) -> int:
        return len(self._splitter.buffer)

    def poll(self, final: bool = False, *, limit: int | None = None) -> list[LogLine]:
        """Lines completed since the last poll. `limit` caps the bytes read by this poll."""
        self.polls += 1
        out: list[LogLine] = []
        budget = limit
        self.exhausted = False
        while budget is None or budget > 0:
            want = self.chunk_size if budget is None else min(self.chunk_size, budget)
            data = self._read(self.offset, want)
            self.reads += 1
            if data:
                self.offset += len(data)
                self.bytes_read += len(data)
                if budget is not None:
                    budget -= len(data)
                out.extend(self._splitter.feed(data))
            if len(data) < want:
                self.exhausted = True
                break
        if final and self.exhausted:
            out.extend(self._splitter.feed(b"", final=True))
        return out
