"""Connection failures translated to one line saying what happened and how to fix it.

Each transport catches the raw library exception (requests/pypsrp for WinRM,
socket/paramiko for SSH) at the boundary and raises what these functions return:
EnvironmentProblem (exit 3) for an unreachable or misconfigured guest,
StepFailed (exit 4) for a connection lost in the middle of an operation.
The exception types were checked against real loopback sockets (see
tests/integration/test_winrm_errors.py and test_ssh_transport.py); the WSMan
fault codes of a real Windows host were not.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ..core.errors import EnvironmentProblem, PipelineError, StepFailed


class WinRMFault(StepFailed):
    """The WinRM service answered, with a fault (quota, operation timeout while opening the pool,
    an HTTP error) or something unexpected: the guest is reachable, so reboot and regress loops must
    not wait for it to "come back" (it is not a lost connection). Exit code 4."""


class RemoteFileNotFound(StepFailed):
    """pull/read_range of a guest file that does not exist."""


class GuestTimeout(StepFailed):
    """A guest script ran longer than its timeout and was stopped."""


@dataclass
class Endpoint:
    """Where we tried to connect, for messages."""

    target: str  # config name, e.g. "win11"
    host: str
    port: int
    transport: str  # "winrm" | "ssh"
    scheme: str = ""  # http/https for WinRM
    user: str = ""
    auth: str = ""

    @property
    def where(self) -> str:
        return f"{self.transport} {self.scheme + '://' if self.scheme else ''}{self.host}:{self.port}"

    def key(self, name: str) -> str:
        return f"targets.{self.target}.{name}"


NOT_ADMIN = "the account is not an administrator on the guest, or its token is filtered (UAC remote restrictions: LocalAccountTokenFilterPolicy)"
NOT_ADMIN_FIX = (
    "use an account in the guest's Administrators group; for a local non-built-in account set "
    "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System LocalAccountTokenFilterPolicy=1 (DWORD)"
)

_DNS_WORDS = (
    "name or service not known",
    "nodename nor servname",
    "getaddrinfo failed",
    "nameresolutionerror",
    "temporary failure in name resolution",
    "no address associated",
    "failed to resolve",
)
_REFUSED_WORDS = ("connection refused", "connectionrefusederror", "errno 111", "winerror 10061", "actively refused")


def _chain_text(exc: BaseException) -> str:
    """Text of an exception and its causes (requests nests the socket error several levels deep)."""
    parts: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(f"{type(cur).__name__}: {cur}")
        cur = cur.__cause__ or cur.__context__
    return " | ".join(parts).lower()


def _network(ep: Endpoint, text: str, listener_fix: str) -> PipelineError | None:
    if any(w in text for w in _DNS_WORDS):
        return EnvironmentProblem(f"{ep.where}: cannot resolve host name {ep.host!r}", f"check {ep.key('host')} (DNS name or IP address)")
    if any(w in text for w in _REFUSED_WORDS):
        return EnvironmentProblem(f"{ep.where}: connection refused (nothing listens on port {ep.port})", listener_fix)
    if "no route to host" in text or "network is unreachable" in text or "errno 113" in text:
        return EnvironmentProblem(f"{ep.where}: no route to host", "is the VM running and on a network this machine can reach?")
    return None


# ---------------------------------------------------------------------------
# WinRM (requests + pypsrp)
# ---------------------------------------------------------------------------

WINRM_LISTENER_FIX = (
    "check the port (5986 HTTPS / 5985 HTTP) and that the guest has a WinRM listener "
    "(winrm enumerate winrm/config/listener; Enable-PSRemoting) and the firewall allows it"
)


def translate_winrm(exc: BaseException, ep: Endpoint, *, connect_timeout: float, read_timeout: float) -> PipelineError:
    """A requests/pypsrp exception -> one clear line with a fix."""
    import requests.exceptions as rex
    from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError

    if isinstance(exc, PipelineError):
        return exc
    text = _chain_text(exc)
    # SSLError and ConnectTimeout are ConnectionErrors too: test the specific ones first.
    if isinstance(exc, rex.SSLError) or "certificate verify failed" in text or "sslerror" in text:
        if "hostname mismatch" in text or "doesn't match" in text or "does not match" in text:
            return EnvironmentProblem(
                f"{ep.where}: the listener's TLS certificate does not name {ep.host} (name mismatch)",
                f"connect by a name or address the certificate holds, or re-create the listener certificate for {ep.host} (invoke provision does)",
            )
        if "certificate verify failed" in text or "self-signed" in text or "self signed" in text:
            return EnvironmentProblem(
                f"{ep.where}: the server's TLS certificate is not trusted ({_ssl_reason(text)})",
                f"set {ep.key('winrm.ca_bundle')} to the listener's certificate (PEM) or CA, "
                f"or {ep.key('winrm.cert_validation')} = false for a throwaway lab VM",
            )
        return EnvironmentProblem(
            f"{ep.where}: TLS handshake failed ({_ssl_reason(text)})",
            f"is the listener HTTPS? for an HTTP listener set {ep.key('winrm.ssl')} = false and port 5985",
        )
    if isinstance(exc, rex.ConnectTimeout):
        return EnvironmentProblem(
            f"{ep.where}: no answer to the connection within {connect_timeout:g} s",
            "is the VM running and reachable? check the address, the port and the guest firewall",
        )
    if isinstance(exc, rex.ReadTimeout):
        return EnvironmentProblem(
            f"{ep.where}: connected, but the server sent no reply within {read_timeout:g} s",
            f"the guest may be rebooting or overloaded; check it is a WinRM listener, or raise {ep.key('winrm.read_timeout')}",
        )
    if isinstance(exc, rex.ConnectionError):
        net = _network(ep, text, WINRM_LISTENER_FIX)
        if net is not None:
            return net
        if "remotedisconnected" in text or "connection aborted" in text or "connection reset" in text:
            return StepFailed(f"{ep.where}: the connection was closed by the guest", "the guest may be rebooting; retry")
        return EnvironmentProblem(f"{ep.where}: cannot connect ({_first(text)})", WINRM_LISTENER_FIX)
    if isinstance(exc, AuthenticationError) or (isinstance(exc, WinRMTransportError) and exc.code == 401):
        if "did not response with one of the following" in text or "incompatible with the specified auth" in text:
            offered = str(exc).rsplit("actual:", 1)[-1].strip(" '") if "actual:" in str(exc) else "another method"
            return EnvironmentProblem(
                f"{ep.where}: the server does not offer {ep.auth} authentication (it offers: {offered or 'nothing'})",
                f"set {ep.key('winrm.auth')} to a method the listener allows (winrm get winrm/config/service/auth)",
            )
        return EnvironmentProblem(
            f"{ep.where}: authentication failed for user {ep.user!r} ({ep.auth})",
            f'check {ep.key("user")} and the password in {ep.key("password_env")}; local accounts: auth = "ntlm"; domain accounts: DOMAIN\\user or user@REALM',
        )
    if isinstance(exc, WSManFaultError):
        reason = (exc.reason or "").strip()
        if exc.code in (5, "5") or "access is denied" in reason.lower() or "access denied" in text:
            return EnvironmentProblem(f"{ep.where}: {NOT_ADMIN}", NOT_ADMIN_FIX)
        code = f" {exc.code}" if exc.code not in (None, "") else ""
        return WinRMFault(
            f"{ep.where}: WinRM fault{code}: {_first(reason) or _first(str(exc)) or 'no details'}",
            "the WinRM service answered with an error (quotas: winrm get winrm/config/winrs); see the guest's WinRM event log",
        )
    if isinstance(exc, WinRMTransportError):
        body = _first(str(exc.response_text or ""))
        return WinRMFault(
            f"{ep.where}: WinRM answered HTTP {exc.code}" + (f": {body[:200]}" if body else ""),
            "check the WinRM service on the guest (winrm quickconfig) and its event log",
        )
    if isinstance(exc, ValueError):
        # pypsrp refuses impossible combinations (e.g. message encryption with basic auth) with ValueError.
        from ..core.errors import ConfigError

        return ConfigError(f"{ep.where}: {_first(str(exc))}", f"fix {ep.key('winrm')} in the user config")
    if "spnego" in text or "ntlm" in text or "gssapi" in text or "kerberos" in text:
        return EnvironmentProblem(
            f"{ep.where}: {ep.auth} authentication could not start ({_first(str(exc))})",
            'for local accounts use auth = "ntlm"; Kerberos needs a ticket (kinit) and a DNS name',
        )
    return WinRMFault(f"{ep.where}: {type(exc).__name__}: {_first(str(exc))}", "an unexpected WinRM client error; run again with the guest checked")


def _ssl_reason(text: str) -> str:
    for marker in ("certificate verify failed: ", "ssl: "):
        if marker in text:
            return text.split(marker, 1)[1].split(")", 1)[0].split("|", 1)[0].strip(" '\"")[:120]
    return "TLS error"


def _first(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


# ---------------------------------------------------------------------------
# SSH (socket + paramiko)
# ---------------------------------------------------------------------------

SSH_LISTENER_FIX = (
    "is the OpenSSH server running on the guest? (Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0; Start-Service sshd) and is the port right?"
)


class UnknownHostKey(Exception):
    """Raised by our host-key policy when the server's key is not in known_hosts."""

    def __init__(self, hostname: str, key_type: str, fingerprint: str):
        super().__init__(hostname)
        self.hostname = hostname
        self.key_type = key_type
        self.fingerprint = fingerprint


