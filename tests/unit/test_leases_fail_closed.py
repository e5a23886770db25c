"""Leases and locks fail closed: a refused renewal stops the run, a garbled answer is "not acquired",
an unreadable lease is held until its last write plus the lease length, a lock holder file is
untrusted input, and the pid probe never uses os.kill on Windows."""

from __future__ import annotations

import ctypes
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from driverpipe.core import locks
from driverpipe.core.errors import EnvironmentProblem, ExitCode
from driverpipe.core.locks import GuestLease, LeaseLost, LocalLock
from driverpipe.targets import deploy
from fakes import lease as fake_lease
from fakes.guest import FakeCapture, FakeGuest, FakeWindows
from fakes.package import StubPackage

LEASE = "C:\\WazabiEDR\\.driverpipe-lease.json"


def _other(expires_in: float = 600, host: str = "runner-7", pid: int = 4242, machine: str | None = None) -> bytes:
    now = int(time.time())
    lease = {"token": "other", "owner": "ci", "host": host, "pid": pid, "started": now, "expires": now + expires_in}
    if machine is not None:
        lease["machine"] = machine
    return json.dumps(lease).encode()


def _lease(guest: Any, seconds: float = 900) -> GuestLease:
    return GuestLease(guest, LEASE, seconds, "guest lab")


# -- renewals -------------------------------------------------------------------------------------


def test_a_renewal_answered_held_by_another_run_stops_the_deploy_with_exit_3_naming_it(project: Path) -> None:
    from driverpipe.core.config import load
    from driverpipe.core.context import RunContext

    (project / "user-config.toml").write_text("[targets.vm]\ntransport = 'local'\ntest_machine = true\n", encoding="utf-8")
    ctx = RunContext(config=load(root=project), echo=lambda _l: None, progress=lambda _l: None)
    machine = FakeWindows.prepared()
    guest = FakeGuest(machine, name="vm")
    lease = _lease(guest)
    lease.acquire(0, lambda _l: None)
    machine.files[LEASE] = _other()  # our lease expired behind our back and another run took the guest
    pkgdir = project / "pkg"
    pkgdir.mkdir()
    files = []
    for name in ("WazabiEDR_Driver.sys", "WazabiEDR_Driver.inf", "WazabiEDR_Driver.cat"):
        (pkgdir / name).write_bytes(b"MZ " + name.encode())
        files.append(pkgdir / name)
    before = guest.round_trips
    with pytest.raises(LeaseLost) as lost:
        deploy.deploy_to(
            ctx,
            guest,
            StubPackage(pkgdir, "WazabiEDR_Driver", files, None),
            ctx.config.target("vm"),
            capture_factory=lambda c, g, r: FakeCapture(g),
            renew=lease.renew,
        )
    assert lost.value.exit_code == ExitCode.ENVIRONMENT == 3
    assert "ci@runner-7 (pid 4242" in lost.value.message and "\n" not in lost.value.message
    assert guest.round_trips == before + 1, "only the renewal ran: no step after it"
    assert not any(op.startswith(("start", "stop", "create")) for op in machine.sc_log)
    lease.release()  # no longer ours: releasing must not delete the other run's lease
    assert json.loads(machine.files[LEASE])["token"] == "other"


class Answers:
    """A guest whose Set-GuestLease.ps1 answers what the test says."""

    name = "lab"

    def __init__(self, answer: Any):
        self.answer = answer

    def run_script(self, script: str, params: dict[str, Any] | None = None, **_kw: Any) -> Any:
        return self.answer


@pytest.mark.parametrize("answer", [None, "acquired", [], 1, {"acquired": "yes"}, {"acquired": 1}, {"holder": "x"}, {}])
def test_a_garbled_answer_is_not_acquired(answer: Any) -> None:
    lease = _lease(Answers(answer))
    with pytest.raises(EnvironmentProblem, match="guest lab is leased by") as refused:
        lease.acquire(0, lambda _l: None)
    assert not lease.held and "Traceback" not in refused.value.message
    lease.held = True  # as if taken earlier: a renewal with that answer is a lost lease
    with pytest.raises(LeaseLost):
        lease.renew()


