"""SSH transport (paramiko) for Windows' built-in OpenSSH server.

Scripts run as `powershell -NoProfile -NonInteractive -EncodedCommand <wrapper>`
(psencode: parameters bound, never formatted into code); files move over SFTP.
Host keys are checked against known_hosts; an unknown key is refused unless
trust_on_first_use is set (then recorded, with a warning), a changed key always.

Checked against a real OpenSSH server (Debian sshd on loopback) with a fake
`powershell` at the process boundary. NOT checked against Windows OpenSSH:
the `/C:/dir/file` SFTP path form, posix-rename@openssh.com on NTFS, whether
closing a channel ends powershell.exe on timeout, and cmd.exe as default shell.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import StepFailed
from ..core.scripts import load_script, script_path
from .base import BatchMixin, PushResult
from .errors import Endpoint, GuestTimeout, RemoteFileNotFound, UnknownHostKey, translate_ssh
from .psencode import SSH_MAX_COMMAND, build_invocation, partial_name, script_result, sha256_file, wrapper_pid

KEEPALIVE_S = 15
EOF_GRACE_S = 5.0  # after the exit status, how long to wait for the output's EOF
END_TREE_TIMEOUT_S = 20.0  # ending a hung script's process tree from a second session
# SFTP tuning: a large channel window keeps many pipelined writes in flight.
SFTP_WINDOW = 64 * 1024 * 1024
SFTP_MAX_PACKET = 256 * 1024
# SFTP write requests of 128 KiB instead of paramiko's 32 KiB: 4x fewer requests and status replies
# for paramiko's Python code to handle (about 2x the loopback throughput measured by bench/bench_ssh_push.py).
# OpenSSH's sftp-server (also the base of Windows' server; unverified there) accepts messages up to 256 KiB.
SFTP_WRITE_REQUEST = 128 * 1024
SFTP_BLOCK = 256 * 1024  # bytes read from the local file per write() call


def sftp_path(remote: str) -> str:
    """Windows `C:\\dir\\f.sys` -> SFTP `/C:/dir/f.sys` (Windows OpenSSH's form); POSIX paths unchanged."""
    m = re.match(r"^([A-Za-z]):[\\/]?(.*)$", remote)
    if m:
        return f"/{m.group(1).upper()}:/" + m.group(2).replace("\\", "/")
    return remote


def fingerprint(key: Any) -> str:
    """OpenSSH-style SHA256 fingerprint of a paramiko key."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _transport_factory() -> Any:
    """paramiko Transport preferring AES-GCM (one AEAD pass per packet, no separate HMAC); CTR stays as fallback."""
    import paramiko

    base: tuple[str, ...] = getattr(paramiko.Transport, "_preferred_ciphers", ())

    class GcmFirstTransport(paramiko.Transport):
        _preferred_ciphers = tuple(c for c in base if "gcm" in c) + tuple(c for c in base if "gcm" not in c)

    return GcmFirstTransport


def _host_key_policy(tofu: bool, known_hosts: Path, say: Callable[[str], None]) -> Any:
    import paramiko

    class Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            if not tofu:
                raise UnknownHostKey(hostname, key.get_name(), fingerprint(key))
            client.get_host_keys().add(hostname, key.get_name(), key)
            known_hosts.parent.mkdir(parents=True, exist_ok=True)
            # Append, never rewrite: the user's file keeps its comments and other entries.
            with known_hosts.open("a", encoding="utf-8") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            say(f"warning: trusted the new host key of {hostname} on first use: {key.get_name()} {fingerprint(key)} (recorded in {known_hosts})")

    return Policy()


class SSHGuest(BatchMixin):
    """A Windows guest over SSH + SFTP."""

    def __init__(
        self,
        *,
        name: str,
        host: str,
        user: str,
        port: int = 22,
        password: str | None = None,
        key_file: str = "",
        known_hosts: Path | None = None,
        trust_on_first_use: bool = False,
        connect_timeout: float = 15,
        script_timeout: float = 120,
        powershell_path: str = "powershell",
        say: Callable[[str], None] = print,
        hash_skip: bool = True,
        connect: bool = True,
    ):
        self.name = name
        self.round_trips = 0
        self.host, self.port, self.user = host, port or 22, user
        self._password = password
        self.key_file = key_file
        self.known_hosts = known_hosts or Path.home() / ".ssh" / "known_hosts"
        self.trust_on_first_use = trust_on_first_use
        self.connect_timeout = float(connect_timeout)
        self.script_timeout = float(script_timeout)
        self.powershell_path = powershell_path
        self.say = say
        self.hash_skip = hash_skip  # benchmarks turn it off to measure the copy itself
        self.ep = Endpoint(name, host, self.port, "ssh", user=user)
        self.on_progress: Callable[[int, int], None] | None = None  # (sent, total) during uploads
        self._client: Any = None
        self._sftp: Any = None
        if connect:
            self.connect()

    # -- connection ---------------------------------------------------------

    def _fail(self, exc: BaseException) -> Exception:
        return translate_ssh(exc, self.ep, known_hosts=str(self.known_hosts), connect_timeout=self.connect_timeout)

    def connect(self) -> None:
        import paramiko

        # paramiko logs connection errors itself; without a handler Python would print them to stderr.
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        client = paramiko.SSHClient()
        if self.known_hosts.is_file():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(_host_key_policy(self.trust_on_first_use, self.known_hosts, self.say))
        try:
            client.connect(
                hostname=self.host,
                port=self.port,
                username=self.user,
                password=self._password,
                key_filename=self.key_file or None,
                # An explicit key means exactly that key: no agent, no ~/.ssh guesses.
                allow_agent=not self.key_file,
                look_for_keys=not self.key_file and self._password is None,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
                transport_factory=_transport_factory(),
            )
        except BaseException as exc:
            client.close()
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise self._fail(exc) from None
        transport = client.get_transport()
        if transport is not None:
            # A crashed guest sends no FIN: keepalives make the dead link show within seconds, not minutes.
            transport.set_keepalive(KEEPALIVE_S)
        self._client = client
        self._sftp = None

    def _transport(self) -> Any:
        if self._client is None:
            self.connect()
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise StepFailed(f"{self.ep.where}: the connection was lost", "the guest may be rebooting; reconnect")
        return transport

    def sftp(self) -> Any:
        import paramiko

        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(self._transport(), window_size=SFTP_WINDOW, max_packet_size=SFTP_MAX_PACKET)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._fail(exc) from None
            if self._sftp is not None:
                # Each SFTP request waits at most this long (paramiko's default is forever).
                self._sftp.get_channel().settimeout(max(self.script_timeout, 30.0))
        return self._sftp

    def reconnect(self) -> None:
        self.close()
        self.connect()

    def close(self) -> None:
        for thing in (self._sftp, self._client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # closing a dead connection must not mask the real error
                    pass
        self._sftp = None
        self._client = None

    # -- scripts --------------------------------------------------------------

    def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        return self.run_script_path(script_path(script), params, timeout=timeout)

    def run_script_path(self, path: Path, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Run any .ps1 by path (e.g. scripts/hyperv/ on a Hyper-V host); run_script is this for shipped guest scripts."""
        script = path.name
        inv = build_invocation(self.powershell_path, load_script(path), params or {}, max_command=SSH_MAX_COMMAND)
        rc, out, err = self._exec(inv.command_line(), inv.stdin, timeout or self.script_timeout, script)
        return script_result(script, self.name, rc, out, err)

    def _exec(self, command: str, stdin: bytes | None, timeout: float, label: str, *, end_on_timeout: bool = True) -> tuple[int, str, str]:
        import paramiko

        self.round_trips += 1
        transport = self._transport()
        out, err = bytearray(), bytearray()
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            try:
                chan.exec_command(command)
                if stdin:
                    chan.sendall(stdin)
                chan.shutdown_write()  # EOF on stdin: powershell never waits for input
                deadline = time.monotonic() + timeout
                drain_until: float | None = None
                while True:
                    if chan.recv_ready():
                        out += chan.recv(1 << 16)
                    elif chan.recv_stderr_ready():
                        err += chan.recv_stderr(1 << 16)
                    elif chan.exit_status_ready() and (chan.eof_received or chan.closed):
                        break  # the output ended (EOF) and the status is in: nothing more can come
                    elif chan.exit_status_ready():
                        # OpenSSH may send the exit status before the last output: read on until EOF, briefly.
                        drain_until = drain_until or time.monotonic() + EOF_GRACE_S
                        if time.monotonic() > drain_until:
                            break
                        select.select([chan], [], [], 0.05)
                    elif not transport.is_active():
                        raise EOFError("connection closed while the script ran")
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            # Abandoned, never waited on again: closing the channel alone leaves a child
                            # that ignores it running (and holding what it held), so it is killed with its
                            # tree from a second session, by the pid the wrapper announced.
                            while chan.recv_stderr_ready():
                                err += chan.recv_stderr(1 << 16)
                            if end_on_timeout:
                                self._end_tree(wrapper_pid(err.decode("utf-8", "replace")), label)
                            raise GuestTimeout(
                                f"{label} did not finish within {timeout:g} s on {self.name}; ended with what it started (SSH channel closed)",
                                "raise deploy.script_timeout if the step is legitimately slow",
                            )
                        select.select([chan], [], [], min(0.25, remaining))
                rc = chan.recv_exit_status()  # -1: closed without a status (the process was killed)
            finally:
                chan.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._fail(exc) from None
        return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def _end_tree(self, pid: int | None, label: str) -> None:
        """Best effort, bounded: Stop-ProcessTree.ps1 on a new channel for the hung script's pid."""
        if pid is None:
            return  # it hung before announcing itself: nothing to name
        try:
            inv = build_invocation(self.powershell_path, load_script(script_path("Stop-ProcessTree.ps1")), {"ProcessId": pid}, max_command=SSH_MAX_COMMAND)
            self._exec(inv.command_line(), inv.stdin, END_TREE_TIMEOUT_S, f"ending {label}", end_on_timeout=False)
        except Exception:  # the timeout is the error to report; a dead connection is found by the next call
            pass

    # -- files ----------------------------------------------------------------

    def push(self, local: Path, remote: str) -> PushResult:
        """Hash check (skip if equal) -> upload to .partial -> verify its hash -> atomic rename.

        The hash verified on the guest is the one of the bytes actually sent (computed while
        uploading), so a local file changing during the push is caught too.
        """
        local = Path(local)
        expected = ""
        if self.hash_skip:
            expected, _ = sha256_file(local)
            state = self.run_script("Get-FileSha256.ps1", {"Path": remote})
            if isinstance(state, dict) and state.get("exists") and str(state.get("sha256", "")).lower() == expected:
                return PushResult(remote, expected, False, local.stat().st_size)
        partial = partial_name(remote)
        try:
            digest, size = self._upload(local, sftp_path(partial))
            if expected and digest != expected:
                raise StepFailed(f"push of {local.name}: the local file changed during the push; nothing was replaced", "retry")
            check = self.run_script("Get-FileSha256.ps1", {"Path": partial})
            if not isinstance(check, dict) or str(check.get("sha256", "")).lower() != digest:
                raise StepFailed(
                    f"push of {local.name} to {self.name}: the uploaded copy's hash differs; nothing was replaced",
                    "retry; if it repeats, check the guest's disk",
                )
            self._rename(partial, remote, digest)
        except BaseException:
            self._discard(sftp_path(partial))
            raise
        return PushResult(remote, digest, True, size)

    def _upload(self, local: Path, spath: str) -> tuple[str, int]:
        """Upload to spath; returns (sha256, size) of the bytes sent."""
        import hashlib

        import paramiko

        sftp = self.sftp()
        self.round_trips += 1
        size = local.stat().st_size
        digest = hashlib.sha256()
        try:
            try:
                handle = sftp.open(spath, "wb")
            except FileNotFoundError:
                self._mkdirs(spath.rsplit("/", 1)[0])
                handle = sftp.open(spath, "wb")
            with handle, local.open("rb") as src:
                handle.set_pipelined(True)
                handle.MAX_REQUEST_SIZE = SFTP_WRITE_REQUEST  # per-handle override of paramiko's class default
                sent = 0
                while block := src.read(SFTP_BLOCK):
                    handle.write(block)
                    digest.update(block)
                    sent += len(block)
                    if self.on_progress is not None:
                        self.on_progress(sent, size)
            remote_size = sftp.stat(spath).st_size
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if isinstance(exc, PermissionError):
                raise StepFailed(f"push to {self.name}: permission denied writing {spath}", "is the account an administrator?") from None
            raise self._fail(exc) from None
        if remote_size != sent:
            raise StepFailed(f"push to {self.name}: {spath} has {remote_size} bytes after upload, expected {sent}")
        return digest.hexdigest(), sent

    def _mkdirs(self, sdir: str) -> None:
        sftp = self.sftp()
        parts = [p for p in sdir.split("/") if p]
        path = "/" if sdir.startswith("/") else ""
        for part in parts:
            path = (path.rstrip("/") + "/" + part) if path else part
            if re.fullmatch(r"/[A-Za-z]:", path):
                continue  # a drive root always exists
            try:
                sftp.stat(path)
            except FileNotFoundError:
                sftp.mkdir(path)

    def _rename(self, partial: str, remote: str, digest: str) -> None:
        sftp = self.sftp()
        self.round_trips += 1
        try:
            sftp.posix_rename(sftp_path(partial), sftp_path(remote))
            return
        except OSError as exc:
            if not _unsupported(exc):
                raise self._fail(exc) from None
        # The server lacks posix-rename@openssh.com: replace on the guest with a script.
        self.run_script("Complete-FileUpload.ps1", {"Partial": partial, "Path": remote, "Sha256": digest})

    def _discard(self, spath: str) -> None:
        try:
            if self._sftp is not None:
                self._sftp.remove(spath)
        except Exception:  # best effort: the connection may be gone; a stray .partial is harmless
            pass

    def pull(self, remote: str, local: Path) -> None:
        import paramiko

        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".partial")
        sftp = self.sftp()
        self.round_trips += 1
        try:
            sftp.get(sftp_path(remote), str(tmp))
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise RemoteFileNotFound(f"{self.name}: no such file {remote}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            tmp.unlink(missing_ok=True)
            raise self._fail(exc) from None
        tmp.replace(local)

    def read_range(self, remote: str, offset: int, max_bytes: int) -> bytes:
        import paramiko

        sftp = self.sftp()
        self.round_trips += 1
        try:
            with sftp.open(sftp_path(remote), "rb") as fh:
                fh.seek(offset)
                data: bytes = fh.read(max_bytes)
                return data
        except FileNotFoundError:
            raise RemoteFileNotFound(f"{self.name}: no such file {remote}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._fail(exc) from None


def _unsupported(exc: OSError) -> bool:
    text = str(exc).lower()
    return "unsupported" in text or "not supported" in text or "no such extension" in text
