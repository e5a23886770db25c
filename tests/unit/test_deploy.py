"""`invoke deploy` / `invoke unload` driven through every branch against the fake Windows guest."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import CheckFailed, ConfigError, EnvironmentProblem, StepFailed
from driverpipe.parse.psgrammar import check_bound_params
from driverpipe.targets import deploy, operations, state, steps
from fakes.guest import DEBUG_FILTER_KEY, FakeCapture, FakeGuest, FakeWindows
from fakes.package import StubPackage

GUEST_DIR = "C:\\WazabiEDR"
SYS = GUEST_DIR + "\\WazabiEDR_Driver.sys"


Pkg = StubPackage


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.01)


@pytest.fixture
def env(project: Path) -> dict[str, Any]:
    (project / "user-config.toml").write_text(
        "default_target = 'vm'\n"
        "[targets.vm]\ntransport = 'local'\ntest_machine = true\nvm_host = 'hv'\nvm_name = 'Win11-Test'\n"
        "[targets.prod]\ntransport = 'local'\n"
        "[targets.q]\ntransport = 'local'\ntest_machine = true\nvm_host = 'qm'\n"
        "[vm_hosts.hv]\nkind = 'hyperv'\n"
        "[vm_hosts.qm]\nkind = 'qemu'\n",
        encoding="utf-8",
    )
    out: list[str] = []
    progress: list[str] = []
    ctx = RunContext(config=load(root=project), echo=out.append, progress=progress.append)
    pkgdir = project / "artifacts" / "package"
    pkgdir.mkdir(parents=True)
    files = []
    for name, data in (("WazabiEDR_Driver.sys", b"MZ driver v1"), ("WazabiEDR_Driver.inf", b"[Version]"), ("WazabiEDR_Driver.cat", b"0\x82cat")):
        (pkgdir / name).write_bytes(data)
        files.append(pkgdir / name)
    cer = pkgdir / "WazabiEDR_Test.cer"
    cer.write_bytes(b"0\x82\x01\x0afake DER certificate")
    thumb = hashlib.sha1(cer.read_bytes()).hexdigest().upper()
    return {"ctx": ctx, "out": out, "progress": progress, "pkg": Pkg(pkgdir, "WazabiEDR_Driver", files, cer), "thumb": thumb}


def _deploy(env: dict[str, Any], machine: FakeWindows, target: str = "vm", **kw: Any) -> tuple[FakeGuest, int]:
    ctx = env["ctx"]
    guest = FakeGuest(machine, name=target)
    clock = Clock()
    code = deploy.deploy_to(
        ctx,
        guest,
        env["pkg"],
        ctx.config.target(target),
        capture_factory=lambda c, g, run_id: FakeCapture(g),
        clock=clock,
        sleep=clock.sleep,
        **kw,
    )
    return guest, code


def _prepared_with_package(env: dict[str, Any]) -> FakeWindows:
    m = FakeWindows.prepared(env["thumb"])
    _deploy(env, m)
    return m


def test_first_deploy_prepares_reboots_pushes_loads_and_verifies(env: dict[str, Any]) -> None:
    m = FakeWindows()
    guest, code = _deploy(env, m)
    assert code == 0
    assert m.boot_count == 1 and m.testsigning_active
    assert m.reg_get(DEBUG_FILTER_KEY, "DEFAULT") == 0xF
    assert env["thumb"] in m.cert_stores["Root"] and env["thumb"] in m.cert_stores["TrustedPublisher"]
    assert m.files[SYS] == b"MZ driver v1"
    assert not [k for k in m.files if k.endswith(".driverpipe-tmp")]
    svc = m.services["WazabiEDR"]
    assert (svc.state, svc.type, svc.start, svc.binpath) == (4, 1, 3, SYS)
    assert "\\\\.\\WazabiEDR" in m.devices
    assert any(line.startswith("==> reboot") for line in env["progress"])
    assert any("deploy ok" in line for line in env["out"])
    assert guest.pools_opened > 1  # rebuilt after the reboot


def test_redeploy_unchanged_three_round_trips_one_pool_no_copy_no_reboot(env: dict[str, Any]) -> None:
    m = _prepared_with_package(env)
    boots = m.boot_count
    files_before = dict(m.files.items())
    guest, code = _deploy(env, m)
    assert code == 0
    assert guest.round_trips <= 3 and guest.pools_opened == 1
    assert m.boot_count == boots
    assert [c[0] for c in guest.calls] == ["Get-GuestState.ps1", "Invoke-DriverLoad.ps1", "Test-DeviceChecks.ps1"]
    assert {k: v for k, v in m.files.items() if "fake-capture" not in k} == {k: v for k, v in files_before.items() if "fake-capture" not in k}
    assert m.services["WazabiEDR"].state == 4
    assert m.sc_log[-6:-1] == [
        "query WazabiEDR",
        "stop WazabiEDR",
        "query WazabiEDR",
        "config WazabiEDR type= kernel start= demand binPath= " + SYS,
        "start WazabiEDR",
    ]


def test_changed_build_stops_old_before_replacing_the_image(env: dict[str, Any]) -> None:
    m = _prepared_with_package(env)
    (env["pkg"].files[0]).write_bytes(b"MZ driver v2")
    guest, code = _deploy(env, m)
    assert code == 0
    names = [c[0] for c in guest.calls]
    assert names.index("Invoke-DriverUnload.ps1") < names.index("Invoke-DriverLoad.ps1")
    assert m.files[SYS] == b"MZ driver v2"
    assert m.services["WazabiEDR"].loaded_image_sha256 == hashlib.sha256(b"MZ driver v2").hexdigest()


def test_secure_boot_on_stops_with_the_hyperv_fix_and_changes_nothing(env: dict[str, Any]) -> None:
    m = FakeWindows(secure_boot=True)
    with pytest.raises(EnvironmentProblem) as err:
        _deploy(env, m)
    assert "Secure Boot is on" in err.value.message
    assert "Set-VMFirmware -VMName Win11-Test -EnableSecureBoot Off" in (err.value.hint or "")
    assert m.boot_count == 0 and m.bcd["testsigning"] == "No"


def test_secure_boot_fix_for_qemu_names_non_secure_ovmf(env: dict[str, Any]) -> None:
    with pytest.raises(EnvironmentProblem) as err:
        _deploy(env, FakeWindows(secure_boot=True), target="q")
    assert "OVMF_CODE_4M.fd" in (err.value.hint or "") and "secboot" in (err.value.hint or "")


def test_bios_machine_is_fine(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"], secure_boot=None)
    _, code = _deploy(env, m)
    assert code == 0


def test_unprepared_non_test_machine_is_refused(env: dict[str, Any]) -> None:
    m = FakeWindows()
    with pytest.raises(ConfigError) as err:
        _deploy(env, m, target="prod")
    assert "test_machine" in err.value.message
    assert m.bcd["testsigning"] == "No" and not m.cert_stores["Root"] and m.boot_count == 0


def test_not_elevated(env: dict[str, Any]) -> None:
    with pytest.raises(EnvironmentProblem, match="not elevated"):
        _deploy(env, FakeWindows.prepared(env["thumb"], elevated=False))


def test_unsigned_driver_gives_577_diagnosis(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"], driver_signed=False)
    with pytest.raises(StepFailed) as err:
        _deploy(env, m)
    assert "577" in err.value.message and "ERROR_INVALID_IMAGE_HASH" in err.value.message and "sign" in err.value.message


def test_driverentry_failure_31_quotes_the_failed_step(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"])
    m.reg_set(m.params_key(), "FailAtStep", 1)
    with pytest.raises(StepFailed) as err:
        _deploy(env, m)
    assert "31" in err.value.message
    assert "[WazabiEDR] IoCreateDevice failed (status 0xC0000001)" in err.value.message
    assert "\\\\.\\WazabiEDR" not in m.devices


def test_hvci_is_refused_before_loading(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"], hvci=True)
    with pytest.raises(EnvironmentProblem, match="HVCI"):
        _deploy(env, m)
    assert "start WazabiEDR" not in m.sc_log


def test_1275_from_sc_start_is_diagnosed_as_code_integrity(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"])
    _deploy(env, m)
    m.hvci = True  # turned on behind our back: load_driver alone sees sc's 1275
    result = operations.load_driver(env["ctx"], FakeGuest(m), env["pkg"], state=state.GuestState(hvci=True))
    assert not result.ok and result.start_code == 1275
    assert "Code Integrity" in result.message and "HVCI" in result.message


def test_reboot_timeout(env: dict[str, Any]) -> None:
    m = FakeWindows(fail_reboot=True)
    with pytest.raises(StepFailed, match="did not come back from the reboot within 600 s"):
        _deploy(env, m)


@pytest.mark.parametrize("drop", ["unreachable", "closed"])
def test_connection_lost_mid_run_says_what_state_the_guest_is_in(env: dict[str, Any], drop: str) -> None:
    m = _prepared_with_package(env)
    m.lose_connection_after = 1
    m.drop_error = drop
    with pytest.raises(EnvironmentProblem) as err:
        _deploy(env, m)
    assert "connection lost during 'load'" in err.value.message
    assert "load may have completed" in err.value.message


def test_bugcheck_on_load_is_a_lost_connection_with_evidence_left(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"], crash_on_load=True)
    with pytest.raises(EnvironmentProblem, match="connection lost during 'load'"):
        _deploy(env, m)
    assert m.events and m.events[0]["id"] == 1001
    assert any("Minidump" in k for k in m.files)


def test_failed_push_leaves_no_half_written_driver(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"], fail_push=True)
    with pytest.raises(EnvironmentProblem, match="connection lost during 'push'"):
        _deploy(env, m)
    assert SYS not in m.files


def test_ctrl_c_reports_the_driver_state(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"])

    def boom(d: state.Deployment) -> None:
        raise KeyboardInterrupt

    plan = [*steps.PLAN[:-1], state.Step("verify", "interrupted here", boom)]
    with pytest.raises(KeyboardInterrupt):
        _deploy(env, m, plan=plan)
    assert any("interrupted during 'verify': driver left loaded (RUNNING)" in line for line in env["out"])


def test_leaky_unwind_makes_the_next_load_fail_in_iocreatedevice(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"], leaky_unwind=True)
    guest = FakeGuest(m)
    ctx = env["ctx"]
    _deploy(env, m)
    operations.unload_driver(ctx, guest)
    operations.set_fault_step(guest, ctx, 2)
    first = operations.load_driver(ctx, guest, env["pkg"], FakeCapture(guest))
    assert first.start_code == 31 and "IoCreateSymbolicLink failed" in first.failed_line
    operations.set_fault_step(guest, ctx, 0)
    assert m.reg_get(m.params_key(), "FailAtStep") is None
    second = operations.load_driver(ctx, guest, env["pkg"], FakeCapture(guest))
    assert second.start_code == 31 and "IoCreateDevice failed (status 0xC0000035)" in second.failed_line


def test_unload_stops_checks_device_and_deletes(env: dict[str, Any]) -> None:
    m = _prepared_with_package(env)
    guest = FakeGuest(m)
    result = operations.unload_driver(env["ctx"], guest, delete=True)
    assert result.stopped and result.device_gone and result.device_open_error == 2 and result.deleted
    assert "WazabiEDR" not in m.services
    again = operations.unload_driver(env["ctx"], guest)
    assert again.stopped and again.stop_code == 1060


def test_unload_task_via_open_guest(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    m = _prepared_with_package(env)
    monkeypatch.setattr(deploy, "_open_guest", lambda ctx, target: FakeGuest(m))
    deploy.unload(env["ctx"], target=None, delete=False)
    assert m.services["WazabiEDR"].state == 1
    assert any("stopped" in line and "gone" in line for line in env["out"])


def test_unload_reports_a_device_that_stays(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    m = _prepared_with_package(env)
    m.device_path = "\\\\.\\Other"  # the fake driver then "forgets" to remove \\.\WazabiEDR on stop
    m.devices.add("\\\\.\\WazabiEDR")
    monkeypatch.setattr(deploy, "_open_guest", lambda ctx, target: FakeGuest(m))
    with pytest.raises(CheckFailed, match="still opens"):
        deploy.unload(env["ctx"], target=None, delete=False)


def test_smoke_test_mismatch_is_a_check_failure(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"], ioctl_error=0)
    with pytest.raises(CheckFailed, match="ERROR_INVALID_FUNCTION"):
        _deploy(env, m)


def test_read_guest_state_parses_everything(env: dict[str, Any]) -> None:
    m = _prepared_with_package(env)
    s = operations.read_guest_state(FakeGuest(m), env["ctx"], pkg=env["pkg"])
    assert s.testsigning_configured and s.testsigning_active and s.debug_filter == 0xF and s.cert_trusted
    assert s.service.running and s.service.binary_path == SYS and s.service.start_type == 3
    assert s.files["WazabiEDR_Driver.sys"] == hashlib.sha256(b"MZ driver v1").hexdigest()
    assert s.boot_time == m.boot_time


class DryGuest:
    """Stands in for the transports' DryGuest: shows each script with its params, returns None."""

    name = "dry"
    round_trips = 0

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.shown: list[str] = []

    def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> None:
        from driverpipe.core.scripts import script_path

        assert check_bound_params(script_path(script), dict(params or {})) == []
        self.shown.append(script)
        self.ctx.show_script("dry", script_path(script), params or {})

    def run_batch(self, items: list[tuple[str, dict[str, Any]]], *, timeout: float | None = None) -> list[None]:
        return [self.run_script(name, params) for name, params in items]

    def push(self, local: Path, remote: str) -> None:
        self.shown.append(f"push {remote}")

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_dry_prints_the_plan_of_a_first_deploy(env: dict[str, Any], project: Path) -> None:
    ctx = RunContext(config=load(root=project), dry=True, echo=env["out"].append, progress=env["progress"].append)
    guest = DryGuest(ctx)
    assert deploy.deploy_to(ctx, guest, env["pkg"], ctx.config.target("vm")) == 0
    assert guest.shown[:2] == ["Get-GuestState.ps1", "Set-GuestPrepared.ps1"]
    assert "Restart-Guest.ps1" in guest.shown and "Invoke-DriverLoad.ps1" in guest.shown and "Test-DeviceChecks.ps1" in guest.shown
    assert any(s.startswith("push ") for s in guest.shown)
    assert any("deploy plan" in line for line in env["out"])


