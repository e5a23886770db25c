"""The WinRM transport's happy path against a real protocol peer (tests/winrm_peer.py): pypsrp,
unmodified, talks over loopback sockets to an endpoint whose NTLM acceptor and message
encryption are pyspnego's and whose PSRP side is psrpcore's server runspace pool. What runs
the scripts is the fake guest: this proves the protocol exchange, not Windows or PowerShell.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import need, run_invoke
from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import EnvironmentProblem, ExitCode, StepFailed
from driverpipe.targets import deploy, operations
from driverpipe.targets.capture import Capture
from driverpipe.transports.base import GuestScriptError
from driverpipe.transports.errors import GuestTimeout
from driverpipe.transports.winrm import WinRMGuest
from fakes.capture_handlers import advance, state
from fakes.guest import FakeService, FakeWindows
from fakes.package import StubPackage

pytestmark = [pytest.mark.psrp, pytest.mark.timeout(120)]

USER = "tester"
PASSWORD = "Pa55 wörd"
DBGVIEW = "C:\\Tools\\Dbgview.exe"


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def _peer_class() -> Any:
    try:
        import psrpcore  # noqa: F401
        import spnego  # noqa: F401
    except ImportError as exc:
        need(False, f"the loopback WinRM endpoint needs psrpcore and pyspnego ({exc.name})")
    from winrm_peer import WinRMPeer

    return WinRMPeer


@pytest.fixture
def machine() -> FakeWindows:
    m = FakeWindows.prepared()
    m.files[DBGVIEW] = b"MZ fake Dbgview.exe"
    return m


@pytest.fixture(params=[False, True], ids=["http-encrypted", "https"])
def peer(request: pytest.FixtureRequest, machine: FakeWindows, tmp_path: Path) -> Iterator[Any]:
    with _peer_class()(machine, user=USER, password=PASSWORD, tls=request.param, work_dir=tmp_path / "peer") as p:
        yield p


@pytest.fixture
def http_peer(machine: FakeWindows, tmp_path: Path) -> Iterator[Any]:
    with _peer_class()(machine, user=USER, password=PASSWORD, tls=False, work_dir=tmp_path / "peer") as p:
        yield p


def connect(peer: Any, **kw: Any) -> WinRMGuest:
    options: dict[str, Any] = dict(
        name="peer",
        host="127.0.0.1",
        user=USER,
        password=PASSWORD,
        port=peer.port,
        ssl=peer.tls,
        auth="negotiate",
        ca_bundle=str(peer.cert_pem) if peer.tls else "",
        connection_timeout=5,
        read_timeout=10,
        operation_timeout=5,
        say=lambda s: None,
    )
    options.update(kw)
    return WinRMGuest(**options)


def test_pool_opens_and_a_script_runs_with_every_message_checked(peer: Any) -> None:
    guest = connect(peer)
    try:
        state_ = guest.run_script("Get-GuestState.ps1", {"ServiceName": "WazabiEDR", "FileNames": ["a.sys"], "GuestDir": "C:\\WazabiEDR"})
    finally:
        guest.close()
    assert state_["elevated"] is True and state_["files"] == {"a.sys": None}
    s = peer.stats
    assert s.protocol_errors == [] and s.auth_rejected == 0
    assert s.pools_opened == s.pools_closed == 1 and s.scripts == ["Get-GuestState.ps1"]
    # The listener's config was read (envelope size), the pool created, the script run, its pipeline released, the shell deleted.
    assert s.actions[:2] == ["Get", "Create"] and s.actions[-2:] == ["Signal", "Delete"] and "Command" in s.actions
    if not peer.tls:
        assert s.encrypted == s.soap_requests > 0  # over HTTP every SOAP message was sealed by the NTLM session


@pytest.mark.parametrize(
    ("tls", "auth"),
    [(False, "ntlm"), (True, "ntlm"), (True, "basic"), (False, "basic")],
    ids=["http-ntlm", "https-ntlm", "https-basic", "http-basic-unencrypted"],
)
def test_other_auth_methods(machine: FakeWindows, tmp_path: Path, tls: bool, auth: str) -> None:
    """ntlm (what local accounts use) and Basic: over HTTPS, and over HTTP only where the listener
    allows unencrypted traffic and the config allows it explicitly (a warning is printed)."""
    said: list[str] = []
    plain_http_basic = auth == "basic" and not tls
    with _peer_class()(
        machine, user=USER, password=PASSWORD, tls=tls, basic=auth == "basic", allow_unencrypted=plain_http_basic, work_dir=tmp_path / "peer"
    ) as p:
        guest = connect(p, auth=auth, allow_basic_http=plain_http_basic, say=said.append)
        try:
            assert guest.run_script("Get-BootTime.ps1")["boot_time"] == machine.boot_time
        finally:
            guest.close()
        assert p.stats.protocol_errors == [] and p.stats.auth_rejected == 0
        assert p.stats.encrypted == (0 if (tls or auth == "basic") else p.stats.soap_requests)
    assert any("clear text" in line for line in said) == plain_http_basic


def test_https_channel_binding_is_checked(machine: FakeWindows, tmp_path: Path) -> None:
    with _peer_class()(machine, user=USER, password=PASSWORD, tls=True, work_dir=tmp_path / "peer") as p:
        p.cert_hash = b"\x00" * 32  # the acceptor now expects another certificate: the client's binding must not match
        with pytest.raises(EnvironmentProblem, match="authentication failed") as info:
            connect(p)
        assert p.stats.auth_rejected >= 1 and any("authentication" in e for e in p.stats.protocol_errors)
    assert info.value.exit_code == ExitCode.ENVIRONMENT


def test_wrong_password_is_one_line(http_peer: Any) -> None:
    with pytest.raises(EnvironmentProblem, match=r"authentication failed for user 'tester' \(negotiate\)"):
        connect(http_peer, password="wrong")
    assert http_peer.stats.pools_opened == 0 and http_peer.stats.auth_rejected >= 1


# ----------------------------------------------------------------------------------------------
# The pipeline's own flows over the wire
# ----------------------------------------------------------------------------------------------


def _ctx(project: Path, peer: Any) -> RunContext:
    (project / "user-config.toml").write_text(
        "default_target = 'peer'\n"
        f"[targets.peer]\ntransport = 'winrm'\nhost = '127.0.0.1'\nuser = '{USER}'\npassword_env = 'PEER_PASSWORD'\ntest_machine = true\n"
        f"port = {peer.port}\n[targets.peer.winrm]\nssl = {'true' if peer.tls else 'false'}\n",
        encoding="utf-8",
    )
    return RunContext(config=load(root=project), echo=lambda s: None, progress=lambda s: None)


def _package(project: Path, sys_size: int = 300_000) -> StubPackage:
    """The package; a .sys of 300 kB takes more than one chunk at WinRM's default envelope."""
    pkgdir = project / "artifacts" / "package"
    pkgdir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, data in (
        ("WazabiEDR_Driver.sys", b"MZ driver v1" + os.urandom(sys_size)),
        ("WazabiEDR_Driver.inf", b"[Version]"),
        ("WazabiEDR_Driver.cat", b"0\x82cat"),
    ):
        (pkgdir / name).write_bytes(data)
        files.append(pkgdir / name)
    cer = pkgdir / "WazabiEDR_Test.cer"
    cer.write_bytes(b"0\x82\x01\x0afake DER certificate")
    return StubPackage(pkgdir, "WazabiEDR_Driver", files, cer)


