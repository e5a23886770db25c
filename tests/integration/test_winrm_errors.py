"""WinRM connection failures against REAL loopback sockets, each mapped to one clear line.

No Windows here: these servers only reproduce what a broken or unreachable
WinRM endpoint does on the wire (closed port, HTTP 401, silence, an untrusted
TLS certificate). pypsrp and requests run unmodified; every wait is short.
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.errors import ConfigError, EnvironmentProblem, ExitCode
from driverpipe.transports.winrm import WinRMGuest
from winrm_peer import self_signed_listener

pytestmark = pytest.mark.timeout(60)

LOOPBACK = "127.0.0.1"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests honours proxy variables: loopback must stay loopback.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", LOOPBACK)


class _Handler(BaseHTTPRequestHandler):
    mode = "401"
    seen: list[str]

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen.append(self.headers.get("Authorization", ""))  # type: ignore[attr-defined]
        self.send_response(401)
        if self.server.offer:  # type: ignore[attr-defined]
            for scheme in self.server.offer:  # type: ignore[attr-defined]
                self.send_header("WWW-Authenticate", scheme)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, offer: list[str]):
        super().__init__((LOOPBACK, 0), _Handler)
        self.offer = offer
        self.seen: list[str] = []


def _serve(server: _Server) -> Iterator[_Server]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def http_401() -> Iterator[_Server]:
    yield from _serve(_Server(["Negotiate", 'Basic realm="WSMAN"']))


@pytest.fixture
def http_401_basic_only() -> Iterator[_Server]:
    yield from _serve(_Server(['Basic realm="WSMAN"']))


def _guest(port: int, **kw: Any) -> WinRMGuest:
    args: dict[str, Any] = dict(
        name="lab",
        host=LOOPBACK,
        user="tester",
        password="not-a-real-password",
        port=port,
        ssl=False,
        auth="ntlm",
        connection_timeout=2,
        read_timeout=2,
        operation_timeout=1,
        say=lambda _s: None,
    )
    args.update(kw)
    return WinRMGuest(**args)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens once the socket is closed


def test_connection_refused_is_one_line_with_a_fix() -> None:
    port = _closed_port()
    with pytest.raises(EnvironmentProblem) as info:
        _guest(port)
    err = info.value
    assert err.exit_code == ExitCode.ENVIRONMENT
    assert f"127.0.0.1:{port}" in err.message and "connection refused" in err.message
    assert err.hint and "listener" in err.hint
    assert "\n" not in err.one_line()


def test_http_401_is_an_authentication_failure(http_401: _Server) -> None:
    port = http_401.server_address[1]
    with pytest.raises(EnvironmentProblem) as info:
        _guest(port, auth="ntlm")
    assert "authentication failed for user 'tester'" in info.value.message
    assert info.value.hint and "password_env" in info.value.hint
    assert any(h.startswith(("Negotiate ", "NTLM ")) for h in http_401.seen), "NTLM negotiation really happened"
    assert "not-a-real-password" not in info.value.one_line()


def test_http_401_with_allowed_basic_over_http_warns_and_fails_auth(http_401: _Server) -> None:
    said: list[str] = []
    port = http_401.server_address[1]
    with pytest.raises(EnvironmentProblem) as info:
        _guest(port, auth="basic", allow_basic_http=True, say=said.append)
    assert "authentication failed" in info.value.message
    assert any("clear text" in line for line in said), said
    assert any(h.startswith("Basic ") for h in http_401.seen)


def test_basic_over_http_refused_without_the_explicit_setting() -> None:
    with pytest.raises(ConfigError) as info:
        _guest(_closed_port(), auth="basic")
    assert "clear text" in info.value.message and info.value.hint and "allow_basic_http" in info.value.hint


def test_server_offering_another_auth_method(http_401_basic_only: _Server) -> None:
    port = http_401_basic_only.server_address[1]
    with pytest.raises(EnvironmentProblem) as info:
        _guest(port, auth="ntlm")
    assert "does not offer ntlm" in info.value.message
    assert "Basic" in info.value.message
    assert info.value.hint and "winrm.auth" in info.value.hint


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_server_that_never_answers_times_out_with_a_clear_line(silent_server: int) -> None:
    with pytest.raises(EnvironmentProblem) as info:
        _guest(silent_server, read_timeout=1, operation_timeout=0.5)
    assert "no reply within 1 s" in info.value.message
    assert info.value.hint and "read_timeout" in info.value.hint


@pytest.fixture
def tls_401(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    cert, key = self_signed_listener(tmp_path)
    server = _Server(["Negotiate"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for s in _serve(server):
        yield s.server_address[1], cert


def test_self_signed_certificate_names_ca_bundle_and_cert_validation(tls_401: tuple[int, Path]) -> None:
    port, _cert = tls_401
    with pytest.raises(EnvironmentProblem) as info:
        _guest(port, ssl=True)
    err = info.value
    assert "TLS certificate is not trusted" in err.message and f"https://127.0.0.1:{port}" in err.message
    assert err.hint and "winrm.ca_bundle" in err.hint and "winrm.cert_validation" in err.hint


def test_ca_bundle_makes_the_certificate_trusted(tls_401: tuple[int, Path]) -> None:
    port, cert = tls_401
    # TLS now succeeds; the fake listener then refuses the credentials.
    with pytest.raises(EnvironmentProblem) as info:
        _guest(port, ssl=True, ca_bundle=str(cert))
    assert "authentication failed" in info.value.message


# -- mappings that need a real Windows host (or DNS) to reproduce: exercised with the library's own exception types --


def _ep() -> Any:
    from driverpipe.transports.errors import Endpoint

    return Endpoint("lab", "win11.lab", 5986, "winrm", scheme="https", user="tester", auth="negotiate")


def _map(exc: BaseException) -> Any:
    from driverpipe.transports.errors import translate_winrm

    return translate_winrm(exc, _ep(), connect_timeout=30, read_timeout=30)


def test_mapping_dns_failure() -> None:
    import requests.exceptions

    try:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as inner:
            raise requests.exceptions.ConnectionError("Max retries exceeded (NameResolutionError)") from inner
    except requests.exceptions.ConnectionError as exc:
        err = _map(exc)
    assert isinstance(err, EnvironmentProblem) and "cannot resolve host name 'win11.lab'" in err.message
    assert err.hint and "targets.lab.host" in err.hint


def test_mapping_access_denied_fault_is_not_admin() -> None:
    from pypsrp.exceptions import WSManFaultError

    err = _map(WSManFaultError(5, "win11", "Access is denied.", None, None, None))
    assert isinstance(err, EnvironmentProblem) and "not an administrator" in err.message
    assert "LocalAccountTokenFilterPolicy" in err.message and err.hint and "Administrators" in err.hint


def test_mapping_other_faults_and_http_errors_are_step_failures() -> None:
    from pypsrp.exceptions import WinRMTransportError, WSManFaultError

    from driverpipe.core.errors import StepFailed

    err = _map(WSManFaultError(2150858843, "win11", "The WS-Management service cannot process the request.\nmore", None, None, None))
    assert isinstance(err, StepFailed) and "cannot process the request" in err.message and "\n" not in err.message
    err = _map(WinRMTransportError("http", 500, "<html>Internal error</html>"))
    assert isinstance(err, StepFailed) and "HTTP 500" in err.message
    assert isinstance(_map(WinRMTransportError("http", 401, "")), EnvironmentProblem)


def test_a_receive_that_times_out_is_sent_once_not_retried_for_minutes(silent_server: int) -> None:
    """pypsrp 0.9 retries each receive 5 more times with backoff (~4 min at the defaults); our
    transport sends each request once, so a hung guest is noticed within read_timeout."""
    import requests
    from pypsrp.wsman import WSMan

    from driverpipe.transports.winrm import bound_receive_retries

    wsman = WSMan(LOOPBACK, port=silent_server, username="u", password="p", ssl=False, auth="basic", encryption="never", read_timeout=1, connection_timeout=2)
    bound_receive_retries(wsman)
    calls: list[int] = []
    original = wsman.transport._send_request

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    wsman.transport._send_request = counting  # type: ignore[method-assign]
    start = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        wsman.transport.send(b"<receive/>", retries_on_read_timeout=5)  # what pypsrp's receive() asks for
    assert len(calls) == 1 and time.monotonic() - start < 5


def test_wsman_faults_and_unexpected_errors_are_not_lost_connections() -> None:
    """Reboot and regress loops retry lost connections until reboot_timeout: a fault from a
    service that answered must not be one of them."""
    from pypsrp.exceptions import WSManFaultError

    from driverpipe.targets.reboot import is_connection_error
    from driverpipe.transports.errors import WinRMFault

    # pypsrp's WSManFaultError args: code, machine, reason, provider, provider_path, provider_fault.
    quota = WSManFaultError(2150858843, "win11", "The WS-Management service cannot process the request: quota exceeded.", None, None, None)
    err = _map(quota)
    assert isinstance(err, WinRMFault) and not is_connection_error(err) and "quota exceeded" in err.message
    no_code = _map(WSManFaultError(None, None, "", None, None, None))
    assert "None" not in no_code.message
    odd = _map(RuntimeError("pool in a strange state"))
    assert isinstance(odd, WinRMFault) and not is_connection_error(odd)