def test_fake_guest_rejects_a_parameter_the_script_does_not_declare() -> None:
    guest = FakeGuest(FakeWindows())
    with pytest.raises(AssertionError, match="does not declare"):
        guest.run_script("Set-FaultStep.ps1", {"ServiceName": "x", "Step": 1, "Bogus": 2})
    with pytest.raises(AssertionError, match="mandatory -Step"):
        guest.run_script("Set-FaultStep.ps1", {"ServiceName": "x"})


def test_every_bound_parameter_set_deploy_uses_matches_its_script(env: dict[str, Any]) -> None:
    # Every call of a first deploy went through FakeGuest's check_bound_params; list them for the record.
    guest, _ = _deploy(env, FakeWindows())
    scripts = {name for name, _ in guest.calls}
    assert {"Get-GuestState.ps1", "Set-GuestPrepared.ps1", "Restart-Guest.ps1", "Get-BootTime.ps1", "Test-GuestReady.ps1"} <= scripts


# ---- the fake guest keeps Windows' rules (others test against it too) ---------------------------


def test_fake_testsigning_needs_a_reboot_and_boot_time_changes() -> None:
    m = FakeWindows()
    m.files["C:\\W\\d.sys"] = b"MZ"
    m.sc("create", "WazabiEDR", "type=", "kernel", "start=", "demand", "binPath=", "C:\\W\\d.sys")
    m.bcdedit_set("testsigning", "on")
    assert m.sc("start", "WazabiEDR")[0] == 577  # set, but not active in this boot
    before = m.boot_time
    m.reboot()
    assert m.boot_time != before
    assert m.sc("start", "WazabiEDR")[0] == 0 and "\\\\.\\WazabiEDR" in m.devices
    m.reboot()
    assert m.services["WazabiEDR"].state == 1 and not m.devices  # services stop on reboot