class Clock:
    """Virtual time for the reboot wait: the guest answers again after a few attempts, not seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.01)


def _deploy(ctx: RunContext, guest: WinRMGuest, pkg: StubPackage, machine: FakeWindows) -> int:
    def capture(c: RunContext, g: Any, run_id: str) -> Capture:
        return Capture(c, g, run_id, sleep=lambda s: advance(machine, s), clock=lambda: state(machine).now)

    clock = Clock()
    return deploy.deploy_to(ctx, guest, pkg, ctx.config.target("peer"), capture_factory=capture, clock=clock, sleep=clock.sleep)


def test_whole_deploy_plan_redeploy_and_unload(peer: Any, machine: FakeWindows, project: Path) -> None:
    ctx = _ctx(project, peer)
    pkg = _package(project)
    machine.cert_stores["Root"].add(hashlib.sha1(pkg.cert_path.read_bytes()).hexdigest().upper())
    machine.cert_stores["TrustedPublisher"].add(hashlib.sha1(pkg.cert_path.read_bytes()).hexdigest().upper())
    guest = connect(peer)
    try:
        assert _deploy(ctx, guest, pkg, machine) == 0
        assert machine.services["WazabiEDR"].state == 4  # RUNNING
        assert machine.files["C:\\WazabiEDR\\WazabiEDR_Driver.sys"] == pkg.files[0].read_bytes()
        first = list(peer.stats.scripts)

        # An unchanged redeploy, measured on the server: the pipelines it ran, over the same pool.
        before = len(peer.stats.scripts)
        assert _deploy(ctx, guest, pkg, machine) == 0
        redeploy = peer.stats.scripts[before:]
        assert redeploy == ["Get-GuestState.ps1", "Invoke-Batch.ps1", "Read-FileRange.ps1"], redeploy
        assert peer.stats.pools_opened == 1

        result = operations.unload_driver(ctx, guest)
        assert result.stopped and result.device_gone
    finally:
        guest.close()
    assert "Write-FileChunk.ps1" in first and "Complete-FileUpload.ps1" in first
    assert peer.stats.protocol_errors == [] and peer.stats.pools_closed == 1


def test_changed_driver_redeploy_sends_each_small_file_in_one_round_trip(http_peer: Any, machine: FakeWindows, project: Path) -> None:
    """The developer's loop: a rebuilt driver (new .sys and .cat) over a loaded one. Each file that
    fits one chunk is written and hash-checked in one batch; an unchanged one is not sent at all."""
    ctx = _ctx(project, http_peer)
    pkg = _package(project, sys_size=40_000)
    thumb = hashlib.sha1(pkg.cert_path.read_bytes()).hexdigest().upper()
    for store in machine.cert_stores.values():
        store.add(thumb)
    guest = connect(http_peer)
    try:
        assert _deploy(ctx, guest, pkg, machine) == 0
        pkg.files[0].write_bytes(b"MZ driver v2" + os.urandom(40_000))
        pkg.files[2].write_bytes(b"0\x82cat v2")
        before, batches = len(http_peer.stats.scripts), len(http_peer.stats.batch_items)
        assert _deploy(ctx, guest, pkg, machine) == 0
    finally:
        guest.close()
    assert http_peer.stats.scripts[before:] == [
        "Get-GuestState.ps1",
        "Invoke-DriverUnload.ps1",  # the old build stops before its image is replaced
        "Invoke-Batch.ps1",
        "Invoke-Batch.ps1",
        "Invoke-Batch.ps1",
        "Read-FileRange.ps1",
    ]
    pushes = http_peer.stats.batch_items[batches : batches + 2]
    assert pushes == [["Write-FileChunk.ps1", "Complete-FileUpload.ps1"]] * 2
    assert machine.files["C:\\WazabiEDR\\WazabiEDR_Driver.sys"] == pkg.files[0].read_bytes()
    assert machine.services["WazabiEDR"].state == 4 and http_peer.stats.protocol_errors == []


@pytest.mark.parametrize("tls", [False, True], ids=["http-encrypted", "https"])
def test_first_deploy_prepares_reboots_and_reconnects_over_the_wire(project: Path, tmp_path: Path, tls: bool) -> None:
    """An unprepared guest: TESTSIGNING set, a reboot during which the endpoint drops every
    connection, new pools once it answers, then push, load and verify."""
    machine = FakeWindows()
    machine.files[DBGVIEW] = b"MZ fake Dbgview.exe"
    with _peer_class()(machine, user=USER, password=PASSWORD, tls=tls, work_dir=tmp_path / "peer") as peer:
        ctx = _ctx(project, peer)
        pkg = _package(project)
        guest = connect(peer)
        try:
            assert _deploy(ctx, guest, pkg, machine) == 0
        finally:
            guest.close()
    assert machine.boot_count == 1 and machine.testsigning_active and machine.services["WazabiEDR"].state == 4
    scripts = peer.stats.scripts
    assert scripts.index("Restart-Guest.ps1") < scripts.index("Test-GuestReady.ps1") < scripts.index("Invoke-Batch.ps1")
    assert peer.stats.pools_opened >= 2  # the pool did not survive the reboot; a new one was opened
    assert peer.stats.protocol_errors == []


def test_large_push_and_pull_span_many_envelopes(http_peer: Any, machine: FakeWindows, tmp_path: Path) -> None:
    http_peer.knobs.max_envelope_kb = 150  # WinRM's pre-2012 default: smaller envelopes, more of them
    data = os.urandom(3 * 1024 * 1024 + 17)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    guest = connect(http_peer)
    try:
        assert guest.max_payload_size < 150 * 1024
        pushed = guest.push(local, "C:\\WazabiEDR\\big.bin")
        assert pushed.copied and machine.files["C:\\WazabiEDR\\big.bin"] == data
        chunks = http_peer.stats.scripts.count("Write-FileChunk.ps1")
        assert chunks >= len(data) // (150 * 1024)
        again = guest.push(local, "C:\\WazabiEDR\\big.bin")
        assert not again.copied  # same hash: nothing sent
        guest.pull("C:\\WazabiEDR\\big.bin", tmp_path / "back.bin")
        # A request larger than one envelope: the first fragment rides on Command, the rest on Send.
        states = guest.run_batch([("Get-GuestState.ps1", {"ServiceName": "WazabiEDR"})] * 40)
        assert len(states) == 40 and all(s["elevated"] for s in states)
        assert "Send" in http_peer.stats.actions
    finally:
        guest.close()
    assert (tmp_path / "back.bin").read_bytes() == data
    # Answers larger than one envelope came back as several PSRP fragments over several Receives.
    assert http_peer.stats.actions.count("Receive") > http_peer.stats.actions.count("Command")
    assert http_peer.stats.protocol_errors == []


def test_error_records_and_failed_scripts_are_one_line(http_peer: Any, machine: FakeWindows) -> None:
    http_peer.knobs.write_error["Get-BootTime.ps1"] = "Get-CimInstance : Access denied (WMI)"
    guest = connect(http_peer)
    try:
        with pytest.raises(GuestScriptError, match=r"Get-BootTime.ps1 failed on peer: Get-CimInstance : Access denied \(WMI\)"):
            guest.run_script("Get-BootTime.ps1")
        machine.elevated = False  # a terminating error: the pipeline ends Failed with the exception
        with pytest.raises(GuestScriptError, match=r"Set-GuestPrepared\.ps1 failed on peer: Requested registry access is not allowed\."):
            guest.run_script("Set-GuestPrepared.ps1", {"EnableTestSigning": True})
        assert guest.run_script("Test-GuestReady.ps1")["ready"] is True  # the pool is still usable
    finally:
        guest.close()
    assert http_peer.stats.pools_opened == 1 and http_peer.stats.protocol_errors == []


def test_script_outliving_script_timeout_is_stopped_in_time(http_peer: Any) -> None:
    http_peer.knobs.hang.add("Get-BootTime.ps1")
    guest = connect(http_peer, script_timeout=3, operation_timeout=1, read_timeout=5)
    try:
        started = time.monotonic()
        with pytest.raises(GuestTimeout, match=r"Get-BootTime\.ps1 did not finish within 3 s on peer; stopped"):
            guest.run_script("Get-BootTime.ps1")
        # By design: the deadline plus at most one receive, which the read timeout bounds (not a speed test).
        assert time.monotonic() - started < 3 + 5
        assert http_peer.stats.actions.count("Signal") >= 1  # the server was told to stop the pipeline
        http_peer.knobs.hang.clear()
        assert guest.run_script("Get-BootTime.ps1")["boot_time"] > 0
    finally:
        guest.close()
    assert http_peer.stats.protocol_errors == []


def test_shell_gone_before_a_script_is_reopened_transparently(http_peer: Any) -> None:
    guest = connect(http_peer)
    try:
        http_peer.knobs.drop_shell_before_next = True  # a WinRM service restart between two scripts
        assert guest.run_script("Get-BootTime.ps1")["boot_time"] > 0
    finally:
        guest.close()
    assert http_peer.stats.pools_opened == 2 and http_peer.stats.scripts == ["Get-BootTime.ps1"]


def test_shell_gone_while_a_script_runs_is_one_line_then_reconnects(http_peer: Any) -> None:
    guest = connect(http_peer)
    try:
        http_peer.knobs.drop_shell_on = "Get-BootTime.ps1"
        with pytest.raises(StepFailed, match="closed our WinRM shell while the script ran") as info:
            guest.run_script("Get-BootTime.ps1")
        assert "\n" not in info.value.message and "may have run in part" in (info.value.hint or "")
        assert guest.run_script("Get-BootTime.ps1")["boot_time"] > 0
    finally:
        guest.close()
    assert http_peer.stats.pools_opened == 2


def test_401_after_the_pool_opened_is_an_authentication_failure(peer: Any) -> None:
    guest = connect(peer)
    try:
        peer.knobs.reject_auth_after = peer.stats.requests  # the guest's password changes now
        with pytest.raises(EnvironmentProblem, match="authentication failed for user 'tester'") as info:
            guest.run_script("Get-BootTime.ps1")
        assert info.value.exit_code == ExitCode.ENVIRONMENT
    finally:
        guest.close()
    assert peer.stats.auth_rejected >= 1


def test_values_reach_the_script_as_its_param_types_expect(peer: Any, machine: FakeWindows) -> None:
    machine.files["C:\\x\\small.bin"] = b"0123456789"
    odd = "C:\\Dätä \"quoted\" 'single' $notAVariable `tick ünïcødé ✓"
    guest = connect(peer)
    try:
        # [long]$Offset beyond Int32 (a FileTime-sized number) goes as <I64> and binds.
        far = guest.run_script("Read-FileRange.ps1", {"Path": "C:\\x\\small.bin", "Offset": 134_118_000_000_000_000, "Count": 4})
        assert far == {"exists": True, "size": 10, "offset": 134_118_000_000_000_000, "base64": ""}
        assert peer.stats.wire_types[-1] == {"Path": "PSString", "Offset": "PSInt64", "Count": "PSInt"}
        # [int]$Count beyond Int32 is refused by the binder, as PowerShell refuses it.
        with pytest.raises(GuestScriptError, match=r"Value was either too large or too small for an Int32"):
            guest.run_script("Read-FileRange.ps1", {"Path": "C:\\x\\small.bin", "Count": 2**31})
        # Booleans, string lists and strings with quotes, $, backticks and non-ASCII arrive as sent.
        guest.run_script("Get-GuestState.ps1", {"ServiceName": "WazabiEDR", "GuestDir": odd, "FileNames": ["a b.sys", odd]})
        assert peer.stats.params[-1] == {"ServiceName": "WazabiEDR", "GuestDir": odd, "FileNames": ["a b.sys", odd]}
        assert peer.stats.wire_types[-1]["FileNames"] == "PSList"
        guest.run_script("Invoke-DriverUnload.ps1", {"ServiceName": "WazabiEDR", "DevicePath": "\\\\.\\WazabiEDR", "Delete": False})
        assert peer.stats.wire_types[-1]["Delete"] == "bool"
        # A batch item's parameters go through JSON and a splat: the same binder checks them.
        [chunk] = guest.run_batch([("Read-FileRange.ps1", {"Path": "C:\\x\\small.bin", "Offset": 2, "Count": 3})])
        assert base64.b64decode(chunk["base64"]) == b"234"
    finally:
        guest.close()
    assert peer.stats.protocol_errors == []


def test_without_i64_tagging_the_overflow_fails_on_the_peer(http_peer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """pypsrp alone writes 134118000000000000 as <I32>: the peer's deserializer refuses it, as Windows would."""
    import driverpipe.transports.winrm as winrm

    monkeypatch.setattr(winrm, "psrp_value", lambda value: value)
    guest = connect(http_peer)
    try:
        with pytest.raises(StepFailed, match="WinRM fault"):
            guest.run_script("Read-FileRange.ps1", {"Path": "C:\\x", "Offset": 134_118_000_000_000_000, "Count": 4})
    finally:
        guest.close()
    # psrpcore refuses the <I32> while deserializing, before any script runs.
    assert any("Cannot create PSInt with value '134118000000000000'" in e for e in http_peer.stats.protocol_errors)
    assert http_peer.stats.scripts == []


