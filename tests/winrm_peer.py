"""A loopback WinRM endpoint for the tests: the other side of the WinRM transport, built on
independent implementations of its protocols, so every message our client (pypsrp under
driverpipe.transports.winrm) sends is parsed by code that is not the client's.

- HTTP/1.1 and HTTPS (a self-signed certificate made here), keep-alive connections.
- Authentication: SPNEGO/NTLM through pyspnego's acceptor (credentials from a private
  NTLM_USER_FILE), with the TLS channel binding checked over HTTPS, and WinRM message
  encryption (multipart/encrypted, HTTP-SPNEGO-session-encrypted) over HTTP.
- WS-Management: Get (the listener's config: MaxEnvelopeSizekb), Create, Command, Send,
  Receive (blocking up to the request's OperationTimeout, then the w:TimedOut fault), Signal
  (Ctrl-C and terminate) and Delete of a PowerShell shell.
- PSRP: psrpcore's server runspace pool and pipelines: fragments reassembled, messages
  deserialized, answers serialized and fragmented to the client's envelope size.

Scripts are recognised by their text (what the transport really sends, #include lines
expanded) and answered by the fake-guest handlers (tests/fakes) against a FakeWindows, after
the parameters psrpcore deserialized were bound to the script's param() types the way
PowerShell's binder does (an Int64 beyond Int32 into [int] fails, a string into [bool] fails).

Never shipped, never listening beyond 127.0.0.1. Windows' own WinRM service and PowerShell are
NOT what answers here: this proves the client speaks the protocols, not how Windows behaves.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import os
import re
import socket
import ssl
import struct
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from driverpipe.core.scripts import SCRIPTS_DIR, load_script
from driverpipe.parse.psgrammar import ScriptInfo, parse_script
from driverpipe.transports.base import GuestScriptError

LOOPBACK = "127.0.0.1"
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "wsmv": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "wst": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
    "wsmanfault": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)

ACTION = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL_ACTION = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
# MS-WSMV 2.2.5.6 enumerates "powershell/signal/ctrl_c"; MS-PSRP 3.1.5.3.9 spells it "crtl_c": both are accepted.
CTRL_C = ("powershell/signal/ctrl_c", "powershell/signal/crtl_c")
TERMINATE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate"
DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
TIMED_OUT = 2150858793  # ERROR_WSMAN_OPERATION_TIMEDOUT: a Receive with nothing to say
SHELL_NOT_FOUND = 2150858843  # 0x8033805B: the ShellId names no shell (unsure: the code Windows sends)
ENCRYPTED = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"


class ProtocolError(Exception):
    """The client sent something this peer (like Windows) refuses."""


# ----------------------------------------------------------------------------------------------
# Scripts: which one is running, and PowerShell's parameter binding for the types they declare
# ----------------------------------------------------------------------------------------------


def _shipped_scripts() -> dict[str, str]:
    """Text as sent -> script name, for every shipped guest script (run directly or as a batch item)."""
    return {load_script(path): path.name for path in sorted(SCRIPTS_DIR.glob("*.ps1"))}


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _convert(script: str, name: str, declared: str, value: Any) -> Any:
    """One bound value converted to its declared type as PowerShell's binder does for these types;
    a value PowerShell refuses raises GuestScriptError with PowerShell's wording."""

    def refuse(why: str) -> GuestScriptError:
        return GuestScriptError(f"Cannot process argument transformation on parameter '{name}'. {why}")

    if declared in ("", "object", "pscustomobject", "psobject"):
        return value
    if declared.endswith("[]"):
        items = value if isinstance(value, list) else [value]
        return [_convert(script, name, declared[:-2], item) for item in items]
    if isinstance(value, list):
        if declared == "string":
            return " ".join(str(_convert(script, name, "string", v)) for v in value)  # $OFS
        raise refuse(f'Cannot convert the "System.Object[]" value of type "System.Object[]" to type "{declared}".')
    if declared == "string":
        if value is None:
            return ""
        if isinstance(value, bool):
            return "True" if value else "False"
        return str(value)
    if declared in ("bool", "switch"):
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        raise refuse(
            f'Cannot convert value "{type(value).__name__}" to type "System.Boolean". Boolean parameters accept only '
            "Boolean values and numbers, such as $True, $False, 1 or 0."
        )
    if declared in ("int", "int32", "long", "int64"):
        low, high = _INT32 if declared in ("int", "int32") else _INT64
        number: int
        if isinstance(value, bool):
            number = int(value)
        elif isinstance(value, int):
            number = int(value)
        elif isinstance(value, float):
            number = round(value)
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            number = int(value)
        else:
            raise refuse(f'Cannot convert value "{value}" to type "System.Int{32 if high == _INT32[1] else 64}". Input string was not in a correct format.')
        if not low <= number <= high:
            bits = 32 if high == _INT32[1] else 64
            raise refuse(f'Cannot convert value "{value}" to type "System.Int{bits}". Error: "Value was either too large or too small for an Int{bits}."')
        return number
    if declared == "double":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise refuse(f'Cannot convert value "{value}" to type "System.Double".') from None
    return value


