"""The steps of the Windows deploy plan (PLAN): state, check, prepare, reboot, stop-old, push,
load, smoke, verify. Other kinds of target reuse the ones that apply (targets/wine)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from ..core.errors import CheckFailed, ConfigError, PipelineError
from ..parse.bcdedit import parse_bcdedit_set
from ..parse.text import native_text
from ..parse.winparse import normalize_image_path
from .operations import load_driver, ops_for, read_guest_state, unload_driver
from .reboot import reboot_and_wait
from .state import (
    DEBUG_FILTER_WANTED,
    Deployment,
    DeployStepFailed,
    GuestNotReady,
    GuestState,
    Step,
    _filter_ok,
    _join,
    _service_name,
    _sha256,
    _sys_file,
    cert_thumbprint,
)
from .wine.folders import claim_push_folder


def _missing_preparation(state: GuestState) -> list[str]:
    missing = []
    if not state.testsigning_configured:
        missing.append("TESTSIGNING")
    if not _filter_ok(state.debug_filter):
        missing.append("Debug Print Filter DEFAULT=0xF")
    if not state.cert_trusted:
        missing.append("test certificate in LocalMachine Root + TrustedPublisher")
    return missing


def _secure_boot_fix(d: Deployment) -> str:
    host = str(d.target.get("vm_host") or "")
    kind = ""
    if host:
        try:
            kind = str(d.ctx.config.user.vm_hosts[host]["kind"])
        except (KeyError, AttributeError, TypeError):
            kind = ""
    vm = str(d.target.get("vm_name") or "<vm_name>")
    if kind == "hyperv":
        return f"on the Hyper-V host, with the VM off: Set-VMFirmware -VMName {vm} -EnableSecureBoot Off"
    if kind == "qemu":
        return (
            f"boot the VM with OVMF firmware without Secure Boot: set vm_hosts.{host}.ovmf_code to OVMF_CODE_4M.fd "
            "(not the .secboot.fd / .ms.fd variants) and use a vars file without enrolled keys"
        )
    if kind == "libvirt":
        return f"give domain {vm} a non-Secure-Boot OVMF loader (OVMF_CODE_4M.fd, <loader secure='no'>) and a fresh NVRAM"
    return "turn Secure Boot off in the VM's firmware settings (Hyper-V: Set-VMFirmware -EnableSecureBoot Off; QEMU: non-secure OVMF_CODE_4M.fd)"


def step_read_state(d: Deployment) -> None:
    d.state = read_guest_state(d.guest, d.ctx, pkg=d.pkg, guest_dir=d.dir)
    s = d.state
    d.driver = "loaded" if s.service.running else ("stopped" if s.service.exists else "not installed")
    if not s.synthetic:
        d.ctx.say(f"{d.name}: {ops_for(d.guest).summary(s)}")


def step_check(d: Deployment) -> None:
    s = d.state
    if s.synthetic:
        d.ctx.say("[dry] the checks run on the real state; planning as for an unprepared test machine")
        return
    if not s.elevated:
        raise GuestNotReady(
            f"{d.name}: the remote session is not elevated (not an administrator)",
            "use an account in the guest's Administrators group (local accounts: LocalAccountTokenFilterPolicy=1)",
        )
    if s.secure_boot is True:
        raise GuestNotReady(f"{d.name}: Secure Boot is on, so TESTSIGNING cannot be enabled and test-signed drivers cannot load", _secure_boot_fix(d))
    if s.hvci:
        raise GuestNotReady(
            f"{d.name}: HVCI (memory integrity) is on; it blocks test-signed drivers (sc start would fail with 1275)",
            "turn off Windows Security > Device security > Core isolation > Memory integrity "
            "(or HypervisorEnforcedCodeIntegrity Enabled=0 under HKLM\\SYSTEM\\CurrentControlSet\\Control\\DeviceGuard\\Scenarios), then reboot",
        )
    if s.os_build and s.os_build < 10240:
        d.ctx.say(f"warning: {d.name} runs build {s.os_build}; the driver targets Windows 10/11")
    missing = _missing_preparation(s)
    pending = bool(s.testsigning_configured) and not s.testsigning_active  # set, but this boot predates it
    if not bool(d.target.get("test_machine")):
        if "TESTSIGNING" in missing or pending:
            need = "TESTSIGNING (bcdedit /set testsigning on + reboot)" if "TESTSIGNING" in missing else "a reboot to activate TESTSIGNING"
            raise ConfigError(
                f"{d.name} needs {need}, but targets.{d.name}.test_machine is not true, so deploy will neither change nor reboot it",
                f"set targets.{d.name}.test_machine = true for a throwaway test VM, or do it yourself on the guest",
            )
        if missing:
            d.ctx.say(f"note: {d.name} lacks {', '.join(missing)}; not changing it (targets.{d.name}.test_machine is false)")
        return
    if pending:
        d.reboot_needed = True


def step_prepare(d: Deployment) -> None:
    s = d.state
    params: dict[str, Any] = {}
    if not s.testsigning_configured:
        params["EnableTestSigning"] = True
    if not _filter_ok(s.debug_filter):
        params["SetDebugFilter"] = True
        params["DebugFilterValue"] = DEBUG_FILTER_WANTED
    if not s.cert_trusted and d.pkg.cert_path and Path(d.pkg.cert_path).is_file():
        thumb, der = cert_thumbprint(d.pkg.cert_path)
        params["CertBase64"] = base64.b64encode(der).decode()
        params["CertThumbprint"] = thumb
    result = d.guest.run_script("Set-GuestPrepared.ps1", params, timeout=float(d.ctx.config.project.deploy.script_timeout))
    if not isinstance(result, dict):
        d.reboot_needed = "EnableTestSigning" in params
        return
    bcd = result.get("bcdedit") or {}
    if params.get("EnableTestSigning") and bcd and int(bcd.get("rc") or 0) != 0:
        outcome = parse_bcdedit_set(int(bcd.get("rc") or 0), native_text(bcd))
        why = {"secure-boot": "the value is protected by Secure Boot policy", "access-denied": "access denied (not elevated)"}.get(outcome.outcome, "")
        fix = (
            _secure_boot_fix(d)
            if outcome.outcome == "secure-boot" or (outcome.outcome == "error" and s.secure_boot is not False)
            else (
                "use an account in the guest's Administrators group"
                if outcome.outcome == "access-denied"
                else "run it by hand in an elevated prompt to see why"
            )
        )
        raise DeployStepFailed(f"{d.name}: bcdedit /set testsigning on failed (exit {bcd.get('rc')}): {why or outcome.message or 'no output'}", fix)
    changed = result.get("changed") or []
    if changed:
        d.ctx.say(f"{d.name}: prepared {', '.join(str(c) for c in changed)}")
    if result.get("reboot_required"):
        d.reboot_needed = True


def step_reboot(d: Deployment) -> None:
    reboot_and_wait(d.ctx, d.guest, float(d.ctx.config.project.deploy.reboot_timeout), clock=d.clock, sleep=d.sleep)
    d.driver = "stopped" if d.state.service.exists else "not installed"
    if d.ctx.dry:
        return
    d.state = read_guest_state(d.guest, d.ctx, pkg=d.pkg, guest_dir=d.dir)
    if not d.state.testsigning_active:
        raise DeployStepFailed(
            f"{d.name}: TESTSIGNING is still not active after the reboot",
            "check `bcdedit /enum {current}` on the guest and that Secure Boot is off",
        )


def _plan_push(d: Deployment) -> bool:
    d.to_push = [f for f in d.pkg.files if d.state.files.get(f.name) is None or d.state.files.get(f.name) != _sha256(f)]
    return bool(d.to_push)


def _old_build_in_the_way(d: Deployment) -> bool:
    # A loaded driver's image cannot be replaced: stop it before copying over it (unsure: Windows locks it).
    svc = d.state.service
    sys_name = _sys_file(d.pkg).name
    target = normalize_image_path(_join(d.dir, sys_name))
    return svc.running and any(f.name == sys_name for f in d.to_push) and normalize_image_path(svc.binary_path or target) == target


def step_stop_old(d: Deployment) -> None:
    d.driver = "unknown (stopping the old build)"
    result = unload_driver(d.ctx, d.guest)
    if not result.stopped:
        d.driver = "loaded (old build)"
        raise DeployStepFailed(f"{d.name}: cannot stop the loaded older build: {result.message}", "reboot the guest, then deploy again")
    d.driver = "stopped"


def step_push(d: Deployment) -> None:
    if getattr(d.guest, "kind", "") == "wine" and not d.ctx.dry:
        claim_push_folder(d.guest.prefix, d.dir)  # the folder is on this machine, and vm.revert deletes it
    for f in d.to_push:
        remote = _join(d.dir, f.name)
        d.ctx.step(f"push {f.name} -> {remote}")
        res = ops_for(d.guest).push(f, remote)
        want = _sha256(f)
        got = str(getattr(res, "sha256", "") or "").lower()
        if not d.ctx.dry and want and got and got != want:
            raise DeployStepFailed(f"{d.name}: {remote} has sha256 {got} after the copy, expected {want}", "run `invoke deploy` again")


def step_load(d: Deployment) -> None:
    d.capture = _make_capture(d) if d.verify else None
    d.driver = "unknown (load in progress)"
    d.load = load_driver(d.ctx, d.guest, d.pkg, d.capture, guest_dir=d.dir, state=d.state)
    r = d.load
    if r.capture_error:
        d.ctx.say(f"note: the DbgPrint capture did not start ({r.capture_error}); loading without it, not verified")
        d.capture = None
    d.driver = "loaded" if r.driver_loaded else "stopped"
    if r.dry:
        return
    if not r.ok:
        raise DeployStepFailed(f"{d.name}: {r.message}" if r.message else f"{d.name}: loading the driver failed")
    d.ctx.say(f"{d.name}: {_service_name(d.ctx)} is RUNNING")


def step_smoke(d: Deployment) -> None:
    """The declared device checks (targets/devicechecks.py): one line per check, then the summary."""
    r = d.load
    device = str(d.ctx.config.project.device_path)
    if r is None or r.dry:
        return
    if not device:
        d.ctx.say(f'{d.name}: device checks: no device declared (device_path = "")')
        return
    if r.smoke is None:
        return
    for line in r.smoke.lines:
        d.ctx.say(f"{d.name}: {line}")
    if not r.smoke.ok:
        raise CheckFailed(f"{d.name}: smoke test: {r.smoke.describe(device)}", "see the driver's DbgPrint lines: `invoke logs`")
    d.ctx.say(f"{d.name}: smoke test ok: {r.smoke.describe(device)}")


def step_verify(d: Deployment) -> None:
    if d.capture is None:
        d.ctx.say(f"note: DbgPrint sequence not verified on {d.name} (capture unavailable)")
        return
    verdict = d.capture.wait_for("load")
    if d.ctx.dry:
        return  # the capture printed what it would wait for
    d.ctx.say(_render(verdict))
    save = getattr(d.capture, "save", None)
    saved = save(d.ctx.artifacts / "logs" / d.name) if callable(save) else None
    if saved is not None:
        d.ctx.say(f"DbgPrint log saved: {saved} (the capture keeps running until the next deploy starts one; `invoke logs` pulls it)")
    if not getattr(verdict, "passed", False):
        raise CheckFailed(f"{d.name}: DbgPrint check failed: {getattr(verdict, 'message', '')}", "`invoke logs` pulls the full capture")


def _render(verdict: Any) -> str:
    method = getattr(verdict, "render_table", None)
    if callable(method):
        return str(method())
    try:
        from ..parse.expect import render_table  # the real Verdict is rendered by a function

        return str(render_table(verdict))
    except (ImportError, AttributeError, TypeError):
        return str(getattr(verdict, "message", ""))


def _make_capture(d: Deployment) -> Any:
    if d.capture_factory is not None:
        return d.capture_factory(d.ctx, d.guest, d.run_id)
    try:
        return ops_for(d.guest).new_capture(d.ctx, d.run_id, d.dir)
    except ConfigError:
        raise  # a wrong [debugview] setting is the user's to fix, not to skip silently
    except PipelineError as exc:
        d.ctx.say(f"note: DbgPrint capture unavailable ({exc.message}); the DbgPrint check is skipped")
        return None


PLAN: list[Step] = [
    Step("state", "read the guest's state (Get-GuestState.ps1: one round trip)", step_read_state),
    Step("check", "check elevation, OS, Secure Boot, HVCI, TESTSIGNING, Debug Print Filter, test cert", step_check),
    Step(
        "prepare",
        "test machines only: bcdedit testsigning on, Debug Print Filter 0xF, trust the test cert (Set-GuestPrepared.ps1)",
        step_prepare,
        when=lambda d: bool(_missing_preparation(d.state)) and bool(d.target.get("test_machine")),
    ),
    Step(
        "reboot",
        "reboot when TESTSIGNING is pending; wait for a new boot time, then readiness",
        step_reboot,
        when=lambda d: d.reboot_needed,
        if_interrupted="guest rebooting or rebooted; the driver is not loaded",
    ),
    Step(
        "stop-old",
        "stop the loaded older build before replacing its image",
        step_stop_old,
        when=lambda d: _plan_push(d) and _old_build_in_the_way(d),
    ),
    Step(
        "push",
        "copy package files whose hash differs (temp name + rename, hashes checked)",
        step_push,
        when=_plan_push,
        if_interrupted="package partly copied (no file is half-written in place); the driver is not loaded from it yet",
    ),
    Step(
        "load",
        "one batch: start capture, stop old + sc create/config + sc start (Invoke-DriverLoad.ps1), device checks",
        step_load,
        if_interrupted="driver state unknown: the load may have completed",
    ),
    Step("smoke", "the declared device checks on one handle of the device (device_check in the project config)", step_smoke),
    Step("verify", "read the DbgPrint capture and check the `load` expectations", step_verify, when=lambda d: d.verify),
]