def test_fake_guest_counts_round_trips_and_skips_identical_pushes(tmp_path: Path) -> None:
    m = FakeWindows()
    g = FakeGuest(m)
    f = tmp_path / "a.sys"
    f.write_bytes(b"MZ1")
    assert g.push(f, "C:\\W\\a.sys").copied
    assert not g.push(f, "c:/w/A.SYS").copied  # Windows paths are case-insensitive
    assert g.read_range("C:\\W\\a.sys", 1, 10) == b"Z1"
    g.run_batch([("Get-BootTime.ps1", {}), ("Test-GuestReady.ps1", {})])
    assert g.round_trips == 4 and g.pools_opened == 1
    m.down = True
    with pytest.raises(EnvironmentProblem, match="unreachable"):
        g.run_script("Get-BootTime.ps1", {})


def test_fake_running_image_cannot_be_replaced(env: dict[str, Any], tmp_path: Path) -> None:
    m = _prepared_with_package(env)
    f = tmp_path / "new.sys"
    f.write_bytes(b"MZ other build")
    with pytest.raises(StepFailed, match="being used by another process"):
        FakeGuest(m).push(f, SYS)
    assert m.files[SYS] == b"MZ driver v1"


def test_a_capture_that_cannot_start_does_not_block_the_load(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from driverpipe.transports.base import GuestScriptError
    from fakes.guest import HANDLERS

    def broken(machine: FakeWindows, params: dict[str, Any]) -> Any:
        raise GuestScriptError("Dbgview.exe not found")

    class BrokenCapture(FakeCapture):
        def start_items(self) -> list[tuple[str, dict[str, Any]]]:
            return [("Get-BootTime.ps1", {})]  # stands in for a capture script that fails

    monkeypatch.setitem(HANDLERS, "get-boottime.ps1", broken)
    m = FakeWindows.prepared(env["thumb"])
    guest = FakeGuest(m)
    code = deploy.deploy_to(env["ctx"], guest, env["pkg"], env["ctx"].config.target("vm"), capture_factory=lambda c, g, r: BrokenCapture(g))
    assert code == 0 and m.services["WazabiEDR"].state == 4
    assert any("capture did not start" in line and "Dbgview.exe not found" in line for line in env["out"])


def test_guest_state_attributes_doctor_reads(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"], secure_boot=None)
    m.files["C:\\Tools\\Dbgview.exe"] = b"MZ"
    s = operations.read_guest_state(FakeGuest(m), env["ctx"])
    assert s.secure_boot is None and "BIOS" in s.secure_boot_detail
    assert s.testsigning is True and s.debug_filter_ok is True and s.debugview_present is True and s.hvci is False and s.elevated
    s2 = operations.read_guest_state(FakeGuest(FakeWindows(secure_boot=True)), env["ctx"])
    assert s2.secure_boot is True and s2.testsigning is False and s2.debug_filter_ok is False and s2.debugview_present is False


def test_pending_testsigning_on_a_test_machine_only_reboots(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"])
    m.bcd_active["testsigning"] = "No"  # set in the store, this boot predates it
    guest, code = _deploy(env, m)
    assert code == 0 and m.boot_count == 1
    assert "Set-GuestPrepared.ps1" not in [n for n, _ in guest.calls]


def test_pending_testsigning_on_a_non_test_machine_is_refused(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared(env["thumb"])
    m.bcd_active["testsigning"] = "No"
    with pytest.raises(ConfigError, match="reboot to activate TESTSIGNING"):
        _deploy(env, m, target="prod")
    assert m.boot_count == 0


def test_prepared_non_test_machine_deploys_without_changes(env: dict[str, Any]) -> None:
    m = FakeWindows.prepared("")  # cert not trusted: only a note, loading needs no trust
    _, code = _deploy(env, m, target="prod")
    assert code == 0 and not m.cert_stores["Root"]
    assert any("not changing it" in line for line in env["out"])


def test_a_refused_stop_is_reported_at_once_not_as_a_timeout(env: dict[str, Any]) -> None:
    """sc stop refused with 1052 (no DriverUnload): the load script stops waiting at once and says why."""
    m = _prepared_with_package(env)
    m.services["WazabiEDR"].no_unload = True
    with pytest.raises(StepFailed) as err:
        _deploy(env, m)
    assert "1052" in err.value.message and "ERROR_INVALID_SERVICE_CONTROL" in err.value.message
    assert "old build is still loaded" in err.value.message
    assert "query WazabiEDR" not in m.sc_log[m.sc_log.index("stop WazabiEDR") + 1 :], "no wait for STOPPED after a refusal"


def test_a_stop_answered_1061_is_waited_for_and_the_start_577_is_reported(env: dict[str, Any]) -> None:
    """1061 (already stopping) is "wait for STOPPED" on both sides: the load's real outcome, a 577, is what is reported."""
    m = _prepared_with_package(env)
    m.services["WazabiEDR"].stop_pending = True
    m.driver_signed = False
    result = operations.load_driver(env["ctx"], FakeGuest(m), env["pkg"])
    assert [op.code for op in result.ops if op.op == "stop"] == [1061]
    assert result.start_code == 577 and not result.ok
    assert "577" in result.message and "1061" not in result.message and "sc stop" not in result.message


def test_a_successful_start_reports_the_driver_loaded_even_if_the_last_query_races(env: dict[str, Any]) -> None:
    m = _prepared_with_package(env)
    real = m.sc

    def racing(*args: str) -> tuple[int, str]:
        rc, out = real(*args)
        if args[:1] == ("query",) and "STATE" in out and "4  RUNNING" in out:
            out = out.replace("4  RUNNING", "2  START_PENDING")
        return rc, out

    m.sc = racing  # type: ignore[method-assign]
    result = operations.load_driver(env["ctx"], FakeGuest(m), env["pkg"])
    assert result.ok and result.start_code == 0 and result.driver_loaded


def test_a_hung_load_or_unload_names_what_it_was_waiting_on(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from driverpipe.transports.errors import GuestTimeout

    m = _prepared_with_package(env)
    guest = FakeGuest(m)

    def hung(*_a: Any, **_k: Any) -> Any:
        raise GuestTimeout("the batch of Invoke-DriverLoad.ps1 did not finish within 3 s on fake; stopped", "raise deploy.script_timeout")

    monkeypatch.setattr(guest, "run_batch", hung)
    monkeypatch.setattr(guest, "run_script", hung)
    with pytest.raises(GuestTimeout, match=r"waiting on `sc start WazabiEDR` \(the driver's DriverEntry\)"):
        operations.load_driver(env["ctx"], guest, env["pkg"])
    with pytest.raises(GuestTimeout, match=r"waiting on `sc stop WazabiEDR` \(the driver's DriverUnload\) or opening"):
        operations.unload_driver(env["ctx"], guest)


def test_a_driver_without_a_device_runs_no_device_check_and_unload_says_so(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    out: list[str] = []
    env["ctx"] = RunContext(config=load(root=env["ctx"].config.root, flags={"device_path": ""}), echo=out.append, progress=lambda _l: None)
    m = FakeWindows.prepared(env["thumb"])
    guest, code = _deploy(env, m)
    assert code == 0
    assert "Test-DeviceChecks.ps1" not in [c[0] for c in guest.calls]
    assert 'vm: device checks: no device declared (device_path = "")' in out
    monkeypatch.setattr(deploy, "_open_guest", lambda ctx, target: FakeGuest(m))
    deploy.unload(env["ctx"], target=None, delete=False)
    assert "vm: WazabiEDR stopped; device gone after unload: not applicable (no device declared)" in out
