"""WinRM transport (pypsrp): ONE RunspacePool per pipeline run, one PowerShell per script.

Parameters are bound with add_parameters (never formatted into code). Each script
runs with begin_invoke/poll_invoke and is stopped when it exceeds its timeout
(pypsrp has no per-command timeout of its own). Files move as base64 chunks
written by Write-FileChunk.ps1, sized from the server's MaxEnvelopeSizekb
(WSMan.update_max_payload_size), then hash-checked and renamed by
Complete-FileUpload.ps1; pulls read ranges with Read-FileRange.ps1.

Checked: the connection error paths against real loopback sockets (refused,
401, silent server, self-signed TLS). NOT checked against a real Windows host:
the script/pool round trips, chunk sizes, WSMan fault codes and reconnect after
a reboot are written from pypsrp 0.9.1's source and documentation.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, EnvironmentProblem, StepFailed
from ..core.scripts import load_script, script_path
from .base import BatchMixin, GuestScriptError, PushResult
from .errors import Endpoint, GuestTimeout, translate_winrm
from .psencode import NoJsonResult, parse_last_json, partial_name, sha256_file

# Room left in each envelope for the script text, the CLIXML around the parameters and headers.
CHUNK_OVERHEAD = 8 * 1024
MIN_CHUNK = 16 * 1024
MAX_CHUNK = 3 * 1024 * 1024  # 4 MiB once base64-encoded


def _json_results(output: list[Any]) -> Any:
    """The last JSON document among the pipeline's output objects (strings from ConvertTo-Json)."""
    text = "\n".join(str(o) for o in output if isinstance(o, str))
    return parse_last_json(text)


def _record_message(record: Any) -> str:
    """A person's message from a PSRP ErrorRecord: details, else the exception's Message, else the category text."""
    details = getattr(record, "details_message", None)
    if details:
        return str(details)
    exc = getattr(record, "exception", None)
    for props in ("adapted_properties", "extended_properties"):
        table = getattr(exc, props, None)
        if isinstance(table, dict) and table.get("Message"):
            return str(table["Message"])
    return str(getattr(record, "message", "") or record)


def _error_text(ps: Any) -> str:
    """First line of the first error record (what a person would read first)."""
    for record in getattr(ps.streams, "error", []) or []:
        for line in _record_message(record).splitlines():
            if line.strip():
                return line.strip()
    return ""


