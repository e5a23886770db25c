"""A small synchronous QMP client on top of the maintained `qemu.qmp` library.

Why not `qemu.qmp.legacy.QEMUMonitorProtocol` as is: its `connect()` has no
timeout, and QEMU's QMP socket serves one client at a time, so a second
`invoke vm.*` connecting while another one holds the monitor would hang forever
waiting for the greeting. This wrapper drives the library's public async
`QMPClient` on a private event loop with a timeout on every step, and pumps
events into a list the caller drains (QemuHost turns them into VmEvents).

`qemu.qmp` is imported lazily (only when a QEMU VM host is used) and pinned to
an exact version in pyproject.toml because it is labelled alpha (0.0.x).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import EnvironmentProblem, StepFailed

# The library logs every failed connection attempt at ERROR; we report failures ourselves, once.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())
logging.getLogger("qemu.qmp").propagate = False

#: Events a caller may need to react to. Others (RESUME, POWERDOWN, ...) are noise here.
INTERESTING_EVENTS = frozenset({"SHUTDOWN", "RESET", "GUEST_PANICKED", "GUEST_CRASHLOADED", "STOP", "BLOCK_IO_ERROR", "WATCHDOG"})


@dataclass
class QmpEvent:
    name: str
    timestamp: float
    data: dict[str, Any] = field(default_factory=dict)


class QmpError(StepFailed):
    """QEMU answered a QMP command with an error (or the monitor went away)."""


class Qmp:
    """One QMP session over a UNIX socket. Not thread-safe; one per QemuHost."""

    def __init__(self, socket_path: Path, *, timeout: float = 10.0):
        self.socket_path = socket_path
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._client: Any = None
        self.pending: list[QmpEvent] = []  # every event seen, oldest first; callers drain it

    # -- connection -------------------------------------------------------
    def connect(self, timeout: float | None = None, *, refused_grace: float = 0.0) -> None:
        """Connect and read the greeting.

        `refused_grace`: keep retrying a refused connection for that long. A QEMU
        that was just spawned creates its socket file (bind) a moment before it
        listens, so a connection in that window is refused although all is well.
        """
        try:
            from qemu.qmp import QMPClient
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EnvironmentProblem("the qemu.qmp package is not installed", "pip install 'qemu.qmp==0.0.6'") from exc
        wait = self.timeout if timeout is None else timeout
        grace_ends = time.monotonic() + refused_grace
        while True:
            client = QMPClient("driverpipe")
            try:
                self._run(client.connect(str(self.socket_path)), wait)
            except TimeoutError:
                self._abandon(client)
                raise StepFailed(
                    f"QMP at {self.socket_path} did not greet within {wait:g} s",
                    "another driverpipe process may hold the monitor; wait for it or stop the VM",
                ) from None
            except Exception as exc:  # ConnectError wraps ENOENT/ECONNREFUSED
                self._abandon(client)
                if isinstance(getattr(exc, "exc", None), ConnectionRefusedError) and time.monotonic() < grace_ends:
                    time.sleep(0.05)
                    continue
                raise StepFailed(f"cannot connect to QMP at {self.socket_path}: {_reason(exc)}") from None
            self._client = client
            return

    @property
    def connected(self) -> bool:
        return self._client is not None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self._abandon(client)
        if not self._loop.is_closed():
            self._loop.close()

    def __del__(self) -> None:
        # A forgotten session would leave the library's reader tasks pending on a
        # loop nobody runs (noisy "Task was destroyed" warnings at exit).
        try:
            self.close()
        except Exception:
            pass

    # -- commands ---------------------------------------------------------
    def execute(self, command: str, arguments: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        if self._client is None:
            raise QmpError(f"QMP {command}: not connected")
        try:
            result = self._run(self._client.execute(command, arguments), self.timeout if timeout is None else timeout)
        except TimeoutError:
            raise QmpError(f"QMP {command}: no answer within {self.timeout if timeout is None else timeout:g} s") from None
        except Exception as exc:
            # ExecuteError carries QEMU's own one-line description; anything else means the
            # monitor is gone (QEMU exited), which the caller reports with the process state.
            self._collect()
            raise QmpError(f"QMP {command} failed: {_reason(exc)}") from None
        self._collect()
        return result

    def hmp(self, command_line: str, *, timeout: float | None = None) -> str:
        """Run a human-monitor command (savevm/loadvm have no plain QMP form before the job API).

        HMP reports failures as text, not as QMP errors: a reply starting with
        'Error:' is turned into QmpError so a failed loadvm can't pass silently.
        """
        out = str(self.execute("human-monitor-command", {"command-line": command_line}, timeout=timeout) or "")
        for line in out.splitlines():
            if line.strip().lower().startswith("error"):
                raise QmpError(f"QEMU monitor `{command_line}`: {line.strip()}")
        return out

    # -- events -----------------------------------------------------------
    def pump(self, seconds: float = 0.0) -> list[QmpEvent]:
        """Let the connection read for `seconds` (0: just what is buffered); return `pending`."""
        if self._client is not None:
            try:
                self._run(asyncio.sleep(seconds), seconds + 1.0)
            except Exception:
                pass
            self._collect()
        return self.pending

    def wait_event(self, names: set[str], timeout: float) -> QmpEvent | None:
        """Wait up to `timeout` for one of `names` (it stays in `pending` too)."""
        deadline = time.monotonic() + timeout
        seen = len(self.pending)
        while True:
            for event in self.pending[seen:]:
                if event.name in names:
                    return event
            seen = len(self.pending)
            left = deadline - time.monotonic()
            if left <= 0 or self._client is None:
                return None
            self.pump(min(0.1, left))
            if self._client is not None and _disconnected(self._client):
                self._collect()
                for event in self.pending[seen:]:
                    if event.name in names:
                        return event
                return None

    def drain(self) -> list[QmpEvent]:
        self.pump()
        out, self.pending = self.pending, []
        return out

    # -- internals --------------------------------------------------------
    def _run(self, awaitable: Any, timeout: float) -> Any:
        return self._loop.run_until_complete(asyncio.wait_for(awaitable, timeout))

    def _collect(self) -> None:
        if self._client is None:
            return
        for message in self._client.events.clear():
            msg = dict(message)
            stamp = msg.get("timestamp") or {}
            when = float(stamp.get("seconds", 0)) + float(stamp.get("microseconds", 0)) / 1e6
            self.pending.append(QmpEvent(str(msg.get("event")), when or time.time(), dict(msg.get("data") or {})))

    def _abandon(self, client: Any) -> None:
        try:
            self._run(client.disconnect(), 5.0)
        except Exception:
            pass  # QEMU already gone: nothing left to close politely


def _disconnected(client: Any) -> bool:
    from qemu.qmp import Runstate

    return bool(client.runstate != Runstate.RUNNING)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    cause = exc.__cause__ or getattr(exc, "exc", None)
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({cause})"
    return text.splitlines()[0]