def test_a_garbled_holder_in_a_refusal_is_named_without_a_traceback() -> None:
    answer = {"acquired": False, "holder": {"owner": "ci", "host": "h", "pid": "12ab", "started": "noon", "expires": 1e300}}
    with pytest.raises(EnvironmentProblem, match="leased by another run"):
        _lease(Answers(answer)).acquire(0, lambda _l: None)


# -- unreadable lease files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"\0" * 160, b'{"token":"other","owner":"ci","host":"runner-7","pid":42', b'{"token":"other"}', b"[1, 2]", b'{"token":"t","pid":"x"}'],
    ids=["nul-filled", "truncated", "fields-missing", "not-a-dict", "bad-pid"],
)
def test_an_unreadable_lease_is_held_until_its_last_write_plus_the_lease_length(content: bytes) -> None:
    machine = FakeWindows.prepared()
    machine.files[LEASE] = content
    lease = _lease(FakeGuest(machine, name="lab"), seconds=900)
    with pytest.raises(EnvironmentProblem, match="leased by an unreadable lease"):
        lease.acquire(0, lambda _l: None)
    assert machine.files[LEASE] == content, "refused: the file is left as it is"
    # Past its last write time plus the lease length it is free again (taken over, with a warning).
    p = {"Path": LEASE, "Token": "mine", "Seconds": 900}
    new, result = fake_lease.decide(content.decode("utf-8", "replace"), p, now=time.time(), mtime=time.time() - 901)
    assert result["acquired"] is True and new is not None and result["took_over"]["unreadable"]


def test_an_unreadable_lease_file_on_disk_counts_from_its_mtime(tmp_path: Path) -> None:
    path = tmp_path / "guest" / "lease.json"
    path.parent.mkdir()
    path.write_bytes(b"\0" * 64)
    params = {"Path": str(path), "Token": "mine", "Owner": "me", "Machine": "here", "ProcessId": 7, "Seconds": 60}
    assert fake_lease.on_local_file(path, params)["acquired"] is False
    old = time.time() - 61
    os.utime(path, (old, old))
    assert fake_lease.on_local_file(path, params)["acquired"] is True
    assert json.loads(path.read_text())["token"] == "mine"


def test_a_query_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "lease.json"
    assert fake_lease.on_local_file(path, {"Path": str(path), "Token": "t", "Query": True})["holder"] is None
    assert not path.parent.exists()
    machine = FakeWindows.prepared()
    assert _lease(FakeGuest(machine, name="lab")).query() is None
    assert LEASE not in machine.files


def test_the_script_reads_a_lease_it_cannot_parse_as_held_and_queries_without_creating() -> None:
    """What the fake keeps is what the script says (PowerShell itself does not run here)."""
    from driverpipe.core.scripts import load_script, script_path

    text = load_script(script_path("Set-GuestLease.ps1"))
    assert "GetLastWriteTimeUtc" in text and "unreadable" in text
    query = text.index("if ($Query)")
    assert query < text.index("New-Item") and query < text.index("[IO.FileMode]::OpenOrCreate"), "the query returns before creating anything"
    assert "MoveFileExW" in text and "WriteThrough" in text and "SetLength(0)" not in text


# -- same host, dead holder ---------------------------------------------------------------------------


def test_a_dead_holder_of_this_host_is_taken_over_one_of_another_host_only_after_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = FakeWindows.prepared()
    said: list[str] = []
    machine.files[LEASE] = _other(host=socket.gethostname(), pid=4242, machine=locks.machine_id())
    monkeypatch.setattr(locks, "_alive", lambda pid: pid != 4242)
    lease = _lease(FakeGuest(machine, name="lab"))
    lease.acquire(0, said.append)
    assert lease.held and "which is gone; taking it over" in said[-1] and "pid 4242" in said[-1]
    machine.files[LEASE] = _other(host="elsewhere", pid=4242)
    with pytest.raises(EnvironmentProblem, match=r"leased by ci@elsewhere \(pid 4242"):
        _lease(FakeGuest(machine, name="lab")).acquire(0, said.append)


