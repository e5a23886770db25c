"""The run record of a Wine prefix (<prefix>/.driverpipe/run.json) and its lock.

run.json holds what one process must tell the next: the wineserver we started (pid,
start time, run token), the capture's offsets in Wine's raw log and in dbgprint.log,
and what was already verified, trusted or installed. `invoke verify`/`logs` and a
deploy read and update it from separate processes, so every change is made under one
lock (an flock across processes, re-entrant within one) with the record re-read under
it. The file is untrusted input: one that does not fit RUN_SHAPE is unreadable, and
unreadable means nothing is known (no server of ours, offsets from 0).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...core.files import write_atomic
from ...core.owned import is_count, is_number, is_text, or_none, read_record, table

# run.json, as written by record(): a value of another type makes the whole record unreadable (= missing).
RUN_KEYS = {
    "server_pid": or_none(is_count),
    "server_started": or_none(is_number),
    "owner_pid": or_none(is_count),
    "raw_offset": is_count,
    "seq": is_count,
    "capture_start": is_count,
    "capture_run": is_text,
    "verified": or_none(is_text),
    "trusted": or_none(is_text),
    "installed_inf": or_none(is_text),
    "run_token": or_none(is_text),
    "log_size": is_count,
}
RUN_SHAPE = table(RUN_KEYS, optional=tuple(RUN_KEYS))


class _RecordLock:
    """One holder of a prefix's run record at a time: an flock across processes, re-entrant in one."""

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.fh: Any = None


_RECORD_LOCKS: dict[str, _RecordLock] = {}
_RECORD_LOCKS_GUARD = threading.Lock()


class RunRecord:
    """The run record's reads and writes, for a class that has a `state_dir` (the prefix)."""

    @property
    def state_dir(self) -> Path:
        raise NotImplementedError

    def _run_record(self) -> dict[str, Any]:
        """run.json, or {} when it is missing or does not fit RUN_SHAPE (then nothing is known: no server, offsets from 0)."""
        return read_record(self.state_dir / "run.json", RUN_SHAPE) or {}

    def _write_run_record(self, data: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_dir / "run.json", (json.dumps(data, indent=2) + "\n").encode())

    @contextmanager
    def record_lock(self) -> Iterator[None]:
        """Hold the run record (and the capture log the pump appends to) against every other process:
        `invoke verify`/`logs` and a deploy pump the same capture and update the same record. Whoever
        holds it re-reads the record under it."""
        import fcntl

        with _RECORD_LOCKS_GUARD:
            entry = _RECORD_LOCKS.setdefault(str(self.state_dir), _RecordLock())
        with entry.rlock:
            if entry.depth == 0:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                entry.fh = (self.state_dir / "run.lock").open("a+b")
                fcntl.flock(entry.fh.fileno(), fcntl.LOCK_EX)
            entry.depth += 1
            try:
                yield
            finally:
                entry.depth -= 1
                if entry.depth == 0:
                    entry.fh.close()  # closing drops the flock
                    entry.fh = None

    def record(self, **changes: Any) -> dict[str, Any]:
        """Update the run record (server pid, capture offsets, what was verified) and return it:
        read, changed and written under the record lock, so no stale copy overwrites a newer change."""
        with self.record_lock():
            data = self._run_record()
            data.update(changes)
            self._write_run_record(data)
            return data

    def recorded(self, key: str, default: Any = None) -> Any:
        return self._run_record().get(key, default)

    def _clear_run_records(self) -> None:
        with self.record_lock():
            data = self._run_record()
            keep = {k: v for k, v in data.items() if k in ("raw_offset", "seq", "log_size")}
            self._write_run_record(keep)
