"""The DebugView parser over the six real logs in the shared corpus plus synthetic shapes the corpus lacks."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from driverpipe.parse.dbgview import MAX_LINE_BYTES, LogLine, LogTail, clock_seconds, parse_bytes, parse_line

CORPUS_FILES = [
    "easerver_saved_log_pid_gbk.log",
    "lithium_saved_log_multi_pid_cp1251.log",
    "qt6_deploy_win32_pid_trailing_tab.txt",
    "remotethreadmonitor_xp_kernel_truncated_line.txt",
    "wkhttp_older_testlog_seq_starts_8_elapsed_159s.log",
    "wkhttp_testlog_kernel_trailing_tabs.log",
]


def dbgview(corpus: Path, name: str) -> bytes:
    return (corpus / "dbgview" / name).read_bytes()


# --------------------------------------------------------------------------- corpus


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_every_corpus_line_is_read(corpus: Path, name: str) -> None:
    data = dbgview(corpus, name)
    lines = parse_bytes(data)
    physical = [ln for ln in data.split(b"\n") if ln.strip()]
    assert len(lines) == len(physical)
    assert [ln for ln in lines if not ln.ok] == []
    entries = [ln for ln in lines if ln.kind == "line"]
    assert entries and all(ln.seq is not None and ln.time for ln in entries)
    assert all(ln.elapsed is not None or ln.clock is not None for ln in entries)
    # No trailing tab or CR ever reaches a message; raw keeps the line as written.
    assert not any(ln.message.endswith(("\t", "\r")) for ln in entries)
    numbers = [ln.lineno or 0 for ln in lines]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_saved_log_header_and_gbk_bytes(corpus: Path) -> None:
    lines = parse_bytes(dbgview(corpus, "easerver_saved_log_pid_gbk.log"))
    assert lines[0].kind == "header" and "ADMIN-PC" in lines[0].raw
    first = lines[1]
    assert (first.seq, first.elapsed, first.pid, first.message) == (1, 0.0, 4892, "PERIOD IS : 1")
    gbk = next(ln for ln in lines if ln.seq == 11)
    assert gbk.ok and gbk.message.startswith("time is :::5218157,") and gbk.message.endswith("217.0")
    # The single-byte fallback keeps every byte: encoding back gives the original GBK text.
    assert "\ufffd" not in gbk.message
    assert "成交" in gbk.message.encode("cp1252").decode("gbk")
    # The last line switches to clock time without milliseconds.
    last = lines[-1]
    assert (last.seq, last.clock, last.elapsed) == (59, "17:48:44", None)
    assert last.seconds == 17 * 3600 + 48 * 60 + 44


def test_cp1251_log_with_many_pids_and_late_start(corpus: Path) -> None:
    lines = [ln for ln in parse_bytes(dbgview(corpus, "lithium_saved_log_multi_pid_cp1251.log")) if ln.kind == "line"]
    assert lines[0].seq == 223 and lines[-1].seq == 1751
    assert lines[-1].elapsed == pytest.approx(1207.45300293)
    assert len({ln.pid for ln in lines}) > 1
    high = [ln for ln in lines if any(ord(c) > 127 for c in ln.message)]
    assert high and all(ln.ok and "\ufffd" not in ln.message for ln in high)


def test_win32_trailing_tab_lf(corpus: Path) -> None:
    lines = parse_bytes(dbgview(corpus, "qt6_deploy_win32_pid_trailing_tab.txt"))
    assert [ln.pid for ln in lines] == [15232] * 4
    assert lines[0].message == "QQmlApplicationEngine failed to load component"
    assert lines[0].raw.endswith("\t")


def test_xp_kernel_truncated_line_and_seq_jump(corpus: Path) -> None:
    lines = parse_bytes(dbgview(corpus, "remotethreadmonitor_xp_kernel_truncated_line.txt"))
    assert all(ln.pid is None for ln in lines)  # kernel lines: no [pid]
    cut = next(ln for ln in lines if ln.seq == 9)
    assert cut.ok and cut.message.endswith("0x3a,0x00,0x")
    assert [ln.seq for ln in lines][-3:] == [9, 21, 22]
    assert lines[0].message == "---start--- "  # the space before the tab is the message's own


def test_uncleared_capture_and_blank_messages(corpus: Path) -> None:
    older = parse_bytes(dbgview(corpus, "wkhttp_older_testlog_seq_starts_8_elapsed_159s.log"))
    assert older[0].seq == 8 and older[0].elapsed == pytest.approx(159.96389771)
    newer = parse_bytes(dbgview(corpus, "wkhttp_testlog_kernel_trailing_tabs.log"))
    assert newer[0].message == " " and newer[0].ok
    assert newer[-1].message == "[+] Driver unloaded successfully"


# --------------------------------------------------------------------------- synthetic shapes


def test_utf16le_with_bom_crlf() -> None:
    text = "00000001\t0.00000000\t[WazabiEDR] DriverEntry called\t\r\n00000002\t0.00100000\tПривет 驱动\t\r\n"
    lines = parse_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    assert [ln.message for ln in lines] == ["[WazabiEDR] DriverEntry called", "Привет 驱动"]
    assert all(ln.ok for ln in lines)


def test_utf16be_with_bom_and_utf16le_without_bom() -> None:
    text = "00000001\t1.50000000\thello\r\n"
    assert parse_bytes(b"\xfe\xff" + text.encode("utf-16-be"))[0].message == "hello"
    assert parse_bytes(text.encode("utf-16-le"))[0].elapsed == 1.5


def test_utf8_with_bom() -> None:
    lines = parse_bytes(b"\xef\xbb\xbf00000001\t0.5\t\xc3\xa9t\xc3\xa9\r\n")
    assert lines[0].message == "été" and lines[0].seq == 1


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        ("05:48:44.123 PM", 17 * 3600 + 48 * 60 + 44.123),
        ("12:00:00.000 AM", 0.0),
        ("12:30:00.500 PM", 12 * 3600 + 30 * 60 + 0.5),
        ("9:05:01 AM", 9 * 3600 + 5 * 60 + 1),
        ("23:59:59.999", 86399.999),
        ("07:01:02", 7 * 3600 + 62),
    ],
)
def test_clock_times_12h_24h_with_and_without_ms(stamp: str, seconds: float) -> None:
    line = parse_line(f"00000042\t{stamp}\t[WazabiEDR] ready (x)\t\r\n")
    assert line.ok and line.clock == stamp and line.elapsed is None
    assert line.seconds == pytest.approx(seconds)
    assert clock_seconds(stamp) == pytest.approx(seconds)


def test_blank_and_truncated_last_lines() -> None:
    data = b"00000001\t0.1\tone\t\r\n\r\n   \r\n00000002\t0.2\ttwo\t\r\n0000000"
    lines = parse_bytes(data)
    assert [ln.message for ln in lines[:2]] == ["one", "two"]
    assert lines[2].kind == "raw" and not lines[2].ok and lines[2].raw == "0000000"
    assert lines[1].lineno == 4  # blank lines are skipped but still counted as physical lines


def test_garbage_never_raises_and_is_counted() -> None:
    rng = random.Random(6)
    blob = bytes(rng.randrange(256) for _ in range(200_000))
    lines = parse_bytes(blob)
    assert lines and all(isinstance(ln, LogLine) for ln in lines)
    assert sum(1 for ln in lines if not ln.ok) >= 1
    for weird in ["\t\t", "123\t\t", "abc\tdef\tghi", "00000001\tnot-a-time\tx", "\x00\x00\x00", "99999999999999999999\t1.0\tbig seq", "0\t:\t"]:
        parsed = parse_line(weird)
        assert parsed.raw == weird.rstrip("\r\n")
    assert parse_line("99999999999999999999\t1.0\tbig seq").seq == 99999999999999999999
    assert not parse_line("00000001\tnot-a-time\tx").ok


def test_endless_line_is_flushed_as_raw() -> None:
    tail = LogTail(_source(b"x" * (MAX_LINE_BYTES + 10)))
    lines = tail.poll()
    assert len(lines) == 1 and not lines[0].ok and tail.pending_bytes == 0


# --------------------------------------------------------------------------- LogTail


def _source(data: bytes, reads: list[tuple[int, int]] | None = None):  # type: ignore[no-untyped-def]
    def read_range(offset: int, max_bytes: int) -> bytes:
        chunk = data[offset : offset + max_bytes]
        if reads is not None:
            reads.append((offset, len(chunk)))
        return chunk

    return read_range


SAMPLE = (
    "00000001\t10:15:00.001\t[WazabiEDR] DriverEntry called\t\r\n"
    "00000002\t10:15:00.002\t[1234] wörk 驱动\t\r\n"
    "00000003\t10:15:00.003\t[WazabiEDR] ready (device \\Device\\WazabiEDR, symlink \\DosDevices\\WazabiEDR)\t\r\n"
)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le-bom"])
def test_tail_split_at_every_byte_matches_whole_parse(encoding: str) -> None:
    data = (b"\xff\xfe" + SAMPLE.encode("utf-16-le")) if encoding == "utf-16-le-bom" else SAMPLE.encode()
    expected = [ln.raw for ln in parse_bytes(data)]
    for cut in range(1, len(data)):
        grown = bytearray(data[:cut])
        tail = LogTail(_source_live(grown, []))
        got = [ln.raw for ln in tail.poll()]
        grown.extend(data[cut:])
        got += [ln.raw for ln in tail.poll(final=True)]
        assert got == expected, f"split at byte {cut}"
        assert tail.bytes_read == len(data)


def test_tail_keeps_partial_line_until_newline_and_reads_only_new_bytes() -> None:
    reads: list[tuple[int, int]] = []
    log = bytearray()
    tail = LogTail(_source_live(log, reads))
    log += b"00000001\t0.1\tfirst\t\r\n00000002\t0.2\tsec"
    assert [ln.message for ln in tail.poll()] == ["first"]
    assert tail.pending_bytes == len(b"00000002\t0.2\tsec")
    assert tail.poll() == []  # nothing new: one empty read at the end offset
    log += b"ond\t\r\n"
    assert [ln.message for ln in tail.poll()] == ["second"]
    offsets = [off for off, _ in reads]
    assert offsets == sorted(offsets)
    assert sum(n for _, n in reads) == len(log) == tail.bytes_read


def _source_live(log: bytearray, reads: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    def read_range(offset: int, max_bytes: int) -> bytes:
        chunk = bytes(log[offset : offset + max_bytes])
        reads.append((offset, len(chunk)))
        return chunk

    return read_range


def test_tail_for_file_missing_then_created(tmp_path: Path) -> None:
    path = tmp_path / "capture.log"
    tail = LogTail.for_file(path)
    assert tail.poll() == [] and tail.bytes_read == 0
    path.write_bytes(b"00000001\t0.1\thello\t\r\n")
    assert [ln.message for ln in tail.poll()] == ["hello"]


def test_tail_poll_limit_caps_bytes_per_poll() -> None:
    data = b"".join(b"%08d\t%.8f\tline %d\t\r\n" % (i, i / 1000, i) for i in range(5000))
    tail = LogTail(_source(data), chunk_size=4096)
    seen = 0
    polls = 0
    while True:
        before = tail.bytes_read
        seen += len(tail.poll(limit=10_000))
        polls += 1
        assert tail.bytes_read - before <= 10_000
        if tail.exhausted:
            break
    seen += len(tail.poll(final=True))
    assert seen == 5000 and tail.bytes_read == len(data) and polls > 1


def test_tail_on_a_file_growing_in_another_thread(tmp_path: Path) -> None:
    """A writer thread appends lines in odd-sized pieces (cutting lines); the tail sees each line once, in order."""
    path = tmp_path / "growing.log"
    path.write_bytes(b"")
    total = 3000
    payload = b"".join(b"%08d\t%.8f\t[WazabiEDR] line %d\t\r\n" % (i, i / 100, i) for i in range(1, total + 1))
    written = threading.Event()
    step = threading.Semaphore(0)

    def writer() -> None:
        with path.open("ab") as fh:
            pos = 0
            rng = random.Random(3)
            while pos < len(payload):
                n = rng.randrange(1, 700)
                fh.write(payload[pos : pos + n])
                fh.flush()
                pos += n
                step.release()
        written.set()
        step.release()

    thread = threading.Thread(target=writer)
    thread.start()
    tail = LogTail.for_file(path, chunk_size=1024)
    got: list[LogLine] = []
    while not written.is_set():
        step.acquire()
        got += tail.poll()
    thread.join()
    got += tail.poll(final=True)
    assert [ln.message for ln in got] == [f"[WazabiEDR] line {i}" for i in range(1, total + 1)]
    assert tail.bytes_read == len(payload) == path.stat().st_size