# -- the local lock's holder file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"owner": "a", "host": "h", "pid": "12ab", "started": 1}',
        b'{"owner": "a", "host": "h", "pid": 99999999999999999999999, "started": 1}',
        b'{"owner": "a", "host": "h", "pid": -5, "started": 1}',
        b'{"owner": "a", "host": "h", "pid": 12, "started": "noon"}',
        b'{"owner": "a", "host": "h", "pid": 12, "started": 1e999}',
        b"\0" * 80,
        b'{"owner": "a", "ho',
        b"[]",
    ],
    ids=["pid-text", "pid-huge", "pid-negative", "started-text", "started-inf", "nul-filled", "truncated", "not-a-dict"],
)
def test_a_garbage_holder_file_is_unreadable_never_a_traceback(tmp_path: Path, content: bytes) -> None:
    lock = LocalLock(tmp_path / "t.lock", "target t")
    lock.holder_file.write_bytes(content)
    assert lock.holder() is None
    other = LocalLock(tmp_path / "t.lock", "target t")
    other.acquire(0, lambda _l: None)  # no holder alive: taken, the file rewritten
    try:
        assert lock.holder() is not None and lock.holder()["pid"] == os.getpid()  # type: ignore[index]
        with pytest.raises(EnvironmentProblem, match="target t is in use by"):
            lock.holder_file.write_bytes(content)
            LocalLock(tmp_path / "t.lock", "target t").acquire(0, lambda _l: None)
    finally:
        other.release()


def test_describe_never_raises() -> None:
    assert "since ?" in locks.describe({"owner": "a", "host": "h", "pid": 1, "started": "noon"})
    assert locks.holder_record({"owner": "a", "host": "h", "pid": True, "started": 1}) is None


# -- the pid probe ------------------------------------------------------------------------------------


class Kernel32:
    """ctypes' kernel32 at the OpenProcess boundary."""

    def __init__(self, handle: int, wait: int = 0x102):
        self.handle, self.wait = handle, wait
        self.closed: list[int] = []
        self.opened: list[tuple[int, int, int]] = []
        self.OpenProcess = self._fn(self._open)
        self.WaitForSingleObject = self._fn(lambda h, ms: self.wait)
        self.CloseHandle = self._fn(lambda h: self.closed.append(h) or 1)

    @staticmethod
    def _fn(body: Any) -> Any:
        class Fn:
            restype: Any = None
            argtypes: Any = None

            def __call__(self, *args: Any) -> Any:
                return body(*args)

        return Fn()

    def _open(self, access: int, inherit: int, pid: int) -> int:
        self.opened.append((access, inherit, pid))
        return self.handle


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"dll": Kernel32(0x44), "last_error": 0}
    monkeypatch.setattr(ctypes, "WinDLL", lambda name, use_last_error=False: state["dll"], raising=False)
    monkeypatch.setattr(ctypes, "get_last_error", lambda: state["last_error"], raising=False)
    monkeypatch.setattr(locks.sys, "platform", "win32")

    def no_kill(pid: int, sig: int) -> None:
        raise AssertionError("os.kill must never probe a pid on Windows (it sends CTRL_C_EVENT there)")

    monkeypatch.setattr(locks.os, "kill", no_kill)
    return state


def test_windows_pid_probe_running(windows: dict[str, Any]) -> None:
    assert locks._alive(1234) is True
    dll = windows["dll"]
    assert dll.opened == [(0x00100000 | 0x1000, 0, 1234)] and dll.closed == [0x44]


