"""The SSH transport against a REAL OpenSSH server on loopback.

sshd (Debian openssh-server) runs with a throwaway host key, user key and config
(tests/sshd_server.py). There is no PowerShell on Linux, so the transport's
`powershell_path` points at a fake that accepts only driverpipe's exact wrapper
and emulates the scripts used here; SSH, SFTP, channels, exit codes,
stdout/stderr, host-key checks and the killed server are all real. The "guest
directory" is a POSIX temp path (the Windows `/C:/` SFTP form is not exercised).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import driverpipe.core.scripts as guest_base
from conftest import need_tool
from driverpipe.core.errors import EnvironmentProblem, ExitCode, PipelineError, StepFailed
from driverpipe.transports.base import GuestScriptError
from driverpipe.transports.errors import GuestTimeout, RemoteFileNotFound
from driverpipe.transports.ssh import SSHGuest
from sshd_server import SshdServer, fake_calls, install_fake_powershell

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    need_tool("sshd")
    need_tool("ssh-keygen")
    srv = SshdServer(tmp_path_factory.mktemp("sshd")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fake_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_fake_powershell(tmp_path_factory.mktemp("fake"))


@pytest.fixture(autouse=True)
def _scripts(fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The transport loads script text from here: shipped scripts plus a few test-only ones.
    monkeypatch.setattr(guest_base, "SCRIPTS_DIR", fake_bin.parent / "ps")


def _guest(srv: SshdServer, fake_bin: Path, **kw: Any) -> SSHGuest:
    args: dict[str, Any] = dict(
        name="lab",
        host="127.0.0.1",
        port=srv.port,
        user=srv.user,
        key_file=str(srv.user_key),
        known_hosts=srv.known_hosts,
        powershell_path=str(fake_bin / "powershell"),
        connect_timeout=5,
        script_timeout=30,
        say=lambda _s: None,
    )
    args.update(kw)
    return SSHGuest(**args)


@pytest.fixture
def guest(server: SshdServer, fake_bin: Path) -> Iterator[SSHGuest]:
    g = _guest(server, fake_bin)
    yield g
    g.close()


# -- scripts -------------------------------------------------------------------


def test_params_are_bound_not_formatted(guest: SSHGuest) -> None:
    params = {"Name": 'it\'s "quoted" $(Remove-Item C:\\) `n ; & | ünïcödé', "Count": 3, "Items": [1, "two", None], "Flag": True}
    assert guest.run_script("Get-EchoParams.ps1", params) == {"params": params}
    assert guest.round_trips == 1


def test_run_script_path_runs_a_script_outside_the_guest_folder(guest: SSHGuest, fake_bin: Path) -> None:
    # What a Hyper-V host connection uses for scripts/hyperv/*.ps1.
    assert guest.run_script_path(fake_bin.parent / "ps" / "Get-EchoParams.ps1", {"Count": 9}) == {"params": {"Count": 9}}


def test_large_params_travel_on_stdin(guest: SSHGuest, fake_bin: Path) -> None:
    big = "x" * 200_000  # far beyond cmd.exe's 8191-character command line
    assert guest.run_script("Get-EchoParams.ps1", {"Name": big}) == {"params": {"Name": big}}
    assert fake_calls(fake_bin)[-1] == {"script": "Get-EchoParams.ps1", "stdin": True, "params": ["Name"]}


def test_exit_code_and_stderr_become_a_script_error(guest: SSHGuest) -> None:
    with pytest.raises(GuestScriptError) as info:
        guest.run_script("Invoke-Failing.ps1", {"Message": "sc.exe said no", "Code": 5})
    assert "exit code 5" in info.value.message and "sc.exe said no" in info.value.message
    assert info.value.exit_code == ExitCode.STEP_FAILED


def test_the_last_json_document_is_the_result(guest: SSHGuest) -> None:
    assert guest.run_script("Write-Noise.ps1") == {"last": True}


def test_batch_is_one_round_trip(guest: SSHGuest) -> None:
    out = guest.run_batch([("Get-EchoParams.ps1", {"Name": "a"}), ("Test-Elevation.ps1", {}), ("Get-EchoParams.ps1", {"Count": 2})])
    assert out == [{"params": {"Name": "a"}}, {"elevated": True, "user": "FAKE\\tester"}, {"params": {"Count": 2}}]
    assert guest.round_trips == 1


def test_script_timeout_closes_the_channel_and_the_connection_survives(guest: SSHGuest) -> None:
    with pytest.raises(GuestTimeout) as info:
        guest.run_script("Start-Sleeping.ps1", {"Seconds": 30}, timeout=1)
    assert "did not finish within 1 s" in info.value.message
    assert guest.run_script("Get-EchoParams.ps1", {"Count": 1}) == {"params": {"Count": 1}}


def test_a_timed_out_child_that_ignores_signals_is_killed_and_the_next_script_runs(guest: SSHGuest, tmp_path: Path) -> None:
    """A hung child is abandoned and killed (never waited on again), not left running on the guest."""
    pid_file = tmp_path / "stubborn.pid"
    with pytest.raises(GuestTimeout) as info:
        guest.run_script("Start-Stubborn.ps1", {"PidFile": str(pid_file)}, timeout=2)
    assert "Start-Stubborn.ps1 did not finish within 2 s" in info.value.message and "\n" not in info.value.message
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or "Z" in _proc_state(pid), "the child still runs on the guest"
    started = time.monotonic()
    assert guest.run_script("Get-EchoParams.ps1", {"Count": 1}) == {"params": {"Count": 1}}
    assert time.monotonic() - started < 30  # within its own timeout: nothing queued behind the hung one


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return stat[stat.rfind(")") + 2 :][:1]


def test_require_admin(guest: SSHGuest, fake_bin: Path) -> None:
    from driverpipe.transports.connect import require_admin

    require_admin(guest)
    marker = fake_bin / "not-admin"
    marker.touch()
    try:
        with pytest.raises(EnvironmentProblem) as info:
            require_admin(guest)
        assert "LocalAccountTokenFilterPolicy" in info.value.message and "FAKE\\tester" in info.value.message
    finally:
        marker.unlink()


def test_reconnect_builds_a_new_client(guest: SSHGuest) -> None:
    old = guest._client
    guest.reconnect()
    assert guest._client is not old
    assert guest.run_script("Get-EchoParams.ps1", {}) == {"params": {}}


# -- files -----------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


def test_push_copies_then_skips_by_hash(guest: SSHGuest, tmp_path: Path) -> None:
    src = tmp_path / "driver.sys"
    src.write_bytes(os.urandom(300_000))
    dest = tmp_path / "guest" / "new dir" / "driver.sys"  # the folder does not exist yet
    first = guest.push(src, str(dest))
    assert first.copied and dest.read_bytes() == src.read_bytes() and first.size == 300_000
    before = guest.round_trips
    second = guest.push(src, str(dest))
    assert not second.copied and second.sha256 == first.sha256
    assert guest.round_trips == before + 1, "an unchanged file costs one round trip (the hash check)"
    assert _leftovers(dest.parent) == []


def test_push_replaces_atomically(guest: SSHGuest, tmp_path: Path) -> None:
    dest = tmp_path / "driver.sys"
    old = os.urandom(1_000_000)
    dest.write_bytes(old)
    src = tmp_path / "new.sys"
    src.write_bytes(os.urandom(4_000_000))
    seen: list[bool] = []
    # While the upload runs, the destination must still be the complete old file.
    guest.on_progress = lambda sent, total: seen.append(dest.read_bytes() == old)
    result = guest.push(src, str(dest))
    assert result.copied and seen and all(seen)
    assert dest.read_bytes() == src.read_bytes()
    assert _leftovers(tmp_path) == []


def test_server_killed_mid_push_leaves_no_half_written_file(fake_bin: Path, tmp_path: Path) -> None:
    need_tool("sshd")
    srv = SshdServer(tmp_path / "own-sshd").start()
    try:
        g = _guest(srv, fake_bin)
        guest_dir = tmp_path / "guest"
        guest_dir.mkdir()
        dest = guest_dir / "driver.sys"
        old = b"old driver" * 1000
        dest.write_bytes(old)
        src = tmp_path / "big.sys"
        src.write_bytes(os.urandom(16 * 1024 * 1024))

        def kill_once(sent: int, total: int) -> None:
            if sent >= 1024 * 1024 and srv.proc is not None:
                srv.kill_hard()

        g.on_progress = kill_once
        with pytest.raises(PipelineError) as info:
            g.push(src, str(dest))
        assert isinstance(info.value, StepFailed | EnvironmentProblem)
        assert "connection was lost" in info.value.message, info.value.message
        assert "\n" not in info.value.one_line()
        assert dest.read_bytes() == old, "the destination was never touched"
        assert [p.name for p in guest_dir.iterdir() if not p.name.startswith("driver.sys.partial-")] == ["driver.sys"]
        g.close()
    finally:
        srv.stop()


def test_pull_and_read_range(guest: SSHGuest, tmp_path: Path) -> None:
    remote = tmp_path / "guest.log"
    remote.write_bytes(b"line one\nline two\n")
    guest.pull(str(remote), tmp_path / "out" / "copy.log")
    assert (tmp_path / "out" / "copy.log").read_bytes() == b"line one\nline two\n"
    assert guest.read_range(str(remote), 5, 3) == b"one"
    assert guest.read_range(str(remote), 100, 10) == b""
    with pytest.raises(RemoteFileNotFound):
        guest.read_range(str(tmp_path / "missing.log"), 0, 10)
    with pytest.raises(RemoteFileNotFound):
        guest.pull(str(tmp_path / "missing.log"), tmp_path / "x.log")


# -- connection failures and host keys ----------------------------------------------


def test_host_key_mismatch_is_refused(server: SshdServer, fake_bin: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30)
    known = tmp_path / "known_hosts"
    kind, b64 = other.with_suffix(".pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{server.port} {kind} {b64}\n")
    for tofu in (False, True):  # trust on first use never accepts a CHANGED key
        with pytest.raises(EnvironmentProblem) as info:
            _guest(server, fake_bin, known_hosts=known, trust_on_first_use=tofu)
        assert "HOST KEY MISMATCH" in info.value.message
        assert info.value.hint and "ssh-keygen -R" in info.value.hint
    assert known.read_text().count("\n") == 1


def test_unknown_host_key_refused_unless_trust_on_first_use(server: SshdServer, fake_bin: Path, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"  # does not exist
    with pytest.raises(EnvironmentProblem) as info:
        _guest(server, fake_bin, known_hosts=known)
    assert "host key not known" in info.value.message and "SHA256:" in info.value.message
    assert info.value.hint and "ssh-keyscan -p" in info.value.hint and "trust_on_first_use" in info.value.hint
    said: list[str] = []
    g = _guest(server, fake_bin, known_hosts=known, trust_on_first_use=True, say=said.append)
    g.close()
    assert any("trusted the new host key" in s for s in said)
    assert server.host_pub() in known.read_text()
    g = _guest(server, fake_bin, known_hosts=known)  # now known: strict mode accepts it
    g.close()


def test_connection_refused(fake_bin: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = SshdServer(tmp_path)
    srv.port = port
    with pytest.raises(EnvironmentProblem) as info:
        _guest(srv, fake_bin, known_hosts=tmp_path / "kh")
    assert "connection refused" in info.value.message and info.value.hint and "OpenSSH" in info.value.hint


def test_wrong_key_is_an_authentication_failure(server: SshdServer, fake_bin: Path, tmp_path: Path) -> None:
    import subprocess

    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True, timeout=30)
    with pytest.raises(EnvironmentProblem) as info:
        _guest(server, fake_bin, key_file=str(wrong))
    assert "authentication failed" in info.value.message


def test_open_guest_from_config(server: SshdServer, fake_bin: Path, project: Path) -> None:
    from driverpipe.core.config import load
    from driverpipe.core.context import RunContext
    from driverpipe.transports.connect import open_guest

    (project / "user-config.toml").write_text(
        f"""