class WinRMGuest(BatchMixin):
    """A Windows guest over WinRM/PSRP."""

    def __init__(
        self,
        *,
        name: str,
        host: str,
        user: str,
        password: str | None,
        port: int = 0,
        ssl: bool = True,
        auth: str = "negotiate",
        cert_validation: bool = True,
        ca_bundle: str = "",
        allow_basic_http: bool = False,
        connection_timeout: float = 30,
        read_timeout: float = 30,
        operation_timeout: float = 20,
        script_timeout: float = 120,
        say: Callable[[str], None] = print,
        use_proxy: bool = False,
        connect: bool = True,
    ):
        if auth == "basic" and not ssl:
            if not allow_basic_http:
                raise ConfigError(
                    f"targets.{name}.winrm: Basic auth over plain HTTP sends the password in clear text",
                    "use ssl = true, another auth, or set allow_basic_http = true deliberately",
                )
            say(f"warning: targets.{name}: Basic auth over plain HTTP: the password crosses the network in clear text")
        if operation_timeout >= read_timeout:
            raise ConfigError(
                f"targets.{name}.winrm.operation_timeout ({operation_timeout:g}) must stay below read_timeout ({read_timeout:g})",
                "lower operation_timeout or raise read_timeout",
            )
        self.name = name
        self.round_trips = 0
        self.script_timeout = float(script_timeout)
        self.say = say
        self.port = port or (5986 if ssl else 5985)
        self.ep = Endpoint(name, host, self.port, "winrm", scheme="https" if ssl else "http", user=user, auth=auth)
        self._kwargs: dict[str, Any] = dict(
            server=host,
            port=self.port,
            username=user or None,
            password=password,
            ssl=ssl,
            auth=auth,
            # A CA bundle path is passed where pypsrp takes cert_validation (requests' `verify`).
            cert_validation=(ca_bundle or True) if cert_validation else False,
            # Plain HTTP: message encryption (auto) unless Basic was explicitly allowed, which cannot encrypt.
            encryption="never" if (auth == "basic" and not ssl) else "auto",
            connection_timeout=int(connection_timeout),
            read_timeout=int(read_timeout),
            operation_timeout=int(operation_timeout),
            # HTTP(S)_PROXY is for the internet, not a lab guest: bypassed unless winrm.use_proxy = true.
            no_proxy=not use_proxy,
        )
        self.operation_timeout = int(operation_timeout)
        self._stale = False  # a script was cut short: rebuild the pool before the next one
        self._wsman: Any = None
        self._pool: Any = None
        if connect:
            self.connect()

    # -- connection ---------------------------------------------------------

    def _fail(self, exc: BaseException) -> Exception:
        return translate_winrm(exc, self.ep, connect_timeout=self._kwargs["connection_timeout"], read_timeout=self._kwargs["read_timeout"])

    def connect(self) -> None:
        from pypsrp.powershell import RunspacePool
        from pypsrp.wsman import WSMan

        # pypsrp logs read timeouts with log.exception: keep its tracebacks off the user's terminal.
        logging.getLogger("pypsrp").addHandler(logging.NullHandler())
        logging.getLogger("pypsrp").propagate = False
        wsman = None
        try:
            wsman = WSMan(**self._kwargs)
            bound_receive_retries(wsman)
            listener_size: int | None = None
            try:
                # Bigger envelopes -> bigger file chunks. Reading the config may be refused to
                # non-admins; the default (150 KiB) still works, so only connection errors matter here.
                wsman.update_max_payload_size()
                listener_size = int(wsman.max_envelope_size)
            except Exception as exc:
                if not _is_fault(exc):
                    raise
            pool = RunspacePool(wsman)
            try:
                pool.open()
            except Exception:
                _quiet_close(pool)  # the shell may exist on the guest already: delete it, best effort
                raise
            if listener_size is not None and wsman.max_envelope_size != listener_size:
                # pypsrp assumes 500 KiB once the server speaks PSRP 2.2+ and the size is still
                # 150 KiB, even when 150 KiB is what the listener said: every larger request would
                # then exceed its MaxEnvelopeSizekb. The listener's own figure wins.
                wsman.update_max_payload_size(listener_size)
                fragmenter = getattr(pool, "_fragmenter", None)  # pypsrp 0.8/0.9 internals (a rename would leave its size)
                if fragmenter is not None:
                    fragmenter.max_size = wsman.max_payload_size
        except ImportError as exc:
            if wsman is not None:
                _quiet_close(wsman)
            extra = "credssp" if self.ep.auth == "credssp" else "kerberos"
            raise EnvironmentProblem(
                f"{self.ep.where}: auth = {self.ep.auth} needs pypsrp's {extra} extra ({exc.name or exc})",
                f"python3 -m pip install 'pypsrp[{extra}]'",
            ) from None
        except Exception as exc:
            if wsman is not None:
                _quiet_close(wsman)
            raise self._fail(exc) from None
        self._wsman, self._pool = wsman, pool

    def _retire(self) -> None:
        """Close the pool now (deleting its shell on the guest) and open a new one on the next call."""
        self._stale = True
        self.close()

    def reconnect(self) -> None:
        """A NEW WSMan and pool: a pool that saw a read timeout (reboot) is unusable (pypsrp #21)."""
        self.close()
        self.connect()

    def close(self) -> None:
        if self._pool is not None:
            _quiet_close(self._pool)
        if self._wsman is not None:
            _quiet_close(self._wsman)
        self._pool = self._wsman = None

    @property
    def max_payload_size(self) -> int:
        return int(self._wsman.max_payload_size) if self._wsman is not None else 114_000

    # -- scripts --------------------------------------------------------------

    def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        return self.run_script_path(script_path(script), params, timeout=timeout)

    def run_script_path(self, path: Path, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Run any .ps1 by path (e.g. scripts/hyperv/ on a Hyper-V host); run_script is this for shipped guest scripts."""
        if self._pool is None or self._stale:
            # A script cut short (Ctrl-C, a stop that failed) may still run in the pool's only runspace:
            # the next one would queue behind it until script_timeout. Start from a fresh pool.
            if self._pool is not None:
                self.close()
            self._stale = False
            self.connect()
        try:
            return self._invoke(path, params, timeout)
        except _ShellGone as gone:
            if gone.started:
                self._stale = True
                raise StepFailed(
                    f"{path.name}: {self.name} closed our WinRM shell while the script ran (WinRM service restarted, or the shell was reclaimed)",
                    "the script may have run in part; run the task again (the next call opens a new shell)",
                ) from None
        # The shell vanished before the script started (a WinRM restart, an idle timeout):
        # nothing ran, so sending it once more on a new shell is safe.
        self.close()
        self.connect()
        try:
            return self._invoke(path, params, timeout)
        except _ShellGone:
            self._stale = True
            raise StepFailed(
                f"{path.name}: {self.name} closed a new WinRM shell at once",
                "check the guest's WinRM service (quotas: winrm get winrm/config/winrs) and its event log",
            ) from None

    def _invoke(self, path: Path, params: dict[str, Any] | None, timeout: float | None) -> Any:
        script = path.name
        from pypsrp.complex_objects import PSInvocationState
        from pypsrp.powershell import PowerShell

        limit = float(timeout or self.script_timeout)
        self.round_trips += 1
        retired = False
        ps = PowerShell(self._pool)
        # Local scope: the pool's one runspace is shared by every script of the run; nothing may leak between them.
        ps.add_script(load_script(path), use_local_scope=True)
        if params:
            ps.add_parameters({name: psrp_value(value) for name, value in params.items()})
        try:
            try:
                ps.begin_invoke()
            except Exception as exc:
                if _shell_gone(exc):
                    raise _ShellGone(started=False) from None
                raise
            deadline = time.monotonic() + limit
            while ps.state == PSInvocationState.RUNNING:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    try:
                        ps.stop()
                    except Exception:  # the stop is best effort; the timeout is the error to report
                        pass
                    # A stop only asks: a blocking .NET or P/Invoke call (DeviceIoControl on a pended
                    # IRP, CreateFileW, Task.Wait) ignores it, and the pool's one runspace stays busy,
                    # so every later script would queue behind it. The pool is retired (its shell
                    # deleted, which ends the hung process on the guest); the next call opens a new one.
                    retired = True
                    self._retire()
                    raise GuestTimeout(
                        f"{script} did not finish within {limit:g} s on {self.name}; stopped, and its WinRM shell "
                        "closed (a blocking call ignores a stop): the next script runs in a new one",
                        "a driver that pends a request or hangs in a routine is the usual cause: see `invoke logs`; "
                        "raise deploy.script_timeout if the step is legitimately slow",
                    )
                # Each receive waits at most this long on the server, so the deadline is honoured.
                try:
                    ps.poll_invoke(timeout=max(1, min(self.operation_timeout, int(remaining) + 1)))
                except Exception as exc:
                    if _is_read_timeout(exc):
                        # The server did not even send its operation-timeout reply: a hung or crashed
                        # guest. Reported as the guest timeout (regress forces a dump on it), at once.
                        # Never waited on again: the next call starts from a new pool.
                        self._stale = True
                        raise GuestTimeout(
                            f"{script}: {self.name} stopped answering (no reply within winrm.read_timeout = {self._kwargs['read_timeout']} s)",
                            "check the guest (bugcheck? hang?) with `invoke vm.status` / `invoke logs`",
                        ) from None
                    if _shell_gone(exc):
                        raise _ShellGone(started=True) from None
                    raise
        except KeyboardInterrupt:
            self._stale = True  # the script may still be running on the guest
            raise
        except (GuestTimeout, GuestScriptError, _ShellGone):
            raise
        except Exception as exc:
            raise self._fail(exc) from None
        finally:
            if not retired and ps.state != PSInvocationState.RUNNING:
                try:
                    ps.close()
                except Exception:  # releasing the server-side pipeline must not mask the result
                    pass
        # pypsrp sets had_errors only for a Failed pipeline; PowerShell's HadErrors is also true for
        # an error record written by a script that went on (every script runs under 'Stop', so a
        # record means something escaped it): a result that came with errors is not a success.
        if ps.had_errors or ps.state == PSInvocationState.FAILED or ps.streams.error:
            detail = _error_text(ps) or "the script reported an error"
            raise GuestScriptError(f"{script} failed on {self.name}: {detail}")
        try:
            return _json_results(ps.output)
        except NoJsonResult:
            raise GuestScriptError(f"{script} printed no JSON result on {self.name}") from None

    # -- files ----------------------------------------------------------------

    def chunk_size(self) -> int:
        """Raw bytes per Write-FileChunk call: one envelope's payload, minus overhead, before base64;
        at most MAX_CHUNK (a listener configured with a huge envelope would otherwise hit PowerShell's
        per-object size limit on the guest)."""
        return min(MAX_CHUNK, max(MIN_CHUNK, (self.max_payload_size - CHUNK_OVERHEAD) * 3 // 4 // 3 * 3))

    def push(self, local: Path, remote: str) -> PushResult:
        digest, size = sha256_file(local)
        partial = partial_name(remote)
        if size <= self.chunk_size():
            return self._push_one_shot(local, remote, partial, digest, size)
        state = self.run_script("Get-FileSha256.ps1", {"Path": remote})
        if isinstance(state, dict) and state.get("exists") and str(state.get("sha256", "")).lower() == digest:
            return PushResult(remote, digest, False, size)
        step = self.chunk_size()
        try:
            with Path(local).open("rb") as fh:
                offset = 0
                while True:
                    block = fh.read(step)
                    if not block and offset > 0:
                        break
                    self.run_script("Write-FileChunk.ps1", {"Path": partial, "Base64": base64.b64encode(block).decode("ascii"), "Offset": offset})
                    offset += len(block)
                    if not block:
                        break  # an empty file still gets created
            self.run_script("Complete-FileUpload.ps1", {"Partial": partial, "Path": remote, "Sha256": digest})
        except KeyboardInterrupt:
            raise  # no clean-up round trip after Ctrl-C: a stray .partial is harmless, a hang is not
        except BaseException:
            self._discard_partial(partial)
            raise
        return PushResult(remote, digest, True, size)

    def _push_one_shot(self, local: Path, remote: str, partial: str, digest: str, size: int) -> PushResult:
        """A file that fits one chunk (a driver, its INF and catalog): written and hash-checked in ONE
        round trip instead of three. Complete-FileUpload leaves an identical destination alone (so a
        loaded driver's unchanged image is never touched) and says whether it replaced it."""
        data = Path(local).read_bytes()
        items: list[tuple[str, dict[str, Any]]] = [
            ("Write-FileChunk.ps1", {"Path": partial, "Base64": base64.b64encode(data).decode("ascii"), "Offset": 0}),
            ("Complete-FileUpload.ps1", {"Partial": partial, "Path": remote, "Sha256": digest}),
        ]
        try:
            _, done = self.run_batch(items)
        except KeyboardInterrupt:
            raise  # no clean-up round trip after Ctrl-C (see push)
        except BaseException:
            self._discard_partial(partial)
            raise
        replaced = not (isinstance(done, dict) and done.get("replaced") is False)
        return PushResult(remote, digest, replaced, size)

    def _discard_partial(self, partial: str) -> None:
        """Best-effort removal of a failed push's partial file."""
        try:
            self.run_script("Complete-FileUpload.ps1", {"Partial": partial, "Discard": True}, timeout=30)
        except Exception:  # the connection may be gone: a stray .partial is harmless
            pass

    def pull(self, remote: str, local: Path) -> None:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".partial")
        step = self.chunk_size()
        try:
            with tmp.open("wb") as out:
                offset = 0
                while True:
                    data, size = self.read_file_range(remote, offset, step)
                    out.write(data)
                    offset += len(data)
                    if not data or offset >= size:
                        break
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(local)


def _is_read_timeout(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, requests.exceptions.ReadTimeout)


def bound_receive_retries(wsman: Any) -> None:
    """No hidden retries: pypsrp 0.9 retries every receive 5 more times after a read timeout, with
    backoff (about 4 minutes at the defaults), so a hung guest would be noticed that late and
    script_timeout would not hold. Each request is sent once; the caller decides what a timeout means."""
    transport = wsman.transport
    send = transport.send

    def send_once(message: bytes, *, retries_on_read_timeout: int = 0, timeout: Any = None) -> bytes:
        try:
            return send(message, retries_on_read_timeout=0, timeout=timeout)
        except Exception as exc:
            if _is_read_timeout(exc):
                transport.encryption = None  # what pypsrp does before its own retry: the context is stale
            raise

    transport.send = send_once


INT32 = range(-(2**31), 2**31)
INT64 = range(-(2**63), 2**63)


def psrp_value(value: Any) -> Any:
    """A parameter value as PSRP must carry it. pypsrp serializes every Python int as <I32>, so a
    FileTime (~1.3e17) would overflow on the guest: integers outside Int32 go as <I64>."""
    from pypsrp.serializer import TaggedValue

    if isinstance(value, bool) or not isinstance(value, int | list | tuple):
        return value
    if isinstance(value, list | tuple):
        return [psrp_value(v) for v in value]
    if value in INT32:
        return value
    if value in INT64:
        return TaggedValue("I64", value)
    return TaggedValue("U64", value) if 0 <= value < 2**64 else str(value)


class _ShellGone(Exception):
    """The server no longer knows our shell; `started`: the script had begun when it vanished."""

    def __init__(self, *, started: bool):
        super().__init__(started)
        self.started = started


# ERROR_WSMAN_INVALID_SELECTORS, what WinRM answers for a ShellId it does not know (unsure: the
# code is from pypsrp's is_alive and the MS-WSMV error table, not seen on a live host; the words
# are checked too).
SHELL_NOT_FOUND = 0x8033805B


def _shell_gone(exc: BaseException) -> bool:
    from pypsrp.exceptions import WSManFaultError

    if not isinstance(exc, WSManFaultError):
        return False
    return exc.code == SHELL_NOT_FOUND or "shell was not found" in (exc.reason or "").lower()


def _is_fault(exc: BaseException) -> bool:
    from pypsrp.exceptions import WSManFaultError

    return isinstance(exc, WSManFaultError)


def _quiet_close(thing: Any) -> None:
    try:
        thing.close()
    except Exception:  # closing after a failure must not replace the original error
        pass