def test_windows_pid_probe_exited_process_is_dead(windows: dict[str, Any]) -> None:
    windows["dll"] = Kernel32(0x44, wait=0)  # WAIT_OBJECT_0: the process object is signalled (it exited)
    assert locks._alive(1234) is False and windows["dll"].closed == [0x44]


@pytest.mark.parametrize(("error", "alive"), [(87, False), (5, True)], ids=["invalid-parameter-gone", "access-denied-exists"])
def test_windows_pid_probe_open_failures(windows: dict[str, Any], error: int, alive: bool) -> None:
    windows["dll"] = Kernel32(0)
    windows["last_error"] = error
    assert locks._alive(1234) is alive


def test_windows_pid_probe_errors_are_handled(windows: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: Any, **_k: Any) -> Any:
        raise OSError(87, "The parameter is incorrect")

    monkeypatch.setattr(ctypes, "WinDLL", broken, raising=False)
    assert locks._alive(1234) is True, "a probe that fails counts as alive: never take over on doubt"
    assert locks._alive(0) is False and locks._alive(2**40) is False


def test_regress_stops_its_phases_when_a_renewal_finds_the_guest_held_and_extends_the_lease_for_reboots() -> None:
    from types import SimpleNamespace

    from driverpipe.checks.regress import RegressPlugin, RegressSession

    class Lease:
        seconds = 900.0

        def __init__(self, lost: bool):
            self.lost = lost
            self.asked: list[float] = []

        def renew(self, seconds: float) -> None:
            self.asked.append(seconds)
            if self.lost:
                raise LeaseLost("the lease on guest lab was lost: it is held by ci@runner-7 (pid 4242, since ?) now")

    class Item:
        def __init__(self, reboots: int | None):
            self.name = "test_driver_verifier"
            self.session = SimpleNamespace(shouldstop=False)
            self._reboots = reboots

        def get_closest_marker(self, name: str) -> Any:
            return SimpleNamespace(args=(self._reboots,)) if name == "reboots" and self._reboots else None

    ctx = SimpleNamespace(config=SimpleNamespace(project=SimpleNamespace(deploy=SimpleNamespace(reboot_timeout=600))))
    session = SimpleNamespace(lease=Lease(False), ctx=ctx, lease_lost=None, begin=lambda name: None, hung="")
    session.renew = lambda seconds=None: RegressSession.renew(session, seconds)  # type: ignore[arg-type]
    RegressPlugin(session).pytest_runtest_setup(Item(2))  # type: ignore[arg-type]
    assert session.lease.asked == [900 + 2 * (600 + 120)], "a phase with two reboots extends the lease to outlive them"
    session.lease = Lease(True)
    item = Item(None)
    with pytest.raises(LeaseLost):
        RegressPlugin(session).pytest_runtest_setup(item)  # type: ignore[arg-type]
    assert session.lease_lost is not None and "ci@runner-7" in str(item.session.shouldstop), "no further phase runs"


@pytest.mark.parametrize(
    "machine",
    [None, "", "linux:0123456789abcdef0123456789abcdef:pidns-4026531836", "PIDNS"],
    ids=["older-record-without-identity", "empty-identity", "another-machine", "same-machine-other-pid-namespace"],
)
def test_a_shared_hostname_is_not_this_host(monkeypatch: pytest.MonkeyPatch, machine: str | None) -> None:
    """A container with host networking or a cloned runner has our hostname but not our pid space:
    its live lease is never taken over because a pid of that number is gone here."""
    if machine == "PIDNS":
        machine = locks.machine_id().rsplit(":", 1)[0] + ":pidns-1"
    guest = FakeWindows.prepared()
    guest.files[LEASE] = _other(host=socket.gethostname(), pid=4242, machine=machine)
    monkeypatch.setattr(locks, "_alive", lambda pid: pid != 4242)
    with pytest.raises(EnvironmentProblem, match=r"leased by ci@"):
        _lease(FakeGuest(guest, name="lab")).acquire(0, lambda _l: None)
    assert json.loads(guest.files[LEASE])["token"] == "other"
    # The guest script itself refuses a take-over whose machine id does not match the lease's.
    p = {"Path": LEASE, "Token": "mine", "Seconds": 900, "TakeOverMachineId": locks.machine_id(), "TakeOverProcessId": 4242}
    assert fake_lease.decide(guest.files[LEASE].decode(), p)[1]["acquired"] is False