[targets.lab]
transport = "ssh"
host = "127.0.0.1"
port = {server.port}
user = "{server.user}"
[targets.lab.ssh]
known_hosts = "{server.known_hosts}"
key_file = "{server.user_key}"
connect_timeout = 5
powershell_path = "{fake_bin / "powershell"}"
"""
    )
    cfg = load(root=project)
    ctx = RunContext(config=cfg, echo=lambda _s: None)
    g = open_guest(ctx, cfg.target("lab"))
    try:
        assert isinstance(g, SSHGuest)
        assert g.run_script("Test-Elevation.ps1") == {"elevated": True, "user": "FAKE\\tester"}
    finally:
        g.close()


def test_a_server_that_never_speaks_ssh(fake_bin: Path, tmp_path: Path) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts (in the kernel backlog) and never answers
    try:
        srv = SshdServer(tmp_path)
        srv.port = listener.getsockname()[1]
        with pytest.raises(EnvironmentProblem) as info:
            _guest(srv, fake_bin, known_hosts=tmp_path / "kh", connect_timeout=1)
        assert "did not speak SSH" in info.value.message or "no answer within 1 s" in info.value.message
    finally:
        listener.close()


def test_keepalive_and_an_sftp_timeout_are_set(guest: SSHGuest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crashed guest sends no FIN: without keepalives and an SFTP timeout a transfer blocks for minutes."""
    import paramiko

    seen: list[int] = []
    original = paramiko.Transport.set_keepalive
    monkeypatch.setattr(paramiko.Transport, "set_keepalive", lambda self, interval: (seen.append(interval), original(self, interval))[1])
    guest.reconnect()
    assert seen == [15]
    timeout = guest.sftp().get_channel().gettimeout()
    assert timeout is not None and timeout >= 30