# ----------------------------------------------------------------------------------------------
# The endpoint refuses what Windows refuses: it is not a peer that accepts anything
# ----------------------------------------------------------------------------------------------


def test_endpoint_rejects_a_malformed_psrp_message(http_peer: Any) -> None:
    from pypsrp.exceptions import WinRMTransportError, WSManFaultError
    from pypsrp.shell import WinRS

    guest = connect(http_peer)
    try:
        shell = WinRS(guest._wsman, resource_uri="http://schemas.microsoft.com/powershell/Microsoft.PowerShell", id=guest._pool.shell.id)
        shell.opened, shell._selector_set = True, guest._pool.shell._selector_set
        with pytest.raises((WSManFaultError, WinRMTransportError)):
            shell.command("", [base64.b64encode(b"\x00" * 21 + b"not a PSRP message").decode()], command_id="6B0CF6C5-61D6-4E8B-A5A1-0D0B0B1D3A11")
    finally:
        guest.close()
    assert any("malformed PSRP" in e or "PSRP" in e for e in http_peer.stats.protocol_errors)


def test_endpoint_rejects_a_bad_ntlm_token(http_peer: Any) -> None:
    import requests

    answer = requests.post(
        f"http://127.0.0.1:{http_peer.port}/wsman",
        data=b"",
        headers={"Authorization": "Negotiate " + base64.b64encode(b"NTLMSSP\x00\x03garbage").decode()},
        timeout=5,
    )
    assert answer.status_code == 401 and http_peer.stats.auth_rejected == 1
    assert http_peer.stats.pools_opened == 0