@functools.cache
def _declared(script: str) -> ScriptInfo:
    return parse_script(SCRIPTS_DIR / script)


def bind(script: str, params: dict[str, Any]) -> dict[str, Any]:
    """Parameters bound to the script's param() block: names (case-insensitive, whole names), types,
    mandatory ones present. What PowerShell would refuse raises GuestScriptError."""
    info = _declared(script)
    declared = {n.lower(): n for n in info.params}
    bound: dict[str, Any] = {}
    for given, value in params.items():
        real = declared.get(given.lower())
        if real is None:
            raise GuestScriptError(f"A parameter cannot be found that matches parameter name '{given}'.")
        bound[real] = _convert(script, real, info.types.get(real, ""), value)
    missing = [n for n, mandatory in info.params.items() if mandatory and n not in bound]
    if missing:
        raise GuestScriptError(f"Cannot process command because of one or more missing mandatory parameters: {' '.join(missing)}.")
    return bound


def _plain(value: Any) -> Any:
    """psrpcore's deserialized objects as plain Python (PSInt -> int, PSList -> list, PSString -> str)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------------------------
# The guest behind the endpoint
# ----------------------------------------------------------------------------------------------


@dataclass
class Knobs:
    """What the tests make the endpoint do."""

    max_envelope_kb: int = 500  # the listener's MaxEnvelopeSizekb (Windows' default)
    hang: set[str] = field(default_factory=set)  # script names that never finish (until stopped)
    # Script names that block for ever in a call PowerShell cannot interrupt (a DeviceIoControl on a
    # pended IRP, a Task.Wait()): a stop is acknowledged and changes nothing; only deleting the shell
    # (which ends its process on Windows) ends them.
    block: set[str] = field(default_factory=set)
    write_error: dict[str, str] = field(default_factory=dict)  # script -> a non-terminating error record it writes
    drop_shell_on: str | None = None  # the shell disappears while this script runs
    drop_shell_before_next: bool = False  # the shell disappears before the next Command
    reject_auth_after: int | None = None  # after N SOAP requests the password changes: every request gets 401


@dataclass
class Stats:
    pools_opened: int = 0
    pools_closed: int = 0
    scripts: list[str] = field(default_factory=list)  # every pipeline's script, in order
    params: list[dict[str, Any]] = field(default_factory=list)  # what the binder received (before conversion)
    wire_types: list[dict[str, str]] = field(default_factory=list)  # psrpcore's type of each value (PSInt, PSInt64, bool...)
    batch_items: list[list[str]] = field(default_factory=list)  # the scripts inside each Invoke-Batch pipeline
    actions: list[str] = field(default_factory=list)  # every WSMan action, short name
    auth_rejected: int = 0
    soap_requests: int = 0
    encrypted: int = 0  # SOAP requests that came sealed (multipart/encrypted)
    protocol_errors: list[str] = field(default_factory=list)
    requests: int = 0


class _Pipeline:
    def __init__(self, psrp: Any, command_id: str):
        self.psrp = psrp
        self.command_id = command_id
        self.script = ""
        self.blocked = False  # it (or a batch item in it) blocks in a call a stop cannot interrupt
        self.finished = False
        self.stop = threading.Event()


class _Shell:
    def __init__(self, shell_id: str, fragment_limit: int):
        from psrpcore import ServerRunspacePool

        self.id = shell_id
        self.pool = ServerRunspacePool()
        self.fragment_limit = fragment_limit
        self.queues: dict[str | None, list[bytes]] = {}  # command id (None: the pool) -> fragments to send
        self.pipelines: dict[str, _Pipeline] = {}
        # The pool's one runspace (pypsrp opens min = max = 1): a pipeline waits until the one before it ended.
        self.runspace = threading.Lock()
        self.deleted = threading.Event()


class WinRMPeer:
    """Start with `with WinRMPeer(machine, ...) as peer:`; connect WinRMGuest to peer.port."""

    def __init__(
        self,
        machine: Any,
        *,
        user: str = "tester",
        password: str = "Pa55 wörd",
        tls: bool = False,
        basic: bool = False,
        allow_unencrypted: bool = False,
        work_dir: Path,
    ):
        self.machine = machine
        self.user = user
        self.password = password
        self.tls = tls
        self.basic = basic  # the listener's Auth/Basic: offered and accepted next to Negotiate
        self.allow_unencrypted = allow_unencrypted  # the listener's AllowUnencrypted (HTTP without sealing)
        self.current_password = password
        self.work_dir = work_dir
        self.knobs = Knobs()
        self.stats = Stats()
        self.lock = threading.Condition()
        self.shells: dict[str, _Shell] = {}
        self.scripts = _shipped_scripts()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._saved_env: str | None = None
        self.cert_pem: Path | None = None
        self.cert_hash = b""
        self.password_file = work_dir / "ntlm-users"

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> WinRMPeer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._write_users(self.password)
        self._saved_env = os.environ.get("NTLM_USER_FILE")
        os.environ["NTLM_USER_FILE"] = str(self.password_file)
        server = _Server((LOOPBACK, 0), _Handler, self)
        if self.tls:
            server.socket = self._tls_context().wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            with self.lock:
                for shell in self.shells.values():
                    for pipe in shell.pipelines.values():
                        pipe.stop.set()
                self.lock.notify_all()
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._saved_env is None:
            os.environ.pop("NTLM_USER_FILE", None)
        else:
            os.environ["NTLM_USER_FILE"] = self._saved_env

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def _write_users(self, password: str) -> None:
        # pyspnego's NTLM acceptor reads DOMAIN:USER:PASSWORD lines; both the bare and a domain form.
        self.password_file.write_text(f":{self.user}:{password}\nWIN11-TEST:{self.user}:{password}\n", encoding="utf-8")
        self.password_file.chmod(0o600)

    def _tls_context(self) -> ssl.SSLContext:
        self.cert_pem, key_pem = self_signed_listener(self.work_dir)
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        # RFC 5929 tls-server-end-point: the certificate's hash with its signature's hash (SHA-256 here).
        der = x509.load_pem_x509_certificate(self.cert_pem.read_bytes()).public_bytes(serialization.Encoding.DER)
        digest = hashes.Hash(hashes.SHA256())
        digest.update(der)
        self.cert_hash = digest.finalize()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_pem, key_pem)
        return context

    # -- knobs used while running ---------------------------------------------------------------

    def change_password(self, password: str) -> None:
        self.current_password = password
        self._write_users(password)

    def drop_all_shells(self) -> None:
        """The WinRM service forgets every shell (a service restart): later requests naming them fault."""
        with self.lock:
            for shell in self.shells.values():
                shell.deleted.set()
                for pipe in shell.pipelines.values():
                    pipe.stop.set()
            self.shells.clear()
            self.lock.notify_all()

    # -- WSMan ----------------------------------------------------------------------------------

    def handle_soap(self, body: bytes) -> bytes:
        envelope = ET.fromstring(body)
        header = envelope.find("s:Header", NS)
        payload = envelope.find("s:Body", NS)
        if header is None or payload is None:
            raise ProtocolError("not a SOAP envelope")
        action = (header.findtext("wsa:Action", "", NS) or "").strip()
        message_id = (header.findtext("wsa:MessageID", "", NS) or "").strip()
        resource = (header.findtext("wsman:ResourceURI", "", NS) or "").strip()
        selectors = {s.get("Name", ""): (s.text or "") for s in header.findall("wsman:SelectorSet/wsman:Selector", NS)}
        timeout = _duration(header.findtext("wsman:OperationTimeout", "PT20S", NS) or "PT20S")
        envelope_limit = int(header.findtext("wsman:MaxEnvelopeSize", "153600", NS) or "153600")
        short = action.rsplit("/", 1)[-1]
        with self.lock:
            self.stats.actions.append(short)
        if action == ACTION + "Get" and resource.endswith("/wsman/1/config"):
            return self._reply(message_id, action + "Response", self._config())
        if action == ACTION + "Create":
            return self._reply(message_id, action + "Response", *self._create(payload, resource, envelope_limit))
        shell = self._shell(selectors.get("ShellId", ""))
        if action == SHELL_ACTION + "Command":
            return self._reply(message_id, action + "Response", self._command(shell, payload))
        if action == SHELL_ACTION + "Send":
            return self._reply(message_id, action + "Response", self._send(shell, payload))
        if action == SHELL_ACTION + "Receive":
            return self._reply(message_id, action + "Response", self._receive(shell, payload, timeout))
        if action == SHELL_ACTION + "Signal":
            return self._reply(message_id, action + "Response", self._signal(shell, payload))
        if action == ACTION + "Delete":
            with self.lock:
                self.shells.pop(shell.id, None)
                self.stats.pools_closed += 1
                shell.deleted.set()  # Windows ends the shell's process: a blocked pipeline dies with it
                for pipe in shell.pipelines.values():
                    pipe.stop.set()
                self.lock.notify_all()
            return self._reply(message_id, action + "Response")
        raise ProtocolError(f"unsupported WSMan action {action!r}")

    def _reply(self, relates_to: str, action: str, *body: ET.Element) -> bytes:
        envelope = ET.Element(f"{{{NS['s']}}}Envelope")
        header = ET.SubElement(envelope, f"{{{NS['s']}}}Header")
        ET.SubElement(header, f"{{{NS['wsa']}}}Action").text = action
        ET.SubElement(header, f"{{{NS['wsa']}}}MessageID").text = f"uuid:{uuid.uuid4()}".upper()
        ET.SubElement(header, f"{{{NS['wsa']}}}RelatesTo").text = relates_to
        out = ET.SubElement(envelope, f"{{{NS['s']}}}Body")
        for element in body:
            out.append(element)
        return ET.tostring(envelope, encoding="utf-8")

    def _config(self) -> ET.Element:
        config = ET.Element(f"{{{NS['cfg']}}}Config")
        ET.SubElement(config, f"{{{NS['cfg']}}}MaxEnvelopeSizekb").text = str(self.knobs.max_envelope_kb)
        ET.SubElement(config, f"{{{NS['cfg']}}}MaxTimeoutms").text = "60000"
        return config

    def _shell(self, shell_id: str) -> _Shell:
        with self.lock:
            shell = self.shells.get(shell_id.upper())
        if shell is None:
            raise WSManFault(
                SHELL_NOT_FOUND,
                f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found on the server. "
                "Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the server.",
            )
        return shell

    def _create(self, body: ET.Element, resource: str, envelope_limit: int) -> tuple[ET.Element, ET.Element]:
        from psrpcore.types import RunspacePoolState

        spec = body.find("rsp:Shell", NS)
        if spec is None:
            raise ProtocolError("Create without a rsp:Shell")
        creation = spec.find("{http://schemas.microsoft.com/powershell}creationXml")
        if creation is None or not (creation.text or "").strip():
            raise ProtocolError("a PowerShell shell needs creationXml (SessionCapability + InitRunspacePool)")
        shell_id = (spec.get("ShellId") or str(uuid.uuid4())).upper()
        # What one Receive may carry: the client's envelope, minus the SOAP around it, before base64.
        shell = _Shell(shell_id, max(1024, (envelope_limit - 4096) * 3 // 4))
        self.machine.connect_attempt()
        with self.lock:
            self._feed(shell, None, base64.b64decode(creation.text or "", validate=True))
            if shell.pool.state != RunspacePoolState.Opened:
                raise ProtocolError(f"the runspace pool did not open (state {shell.pool.state.name})")
            self.shells[shell_id] = shell
            self.stats.pools_opened += 1
        created = ET.Element(f"{{{NS['wst']}}}ResourceCreated")
        ET.SubElement(created, f"{{{NS['wsa']}}}Address").text = f"http://{LOOPBACK}/wsman"
        refs = ET.SubElement(created, f"{{{NS['wsa']}}}ReferenceParameters")
        ET.SubElement(refs, f"{{{NS['wsman']}}}ResourceURI").text = resource
        selectors = ET.SubElement(refs, f"{{{NS['wsman']}}}SelectorSet")
        ET.SubElement(selectors, f"{{{NS['wsman']}}}Selector", Name="ShellId").text = shell_id
        info = ET.Element(f"{{{NS['rsp']}}}Shell")
        ET.SubElement(info, f"{{{NS['rsp']}}}ShellId").text = shell_id
        ET.SubElement(info, f"{{{NS['rsp']}}}ResourceUri").text = resource
        ET.SubElement(info, f"{{{NS['rsp']}}}Owner").text = self.user
        ET.SubElement(info, f"{{{NS['rsp']}}}ClientIP").text = LOOPBACK
        ET.SubElement(info, f"{{{NS['rsp']}}}OutputStreams").text = "stdout"
        return created, info

    def _feed(self, shell: _Shell, command_id: str | None, data: bytes) -> None:
        """PSRP fragments from the client into psrpcore; act on the events; queue its answers. Lock held."""
        from psrpcore import PSRPPayload, StreamType
        from psrpcore.types import PSRPMessageType

        pid = uuid.UUID(command_id) if command_id else None
        shell.pool.receive_data(PSRPPayload(data, StreamType.default, pid))
        while True:
            try:
                event = shell.pool.next_event()
            except Exception as exc:  # psrpcore refused the message: so would PowerShell
                self.stats.protocol_errors.append(f"{type(exc).__name__}: {exc}")
                raise ProtocolError(f"malformed PSRP data: {exc}") from None
            if event is None:
                break
            if event.message_type == PSRPMessageType.CreatePipeline and command_id:
                self._start(shell, shell.pipelines[command_id], event.pipeline)
        self._drain(shell)

    def _drain(self, shell: _Shell) -> None:
        while True:
            payload = shell.pool.data_to_send(shell.fragment_limit)
            if payload is None:
                return
            key = str(payload.pipeline_id).upper() if payload.pipeline_id else None
            shell.queues.setdefault(key, []).append(payload.data)

    def _command(self, shell: _Shell, body: ET.Element) -> ET.Element:
        from psrpcore import ServerPipeline

        line = body.find("rsp:CommandLine", NS)
        if line is None:
            raise ProtocolError("Command without rsp:CommandLine")
        command_id = (line.get("CommandId") or str(uuid.uuid4())).upper()
        if self.knobs.drop_shell_before_next:
            self.knobs.drop_shell_before_next = False
            self.drop_all_shells()
            self._shell(shell.id)  # faults: the shell is gone
        self.machine.round_trip()
        with self.lock:
            pipe = _Pipeline(ServerPipeline(shell.pool, uuid.UUID(command_id)), command_id)
            shell.pipelines[command_id] = pipe
            arguments = "".join(a.text or "" for a in line.findall("rsp:Arguments", NS))
            self._feed(shell, command_id, base64.b64decode(arguments, validate=True))
        response = ET.Element(f"{{{NS['rsp']}}}CommandResponse")
        ET.SubElement(response, f"{{{NS['rsp']}}}CommandId").text = command_id
        return response

    def _send(self, shell: _Shell, body: ET.Element) -> ET.Element:
        stream = body.find("rsp:Send/rsp:Stream", NS)
        if stream is None:
            raise ProtocolError("Send without rsp:Stream")
        command_id = (stream.get("CommandId") or "").upper() or None
        with self.lock:
            if command_id is not None and command_id not in shell.pipelines:
                raise ProtocolError(f"Send to an unknown command {command_id}")
            self._feed(shell, command_id, base64.b64decode(stream.text or "", validate=True))
        return ET.Element(f"{{{NS['rsp']}}}SendResponse")

    def _receive(self, shell: _Shell, body: ET.Element, timeout: float) -> ET.Element:
        desired = body.find("rsp:Receive/rsp:DesiredStream", NS)
        if desired is None:
            raise ProtocolError("Receive without rsp:DesiredStream")
        command_id = (desired.get("CommandId") or "").upper() or None
        deadline = time.monotonic() + timeout
        with self.lock:
            while not shell.queues.get(command_id):
                if shell.id not in self.shells:
                    self._shell(shell.id)  # dropped while waiting: the shell-not-found fault
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WSManFault(TIMED_OUT, "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.")
                self.lock.wait(min(remaining, 0.2))
            chunks = shell.queues[command_id]
            response = ET.Element(f"{{{NS['rsp']}}}ReceiveResponse")
            budget = shell.fragment_limit
            while chunks and (budget >= len(chunks[0]) or budget == shell.fragment_limit):
                data = chunks.pop(0)
                budget -= len(data)
                attrs = {"Name": "stdout"} | ({"CommandId": command_id} if command_id else {})
                ET.SubElement(response, f"{{{NS['rsp']}}}Stream", attrs).text = base64.b64encode(data).decode()
            pipe = shell.pipelines.get(command_id or "")
            if pipe is not None and pipe.finished and not chunks:
                ET.SubElement(response, f"{{{NS['rsp']}}}CommandState", {"CommandId": command_id or "", "State": DONE})
        return response

    def _signal(self, shell: _Shell, body: ET.Element) -> ET.Element:
        from psrpcore.types import PSInvocationState

        signal = body.find("rsp:Signal", NS)
        if signal is None:
            raise ProtocolError("Signal without rsp:Signal")
        command_id = (signal.get("CommandId") or "").upper()
        code = (signal.findtext("rsp:Code", "", NS) or "").strip()
        with self.lock:
            pipe = shell.pipelines.get(command_id)
            if pipe is None:
                raise ProtocolError(f"Signal to an unknown command {command_id}")
            if code in CTRL_C:
                if pipe.blocked:
                    pass  # acknowledged; the blocking call goes on (PowerShell stops between statements only)
                else:
                    pipe.stop.set()
                if not pipe.blocked and pipe.psrp.state == PSInvocationState.Running:
                    pipe.psrp.stop()
                    pipe.finished = True
                    self._drain(shell)
            elif code.lower() == TERMINATE.lower():  # pypsrp writes .../signal/Terminate; WinRM compares without case
                if pipe.psrp.state == PSInvocationState.Running:
                    raise ProtocolError("terminate signal for a running pipeline (stop it first)")
                pipe.psrp.close()
                shell.pipelines.pop(command_id, None)
                shell.queues.pop(command_id, None)
            else:
                raise ProtocolError(f"unknown signal code {code!r}")
            self.lock.notify_all()
        response = ET.Element(f"{{{NS['rsp']}}}SignalResponse")
        return response

    # -- running a script ----------------------------------------------------------------------

    def _start(self, shell: _Shell, pipe: _Pipeline, powershell: Any) -> None:
        """A complete CreatePipeline arrived: identify the script, bind its parameters, answer in a thread."""
        commands = list(powershell.commands)
        if len(commands) != 1 or not commands[0].is_script:
            raise ProtocolError(f"expected one script command, got {len(commands)}")
        command = commands[0]
        script = self.scripts.get(command.command_text)
        if script is None:
            raise ProtocolError("a script that is not a shipped guest script (text differs from load_script's)")
        if command.use_local_scope is not True:
            raise ProtocolError(f"{script}: not run in a local scope (it would leak into the pool's runspace)")
        params = {str(name): _plain(value) for name, value in command.parameters}
        pipe.script = script
        items = [script]
        if script == "Invoke-Batch.ps1":
            items = [self.scripts.get(str(i.get("script")), "?") for i in json.loads(str(params.get("ItemsJson") or "[]"))]
        pipe.blocked = any(name in self.knobs.block for name in items)
        self.stats.scripts.append(script)
        self.stats.params.append(dict(params))
        self.stats.wire_types.append({str(name): type(value).__name__ for name, value in command.parameters})
        pipe.psrp.start()
        threading.Thread(target=self._run, args=(shell, pipe, script, params), daemon=True).start()

    def _run(self, shell: _Shell, pipe: _Pipeline, script: str, params: dict[str, Any]) -> None:
        # One runspace: wait for the pipeline before this one (a stop or the shell's deletion frees it).
        while not shell.runspace.acquire(timeout=0.1):
            if shell.deleted.is_set() or pipe.stop.is_set():
                return
        try:
            self._run_alone(shell, pipe, script, params)
        finally:
            shell.runspace.release()

    def _run_alone(self, shell: _Shell, pipe: _Pipeline, script: str, params: dict[str, Any]) -> None:
        from psrpcore.types import ErrorCategoryInfo, ErrorRecord, NETException, PSInvocationState

        outcome: tuple[str, Any]
        try:
            if pipe.blocked:
                shell.deleted.wait(600)
                return
            if script in self.knobs.hang:
                pipe.stop.wait(120)
                return
            if self.knobs.drop_shell_on == script:
                self.knobs.drop_shell_on = None
                self.drop_all_shells()
                return
            outcome = ("ok", _fake_guest_answer(self, script, bind(script, params)))
        except GuestScriptError as exc:
            outcome = ("error", exc.message)
        except Exception as exc:  # a fake-guest bug: surfaces as a failed script, visibly
            outcome = ("error", f"{type(exc).__name__}: {exc}")
        with self.lock:
            if pipe.stop.is_set() or pipe.psrp.state != PSInvocationState.Running:
                return
            if outcome[0] == "ok":
                if script in self.knobs.write_error:
                    pipe.psrp.write_error(NETException(Message=self.knobs.write_error[script]), ErrorCategoryInfo(Reason="WriteErrorException"))
                if outcome[1] is not None:
                    pipe.psrp.write_output(json.dumps(outcome[1], separators=(",", ":")))
                pipe.psrp.complete()
            else:
                record = ErrorRecord(
                    Exception=NETException(Message=str(outcome[1])),
                    CategoryInfo=ErrorCategoryInfo(Reason="RuntimeException"),
                    FullyQualifiedErrorId="RuntimeException",
                )
                pipe.psrp._change_state(PSInvocationState.Failed, error=record)  # psrpcore has no public "fail"
            pipe.finished = True
            self._drain(shell)
            self.lock.notify_all()


def _fake_guest_answer(peer: WinRMPeer, script: str, params: dict[str, Any]) -> Any:
    """Answer a bound script from the fake guest's handlers; the batch runner item by item, each
    item bound like a splat."""
    from fakes.guest import HANDLERS

    if script == "Invoke-Batch.ps1":
        results: list[dict[str, Any]] = []
        items = json.loads(params["ItemsJson"])
        peer.stats.batch_items.append([peer.scripts.get(item.get("script"), "?") for item in items])
        for item in items:
            name = peer.scripts.get(item.get("script"))
            try:
                if name is None:
                    raise GuestScriptError("a batch item that is not a shipped script")
                value = _fake_guest_answer(peer, name, bind(name, dict(item.get("params") or {})))
                results.append({"ok": True, "result": value})
            except GuestScriptError as exc:
                results.append({"ok": False, "error": exc.message})
                break
        return results
    handler = HANDLERS.get(script.lower())
    if handler is None:
        raise GuestScriptError(f"the test endpoint has no answer for {script}")
    return handler(peer.machine, params)


class WSManFault(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def envelope(self) -> bytes:
        envelope = ET.Element(f"{{{NS['s']}}}Envelope")
        ET.SubElement(envelope, f"{{{NS['s']}}}Header")
        body = ET.SubElement(envelope, f"{{{NS['s']}}}Body")
        fault = ET.SubElement(body, f"{{{NS['s']}}}Fault")
        code = ET.SubElement(fault, f"{{{NS['s']}}}Code")
        ET.SubElement(code, f"{{{NS['s']}}}Value").text = "s:Receiver"
        reason = ET.SubElement(fault, f"{{{NS['s']}}}Reason")
        ET.SubElement(reason, f"{{{NS['s']}}}Text", {"{http://www.w3.org/XML/1998/namespace}lang": "en-US"}).text = self.message
        detail = ET.SubElement(fault, f"{{{NS['s']}}}Detail")
        wsman_fault = ET.SubElement(detail, f"{{{NS['wsmanfault']}}}WSManFault", {"Code": str(self.code), "Machine": LOOPBACK})
        ET.SubElement(wsman_fault, f"{{{NS['wsmanfault']}}}Message").text = self.message
        return ET.tostring(envelope, encoding="utf-8")


def _duration(text: str) -> float:
    """xs:duration as WSMan uses it: PT20S, PT20.500S, PT1M."""
    found = re.fullmatch(r"\s*PT(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?\s*", text)
    if not found:
        raise ProtocolError(f"bad OperationTimeout {text!r}")
    return int(found.group(1) or 0) * 60 + float(found.group(2) or 0)


def self_signed_listener(directory: Path) -> tuple[Path, Path]:
    """A WinRM HTTPS listener's self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "listener.pem", directory / "listener.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