class _LateOutputChannel:
    """A channel whose exit status arrives before its last output (OpenSSH may send them so)."""

    def __init__(self) -> None:
        self.chunks = [b"noise\n"]
        self.late = [b'{"ok": true}\n']
        self.polls = 0
        self.eof_received = False
        self.closed = False

    def exec_command(self, command: str) -> None: ...

    def sendall(self, data: bytes) -> None: ...

    def shutdown_write(self) -> None: ...

    def recv_ready(self) -> bool:
        self.polls += 1
        if not self.chunks and self.late and self.polls > 5:
            self.chunks, self.late = self.late, []
        return bool(self.chunks)

    def recv(self, n: int) -> bytes:
        data = self.chunks.pop(0)
        if not self.chunks and not self.late:
            self.eof_received = True
        return data

    def recv_stderr_ready(self) -> bool:
        return False

    def exit_status_ready(self) -> bool:
        return True

    def recv_exit_status(self) -> int:
        return 0

    def fileno(self) -> int:
        import os

        r, _w = os.pipe()
        return r

    def close(self) -> None:
        self.closed = True


def test_the_read_loop_waits_for_the_end_of_output_not_just_the_exit_status(guest: SSHGuest, monkeypatch: pytest.MonkeyPatch) -> None:
    chan = _LateOutputChannel()

    class _Transport:
        def open_session(self, timeout: float) -> _LateOutputChannel:
            return chan

        def is_active(self) -> bool:
            return True

    monkeypatch.setattr(guest, "_transport", lambda: _Transport())
    monkeypatch.setattr("select.select", lambda r, w, x, t: (r, w, x))
    rc, out, _err = guest._exec("cmd", None, 10.0, "Late.ps1")
    assert rc == 0 and out.endswith('{"ok": true}\n'), out


def test_the_error_marker_is_found_after_a_clixml_record_on_the_same_line() -> None:
    from driverpipe.transports.psencode import error_line

    stderr = '#< CLIXML<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"></Objs>driverpipe-error: sc.exe failed\n'
    assert error_line(stderr) == "sc.exe failed"
