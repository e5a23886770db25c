"""DebugView log tailing: bytes read per poll on a growing log, and verdict latency.

1. A log grows by a burst of lines between polls (after a large existing start).
   Prints, per poll, the file size and the bytes that poll read: only new bytes
   are read, whatever the file size.
2. A writer thread appends other drivers' chatter, then the driver's load lines;
   the verdict loop (driverpipe.checks.verify.follow, default poll interval 0.5 s) tails
   the file. Prints the latency from writing the last expected line to the
   verdict, over several runs, against the poll interval (target: <= interval).

Run: python bench/bench_dbgview_tail.py
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

from driverpipe.checks.verify import follow
from driverpipe.parse.dbgview import LogTail
from driverpipe.parse.expect import Expectation, Matcher

REPO = Path(__file__).resolve().parent.parent
POLL = 0.5
RUNS = 6
CHATTER = "%08d\t%.8f\t[4412] PeriodicTimer: heartbeat from another driver, queue depth 3\t\r\n"
ENTRY = "[WazabiEDR] DriverEntry called"
READY = "[WazabiEDR] ready (device \\Device\\WazabiEDR, symlink \\DosDevices\\WazabiEDR)"


def load_expectation() -> Expectation:
    with (REPO / "pyproject.toml").open("rb") as fh:
        section = tomllib.load(fh)["tool"]["driverpipe"]["expect"]["load"]
    return Expectation.from_config(section, phase="load")


def growing(folder: Path) -> None:
    path = folder / "growing.log"
    seq = 0
    with path.open("wb") as fh:
        for _ in range(200_000):  # ~17 MB already there when tailing starts
            seq += 1
            fh.write((CHATTER % (seq, seq / 1000)).encode())
    tail = LogTail.for_file(path)
    first = tail.poll()
    print("1) growing log: bytes read per poll vs file size")
    print(f"   initial poll: file {path.stat().st_size:>10,d} B, read {tail.bytes_read:>10,d} B, {len(first):,d} lines")
    print(f"   {'poll':>4}  {'file size':>12}  {'appended':>9}  {'read':>9}  {'lines':>5}")
    rng = random.Random(1)
    carried = 0  # bytes written after the previous poll (the rest of a cut line)
    with path.open("ab") as fh:
        for poll in range(1, 11):
            burst = rng.randrange(1, 400)
            data = b"".join((CHATTER % (seq + i + 1, (seq + i) / 1000)).encode() for i in range(burst))
            # Cut the burst mid-line every other poll: the partial line waits for its newline.
            cut = len(data) - (rng.randrange(1, 40) if poll % 2 else 0)
            fh.write(data[:cut])
            fh.flush()
            before = tail.bytes_read
            lines = tail.poll()
            read = tail.bytes_read - before
            print(f"   {poll:>4}  {path.stat().st_size:>12,d}  {carried + cut:>9,d}  {read:>9,d}  {len(lines):>5}")
            fh.write(data[cut:])
            fh.flush()
            carried = len(data) - cut
            seq += burst
    lines = tail.poll(final=True)
    print(f"   final poll read {len(lines)} line(s); total read {tail.bytes_read:,d} B = file size {path.stat().st_size:,d} B")


def latency_run(folder: Path, run: int, expectation: Expectation) -> float:
    path = folder / f"latency-{run}.log"
    path.write_bytes(b"")
    wrote_last: list[float] = []
    rng = random.Random(run)

    def writer() -> None:
        seq = 0
        with path.open("ab") as fh:
            for _ in range(rng.randrange(5, 15)):
                for _ in range(50):
                    seq += 1
                    fh.write((CHATTER % (seq, seq / 1000)).encode())
                fh.flush()
                time.sleep(rng.uniform(0.01, 0.12))
            for msg in (ENTRY, READY):
                time.sleep(rng.uniform(0.0, 0.2))
                seq += 1
                fh.write(f"{seq:08d}\t{seq / 1000:.8f}\t{msg}\t\r\n".encode())
                fh.flush()
            wrote_last.append(time.perf_counter())  # right after the last expected line is written

    thread = threading.Thread(target=writer)
    thread.start()
    verdict = follow(LogTail.for_file(path), Matcher(expectation), timeout=30, poll_interval=POLL, live=True)
    decided = time.perf_counter()
    thread.join()
    if verdict.status != "pass":
        print(f"   run {run}: unexpected verdict {verdict.message}")
    return decided - wrote_last[0]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        growing(folder)
        print()
        print(f"2) latency from writing the last expected line to the verdict (poll interval {POLL} s), {RUNS} runs")
        expectation = load_expectation()
        samples = []
        for run in range(1, RUNS + 1):
            latency = latency_run(folder, run, expectation)
            samples.append(latency)
            print(f"   run {run}: {latency * 1000:7.1f} ms")
        worst = max(samples)
        print(
            f"   median {statistics.median(samples) * 1000:.1f} ms, max {worst * 1000:.1f} ms; "
            f"target max <= {POLL * 1000:.0f} ms: {'met' if worst <= POLL else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