# ----------------------------------------------------------------------------------------------
# HTTP: authentication and message encryption
# ----------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, peer: WinRMPeer):
        super().__init__(address, handler)
        self.peer = peer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: NTLM authenticates a connection, not a request
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without NODELAY, Nagle and delayed ACKs add ~40 ms
        # to every answer, a cost of this endpoint that HTTP.sys does not have.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.auth: Any = None  # this connection's security context once authenticated
        self.pending: Any = None  # a handshake in progress
        self.final: bytes | None = None  # the acceptor's last token, sent with the first answer

    def log_message(self, *args: Any) -> None:
        pass

    def _respond(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _challenge(self, token: bytes | None = None) -> None:
        value = "Negotiate" + (f" {base64.b64encode(token).decode()}" if token else "")
        if self.server.peer.basic and token is None:
            value += ', Basic realm="WSMAN"'
        self._respond(401, headers={"WWW-Authenticate": value})

    def do_POST(self) -> None:
        peer = self.server.peer
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with peer.lock:
            peer.stats.requests += 1
            reject = peer.knobs.reject_auth_after is not None and peer.stats.requests > peer.knobs.reject_auth_after
        if reject:
            self.auth = None  # the password changed: this connection must authenticate again, and cannot
            if peer.current_password == peer.password:
                peer.change_password(peer.password + "-changed")
        header = self.headers.get("Authorization", "")
        by_basic = header[:6].lower() == "basic "
        if by_basic:
            if not self._basic(header[6:]):
                return
        elif header:
            if not self._authenticate(header):
                return
        elif self.auth is None:
            self._challenge()
            return
        if not body:
            self._respond(200, headers=self._final_token())
            return
        encrypted = self.headers.get("Content-Type", "").startswith("multipart/encrypted")
        with peer.lock:
            peer.stats.soap_requests += 1
            peer.stats.encrypted += encrypted
        try:
            soap = self._unwrap(body) if encrypted else body
            if not encrypted and not peer.tls and not peer.allow_unencrypted:
                raise ProtocolError("unencrypted SOAP over HTTP (AllowUnencrypted is false)")
            try:
                if len(soap) > peer.knobs.max_envelope_kb * 1024:
                    # WinRM refuses a request above its MaxEnvelopeSizekb quota (unsure: the exact fault code).
                    with peer.lock:
                        peer.stats.protocol_errors.append(f"request of {len(soap)} bytes over MaxEnvelopeSizekb = {peer.knobs.max_envelope_kb}")
                    raise WSManFault(2150858807, f"The request size {len(soap)} exceeds MaxEnvelopeSizekb ({peer.knobs.max_envelope_kb} KB).")
                answer, status = peer.handle_soap(soap), 200
            except WSManFault as fault:
                answer, status = fault.envelope(), 500
        except (ProtocolError, ET.ParseError, ValueError) as exc:
            with peer.lock:
                peer.stats.protocol_errors.append(str(exc))
            answer, status = WSManFault(2150858817, f"The WS-Management service cannot process the request: {exc}").envelope(), 400
        except Exception as exc:  # the machine dropped (reboot): close the connection like a dead host
            if type(exc).__name__ == "ConnectionDropped":
                self.close_connection = True
                self.connection.close()
                return
            raise
        headers = self._final_token()
        if encrypted:
            payload = self._wrap(answer)
            headers["Content-Type"] = f'multipart/encrypted;protocol="{ENCRYPTED}";boundary="Encrypted Boundary"'
            self._respond(status, payload, headers)
        else:
            headers["Content-Type"] = "application/soap+xml;charset=UTF-8"
            self._respond(status, answer, headers)

    def _final_token(self) -> dict[str, str]:
        token, self.final = self.final, None
        return {"WWW-Authenticate": f"Negotiate {base64.b64encode(token).decode()}"} if token else {}

    def _basic(self, value: str) -> bool:
        """Basic: the credentials on every request, nothing kept on the connection."""
        peer = self.server.peer
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            raw = b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            # requests encodes Basic credentials as Latin-1; which encoding WinRM expects for a
            # non-ASCII password is not known here (unsure), so both are accepted.
            text = raw.decode("latin-1")
        user, _, password = text.partition(":")
        if peer.basic and user.lower() == peer.user.lower() and password == peer.current_password:
            return True
        with peer.lock:
            peer.stats.auth_rejected += 1
            peer.stats.protocol_errors.append("authentication: Basic refused" + ("" if peer.basic else " (not enabled on this listener)"))
        self._challenge()
        return False

    def _authenticate(self, header: str) -> bool:
        """One step of SPNEGO/NTLM; True when the connection is authenticated and the request may proceed."""
        import spnego
        from spnego.channel_bindings import GssChannelBindings

        peer = self.server.peer
        scheme, _, value = header.partition(" ")
        try:
            if scheme.lower() not in ("negotiate", "ntlm"):
                raise ValueError(f"scheme {scheme}")
            token = base64.b64decode(value.strip(), validate=True)
            if self.pending is None:
                bindings = GssChannelBindings(application_data=b"tls-server-end-point:" + peer.cert_hash) if peer.tls else None
                self.pending = spnego.server(protocol="negotiate", channel_bindings=bindings, options=spnego.NegotiateOptions.wrapping_winrm)
            out = self.pending.step(token)
        except Exception as exc:  # a bad token, a wrong password, a channel-binding mismatch
            with peer.lock:
                peer.stats.auth_rejected += 1
                peer.stats.protocol_errors.append(f"authentication: {type(exc).__name__}: {exc}")
            self.pending = None
            self.auth = None
            self._challenge()
            return False
        if not self.pending.complete:
            self._challenge(out)
            return False
        self.auth, self.pending, self.final = self.pending, None, out
        return True

    def _unwrap(self, body: bytes) -> bytes:
        if self.auth is None:
            raise ProtocolError("an encrypted message on a connection that is not authenticated")
        parts = [p for p in re.split(re.escape(BOUNDARY) + rb"(?:--)?\r\n", body) if p]
        if len(parts) != 2:
            raise ProtocolError(f"multipart/encrypted with {len(parts)} parts (expected 2)")
        described, wrapped = parts
        length = re.search(rb"Length=(\d+)", described)
        if ENCRYPTED.encode() not in described or length is None:
            raise ProtocolError("multipart/encrypted without the SPNEGO session protocol and length")
        wrapped = wrapped.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
        (header_length,) = struct.unpack("<I", wrapped[:4])
        plain = self.auth.unwrap_winrm(wrapped[4 : 4 + header_length], wrapped[4 + header_length :])
        if len(plain) != int(length.group(1)):
            raise ProtocolError(f"decrypted {len(plain)} bytes, the part says {length.group(1)}")
        return bytes(plain)

    def _wrap(self, message: bytes) -> bytes:
        header, data, padding = self.auth.wrap_winrm(message)
        described = (
            f"{BOUNDARY.decode()}\r\n\tContent-Type: {ENCRYPTED}\r\n"
            f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={len(message) + padding}\r\n"
            f"{BOUNDARY.decode()}\r\n\tContent-Type: application/octet-stream\r\n"
        ).encode()
        return described + struct.pack("<I", len(header)) + header + data + BOUNDARY + b"--\r\n"