def test_the_machine_identity_is_machine_id_and_pid_namespace_and_is_written_into_records(tmp_path: Path) -> None:
    ident = locks.machine_id()
    assert Path("/etc/machine-id").read_text().strip() in ident and f"pidns-{os.stat('/proc/self/ns/pid').st_ino}" in ident
    lock = LocalLock(tmp_path / "t.lock", "target t")
    lock.acquire(0, lambda _l: None)
    try:
        assert lock.holder()["machine"] == ident  # type: ignore[index]
    finally:
        lock.release()
    guest = FakeWindows.prepared()
    lease = _lease(FakeGuest(guest, name="lab"))
    lease.acquire(0, lambda _l: None)
    assert json.loads(guest.files[LEASE])["machine"] == ident
    lease.release()


@pytest.mark.parametrize("error", [0, 6, 8, 31, 1450], ids=["no-error", "invalid-handle", "no-memory", "general", "no-resources"])
def test_windows_pid_probe_an_open_failure_other_than_87_is_alive(windows: dict[str, Any], error: int) -> None:
    windows["dll"] = Kernel32(0)
    windows["last_error"] = error
    assert locks._alive(1234) is True


def test_windows_pid_probe_wait_failed_is_alive(windows: dict[str, Any]) -> None:
    windows["dll"] = Kernel32(0x44, wait=0xFFFFFFFF)  # WAIT_FAILED says nothing about the process
    assert locks._alive(1234) is True and windows["dll"].closed == [0x44]


@pytest.mark.parametrize("answer", [None, "text", [1], {"acquired": False, "holder": "x"}, {"holder": {"owner": "a", "pid": "12ab"}}])
def test_a_garbled_query_answer_is_an_unreadable_holder_never_not_leased(answer: Any) -> None:
    holder = _lease(Answers(answer)).query()
    assert holder is not None and holder.get("unreadable") and "unreadable" in locks.describe(holder)
    assert _lease(Answers({"acquired": False, "holder": None})).query() is None


def test_an_unreadable_lease_is_held_for_the_holders_lease_length_not_the_callers(tmp_path: Path) -> None:
    path = tmp_path / "guest" / "lease.json"
    holder = {"Path": str(path), "Token": "theirs", "Owner": "ci", "Machine": "h", "ProcessId": 7, "Seconds": 3600}
    assert fake_lease.on_local_file(path, holder)["acquired"] is True
    assert path.with_name(path.name + ".expires").is_file(), "the sidecar is written with the lease"
    path.write_bytes(b"\0" * 64)  # torn by a bugcheck
    old = time.time() - 120
    os.utime(path, (old, old))
    caller = {**holder, "Token": "mine", "Seconds": 60}
    answer = fake_lease.on_local_file(path, caller)
    assert answer["acquired"] is False and answer["holder"]["expires"] > time.time() + 3000
    assert fake_lease.decide("\0" * 64, caller, mtime=old)[1]["acquired"] is True, "without the sidecar: the caller's length"


def test_the_script_keeps_the_machine_identity_and_the_expiry_sidecar() -> None:
    """What the fake keeps is what the script says (PowerShell itself does not run here)."""
    from driverpipe.core.scripts import load_script, script_path

    text = load_script(script_path("Set-GuestLease.ps1"))
    assert "$TakeOverMachine " not in text and "($current.machine -eq $TakeOverMachineId)" in text
    assert "machine = $MachineId" in text and "'.expires'" in text
    assert text.index("$Path + '.expires'), [string]($now + $Seconds)") < text.index("@($Path, ($lease"), "the sidecar is written first"
