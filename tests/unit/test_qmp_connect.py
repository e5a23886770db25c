"""Qmp.connect against a real UNIX socket that exists before it listens.

A freshly spawned QEMU binds its QMP socket (the file appears) a moment before it
calls listen(); a connection in between is refused. This is the window that made a
start right after a killed run fail once; the socket below reproduces it on purpose.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from driverpipe.core.errors import StepFailed
from driverpipe.vmhosts.qmp import Qmp

GREETING = {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}


def _bound_not_listening(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


def _read_json(conn: socket.socket) -> dict[str, object]:
    buf = b""
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError("client hung up before sending a command")
        buf += chunk
        try:
            value, _ = json.JSONDecoder().raw_decode(buf.decode())
        except ValueError:
            continue
        return dict(value)


def _serve_after(sock: socket.socket, delay: float) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        sock.listen(1)
        conn, _ = sock.accept()
        with conn:
            conn.sendall(json.dumps(GREETING).encode() + b"\r\n")
            request = _read_json(conn)  # clients need not end a command with a newline
            reply: dict[str, object] = {"return": {}}
            if "id" in request:
                reply["id"] = request["id"]
            conn.sendall(json.dumps(reply).encode() + b"\r\n")
            while conn.recv(4096):  # until the client hangs up
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "qmp.sock"


def test_refused_then_listening_connects_within_grace(sock_path: Path) -> None:
    sock = _bound_not_listening(sock_path)
    server = _serve_after(sock, 0.3)
    qmp = Qmp(sock_path, timeout=5.0)
    try:
        qmp.connect(refused_grace=5.0)
        assert qmp.connected
    finally:
        qmp.close()
        sock.close()
        server.join(5.0)


def test_refused_without_grace_is_one_clear_error(sock_path: Path) -> None:
    sock = _bound_not_listening(sock_path)
    qmp = Qmp(sock_path, timeout=5.0)
    try:
        with pytest.raises(StepFailed) as info:
            qmp.connect()
        assert "cannot connect to QMP" in info.value.message and "refused" in info.value.message
    finally:
        qmp.close()
        sock.close()


def test_grace_does_not_hide_a_socket_that_never_listens(sock_path: Path) -> None:
    sock = _bound_not_listening(sock_path)
    qmp = Qmp(sock_path, timeout=5.0)
    started = time.monotonic()
    try:
        with pytest.raises(StepFailed, match="refused"):
            qmp.connect(refused_grace=0.5)
        assert time.monotonic() - started < 4.0  # gave up after the grace, not the timeout
    finally:
        qmp.close()
        sock.close()