# ----------------------------------------------------------------------------------------------
# Through the command line: config -> transport wiring, the password from the environment
# ----------------------------------------------------------------------------------------------


def test_invoke_unload_over_the_endpoint_and_a_wrong_password(project: Path, tmp_path: Path) -> None:
    machine = FakeWindows.prepared()
    image = "C:\\WazabiEDR\\WazabiEDR_Driver.sys"
    machine.files[image] = b"MZ driver"
    machine.services["WazabiEDR"] = FakeService(name="WazabiEDR", binpath=image, state=4)
    with _peer_class()(machine, user=USER, password=PASSWORD, tls=False, work_dir=tmp_path / "peer") as peer:
        _ctx(project, peer)  # writes the user config naming the endpoint
        env = dict(os.environ, PEER_PASSWORD=PASSWORD, NO_PROXY="127.0.0.1")
        done = run_invoke(project, "unload", "--target", "peer", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "WazabiEDR stopped" in done.stdout and machine.services["WazabiEDR"].state == 1
        # The run held the target through a lease on the guest and released it.
        assert peer.stats.scripts == ["Set-GuestLease.ps1", "Invoke-DriverUnload.ps1", "Set-GuestLease.ps1"]
        refused = run_invoke(project, "unload", "--target", "peer", env=dict(env, PEER_PASSWORD="not-it"))
    assert refused.returncode == ExitCode.ENVIRONMENT
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "authentication failed for user 'tester'" in errors[0], refused.stderr
    assert "Traceback" not in refused.stderr
    assert PASSWORD not in done.stdout + done.stderr + refused.stdout + refused.stderr and "not-it" not in refused.stdout + refused.stderr
    assert peer.stats.protocol_errors == [] or all(e.startswith("authentication") for e in peer.stats.protocol_errors)


def test_invoke_verify_and_logs_read_the_capture_over_the_endpoint(machine: FakeWindows, project: Path, tmp_path: Path) -> None:
    with _peer_class()(machine, user=USER, password=PASSWORD, tls=False, work_dir=tmp_path / "peer") as peer:
        ctx = _ctx(project, peer)
        pkg = _package(project)
        thumb = hashlib.sha1(pkg.cert_path.read_bytes()).hexdigest().upper()
        for store in machine.cert_stores.values():
            store.add(thumb)
        guest = connect(peer)
        try:
            assert _deploy(ctx, guest, pkg, machine) == 0
        finally:
            guest.close()
        env = dict(os.environ, PEER_PASSWORD=PASSWORD, NO_PROXY="127.0.0.1")
        before = len(peer.stats.scripts)
        verified = run_invoke(project, "verify", "--target", "peer", env=env)
        assert verified.returncode == 0 and "load: PASS: 2/2 lines in order" in verified.stdout, verified.stdout + verified.stderr
        pulled = run_invoke(project, "logs", "--target", "peer", env=env)
        assert pulled.returncode == 0 and "pulled 1 file(s) from peer" in pulled.stdout, pulled.stdout + pulled.stderr
        assert set(peer.stats.scripts[before:]) == {"Get-DbgCaptureStatus.ps1", "Read-FileRange.ps1"}
    remote = next(v for k, v in machine.files.items() if k.lower().endswith(".log") and "dbgview" in k.lower())
    local = [p.read_bytes() for p in (project / "artifacts" / "logs" / "peer").glob("*.log")]
    assert remote in local and b"[WazabiEDR] DriverEntry called" in remote  # pulled whole, byte for byte
    assert peer.stats.protocol_errors == []


def test_a_script_blocked_in_a_call_retires_its_pool_and_the_next_scripts_run_in_time(http_peer: Any, machine: FakeWindows) -> None:
    """A script that never returns, even when stopped (a DeviceIoControl on a pended IRP): one timeout,
    naming it; then the unload and the lease release run on a new pool within their own timeouts,
    instead of queueing behind it in the pool's one runspace."""
    from driverpipe.core.locks import GuestLease

    http_peer.knobs.block.add("Test-DeviceChecks.ps1")
    guest = connect(http_peer, script_timeout=3, operation_timeout=1, read_timeout=5)
    lease = GuestLease(guest, "C:\\WazabiEDR\\.driverpipe-lease.json", 60, "guest peer")
    try:
        lease.acquire(0, lambda _l: None)
        started = time.monotonic()
        with pytest.raises(GuestTimeout) as hung:
            guest.run_batch([("Get-BootTime.ps1", {}), ("Test-DeviceChecks.ps1", {"DevicePath": "\\\\.\\WazabiEDR", "ChecksJson": "[]"})])
        assert "the batch of Get-BootTime.ps1, Test-DeviceChecks.ps1 did not finish within 3 s" in hung.value.message
        assert "\n" not in hung.value.message and "new one" in hung.value.message
        assert http_peer.stats.pools_closed == 1, "the hung pool's shell was deleted at once"
        after = time.monotonic()
        unloaded = guest.run_script("Invoke-DriverUnload.ps1", {"ServiceName": "WazabiEDR", "DevicePath": "\\\\.\\WazabiEDR"}, timeout=3)
        assert isinstance(unloaded, dict) and "stop" in unloaded
        lease.release()
        assert not lease.held and "C:\\WazabiEDR\\.driverpipe-lease.json" not in machine.files, "the release ran"
        # By design: each within its own timeout (not a speed test), and the timeout itself was bounded.
        assert time.monotonic() - after < 3 + 3 + 5 and after - started < 3 + 5 + 5
    finally:
        guest.close()
    assert http_peer.stats.pools_opened == 2 and http_peer.stats.protocol_errors == []


def test_invoke_unload_that_hangs_reports_once_and_still_releases_the_lease(project: Path, tmp_path: Path) -> None:
    """The unload blocks in a call a stop cannot end: one error line naming the script and what it
    waited on, exit 4, and the lease release runs on a new pool instead of queueing behind it."""
    machine = FakeWindows.prepared()
    image = "C:\\WazabiEDR\\WazabiEDR_Driver.sys"
    machine.files[image] = b"MZ driver"
    machine.services["WazabiEDR"] = FakeService(name="WazabiEDR", binpath=image, state=4)
    with _peer_class()(machine, user=USER, password=PASSWORD, tls=False, work_dir=tmp_path / "peer") as peer:
        _ctx(project, peer)
        peer.knobs.block.add("Invoke-DriverUnload.ps1")
        env = dict(os.environ, PEER_PASSWORD=PASSWORD, NO_PROXY="127.0.0.1", DRIVERPIPE_DEPLOY_SCRIPT_TIMEOUT="3")
        done = run_invoke(project, "unload", "--target", "peer", env=env)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == ExitCode.STEP_FAILED and len(errors) == 1, done.stdout + done.stderr
        assert "Invoke-DriverUnload.ps1 did not finish within 3 s" in errors[0] and "waiting on `sc stop WazabiEDR`" in errors[0]
        assert "Traceback" not in done.stderr and done.stderr.count("did not finish") == 1, "the hang is reported once"
        assert peer.stats.scripts == ["Set-GuestLease.ps1", "Invoke-DriverUnload.ps1", "Set-GuestLease.ps1"]
        assert peer.stats.pools_opened == 2 and "C:\\WazabiEDR\\.driverpipe-lease.json" not in machine.files, "released on a new pool"