def translate_ssh(exc: BaseException, ep: Endpoint, *, known_hosts: str, connect_timeout: float) -> PipelineError:
    import paramiko

    if isinstance(exc, PipelineError):
        return exc
    text = _chain_text(exc)
    if isinstance(exc, UnknownHostKey):
        port_arg = f"-p {ep.port} " if ep.port != 22 else ""
        return EnvironmentProblem(
            f"{ep.where}: host key not known ({exc.key_type} {exc.fingerprint}); refusing to connect",
            f"verify the fingerprint on the guest, then `ssh-keyscan {port_arg}{ep.host} >> {known_hosts}`, "
            f"or set {ep.key('ssh.trust_on_first_use')} = true to record it on first use",
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return EnvironmentProblem(
            f"{ep.where}: HOST KEY MISMATCH: the server's {exc.key.get_name()} key differs from {known_hosts} "
            "(reinstalled guest, or someone in the middle); refusing to connect",
            f"if the guest was really reinstalled: ssh-keygen -R {_known_name(ep)} -f {known_hosts}, then reconnect",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return EnvironmentProblem(
            f"{ep.where}: authentication failed for user {ep.user!r}",
            f"check {ep.key('user')}, {ep.key('ssh.key_file')} (the guest's administrators_authorized_keys for admin accounts) "
            f"or the password in {ep.key('password_env')}",
        )
    if isinstance(exc, socket.gaierror):
        return EnvironmentProblem(f"{ep.where}: cannot resolve host name {ep.host!r}", f"check {ep.key('host')} (DNS name or IP address)")
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) or isinstance(exc, ConnectionRefusedError):
        net = _network(ep, text, SSH_LISTENER_FIX)
        return net or EnvironmentProblem(f"{ep.where}: connection refused", SSH_LISTENER_FIX)
    if isinstance(exc, TimeoutError | socket.timeout):
        return EnvironmentProblem(
            f"{ep.where}: no answer within {connect_timeout:g} s",
            f"is the VM running and reachable? check the address, the port and the guest firewall, or raise {ep.key('ssh.connect_timeout')}",
        )
    if isinstance(exc, paramiko.SSHException) and any(w in text for w in ("protocol banner", "no existing session", "negotiation failed")):
        # Which of these paramiko raises depends on whether its banner or handshake timer fires first.
        return EnvironmentProblem(
            f"{ep.where}: the server did not speak SSH (no handshake within {connect_timeout:g} s)",
            "check the port: is it the guest's sshd? is the guest overloaded?",
        )
    net = _network(ep, text, SSH_LISTENER_FIX)
    if net is not None:
        return net
    if isinstance(exc, EOFError | ConnectionResetError | BrokenPipeError) or "connection reset" in text or "socket is closed" in text:
        return StepFailed(f"{ep.where}: the connection was lost", "the guest may be rebooting or sshd was stopped; retry")
    if isinstance(exc, paramiko.SSHException):
        return StepFailed(f"{ep.where}: SSH error: {_first(str(exc))}")
    return StepFailed(f"{ep.where}: {type(exc).__name__}: {_first(str(exc))}")


def _known_name(ep: Endpoint) -> str:
    return ep.host if ep.port == 22 else f"[{ep.host}]:{ep.port}"
