"""Fakes of the deploy/reboot guest scripts: each returns what the real .ps1 returns, computed from
FakeWindows' state and rules (sc.exe and bcdedit outputs come from the machine in their real formats)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from driverpipe.transports.base import GuestScriptError

from . import pnp
from .guest import AUTOLOGON_KEY, DEBUG_FILTER_KEY, ConnectionDropped, FakeWindows, handler


def native_result(m: FakeWindows, rc_out: tuple[int, str]) -> dict[str, Any]:
    """What Invoke-Native returns: the exit code, the tool's bytes in the machine's OEM code page
    (labels in its display language), and the text as PowerShell decoded it."""
    rc, out = rc_out
    for english, local in m.native_labels.items():
        out = out.replace(english, local)
    raw = out.encode(f"cp{m.oem_code_page}", "replace")
    shown = raw.decode(m.powershell_decodes_as or f"cp{m.oem_code_page}", "replace")
    return {"rc": rc, "output": shown.rstrip("\r\n"), "outputB64": base64.b64encode(raw).decode(), "codePage": m.oem_code_page}


def _join(directory: str, name: str) -> str:
    return directory.rstrip("\\") + "\\" + name


def _state_number(text: str) -> int:
    # Get-StateNumber.ps1: the number before an (unlocalized) state word, whatever the label.
    m = re.search(r":\s*(\d+)\s+(STOPPED|START_PENDING|STOP_PENDING|RUNNING|CONTINUE_PENDING|PAUSE_PENDING|PAUSED)\b", text, re.IGNORECASE)
    return int(m.group(1)) if m else 0


@handler("Get-GuestState.ps1")
def get_guest_state(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    svc = p["ServiceName"]
    thumb = str(p.get("CertThumbprint") or "").upper()
    files: dict[str, str | None] = {}
    for name in p.get("FileNames") or []:
        data = m.files.get(_join(p.get("GuestDir", ""), name))
        files[name] = hashlib.sha256(data).hexdigest() if data is not None else None
    if m.secure_boot is None:
        secure_boot = "unsupported"
    elif not m.elevated:
        secure_boot = "unknown"  # Confirm-SecureBootUEFI needs elevation
    else:
        secure_boot = "on" if m.secure_boot else "off"
    return {
        "elevated": m.elevated,
        "os_caption": m.os_caption,
        "os_build": m.os_build,
        "secure_boot": secure_boot,
        "secure_boot_detail": "" if m.elevated else "Access was denied.",
        "hvci_running": m.hvci,
        "hvci_configured": m.hvci,
        "bcdedit": native_result(m, m.bcdedit_enum_current()) if m.elevated else {"rc": 1, "output": "Access is denied."},
        "start_options": m.system_start_options,
        "debug_filter": m.reg_get(DEBUG_FILTER_KEY, "DEFAULT"),
        "cert_root": bool(thumb) and thumb in m.cert_stores["Root"],
        "cert_trusted_publisher": bool(thumb) and thumb in m.cert_stores["TrustedPublisher"],
        "files": files,
        "debugview_present": (p["DebugViewPath"] in m.files) if p.get("DebugViewPath") else None,
        "sc_qc": native_result(m, m.sc("qc", svc)),
        "sc_query": native_result(m, m.sc("query", svc)),
        "boot_time": m.boot_time,
        "pending_reboot": False,
    }


@handler("Set-GuestPrepared.ps1")
def set_guest_prepared(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    if not m.elevated:
        raise GuestScriptError("Requested registry access is not allowed.")
    changed: list[str] = []
    reboot = False
    bcd = None
    if p.get("EnableTestSigning"):
        bcd = native_result(m, m.bcdedit_set("testsigning", "on"))
        if bcd["rc"] == 0:
            changed.append("testsigning")
            reboot = True
    if p.get("SetDebugFilter"):
        m.reg_set(DEBUG_FILTER_KEY, "DEFAULT", int(p.get("DebugFilterValue", 15)))
        changed.append("debug_filter")
    if p.get("CertBase64"):
        der = base64.b64decode(p["CertBase64"])
        thumb = hashlib.sha1(der).hexdigest().upper()
        for store in ("Root", "TrustedPublisher"):
            if thumb not in m.cert_stores[store]:
                m.cert_stores[store].add(thumb)
                changed.append(f"cert_{store}")
    return {"changed": changed, "reboot_required": reboot, "bcdedit": bcd, "thumbprint": p.get("CertThumbprint", "")}


@handler("Invoke-DriverLoad.ps1")
def invoke_driver_load(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    svc, image = p["ServiceName"], p["BinaryPath"]
    result: dict[str, Any] = {"ok": False, "error": "", "ops": [], "start_rc": None, "final_query": None, "actual_sha256": "", "stop_code": None, "pnp": None}
    expected = str(p.get("ExpectedSha256") or "").lower()
    if expected:
        data = m.files.get(image)
        if data is None:
            result["error"] = "image_missing"
        else:
            result["actual_sha256"] = hashlib.sha256(data).hexdigest()
            if result["actual_sha256"] != expected:
                result["error"] = "hash_mismatch"
    if result["error"]:
        return result
    if p.get("HardwareId"):  # a PnP package: pnputil and a device node, never sc create
        return pnp.load(m, p, result, native_result)
    ops: list[dict[str, Any]] = result["ops"]
    query = native_result(m, m.sc("query", svc))
    ops.append({"op": "query", **query})
    exists = query["rc"] != 1060
    state = _state_number(query["output"])
    if exists and state not in (0, 1):
        stop = native_result(m, m.sc("stop", svc))
        ops.append({"op": "stop", **stop})
        if stop["rc"] not in (0, 1061, 1062):  # a refusal (1052): the script does not wait for STOPPED
            result["error"], result["stop_code"] = "stop_refused", stop["rc"]
            return result
        q = native_result(m, m.sc("query", svc))
        ops.append({"op": "wait_stopped", **q})
        if q["rc"] == 1060:
            exists = False
        elif _state_number(q["output"]) != 1:
            result["error"] = "stop_timeout"
            return result
    verb = ["config"] if exists else ["create"]
    setup = native_result(m, m.sc(*verb, svc, "type=", "kernel", "start=", "demand", "binPath=", image))
    ops.append({"op": verb[0], **setup})
    if setup["rc"] != 0:
        return result
    try:
        start = native_result(m, m.sc("start", svc))
    except ConnectionDropped:
        raise
    ops.append({"op": "start", **start})
    result["start_rc"] = start["rc"]
    result["final_query"] = native_result(m, m.sc("query", svc))
    result["ok"] = start["rc"] == 0
    return result


@handler("Invoke-DriverUnload.ps1")
def invoke_driver_unload(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    svc = p["ServiceName"]
    removed, record = pnp.unload_devices(m, svc) if p.get("HardwareId") else (None, None)
    stop = native_result(m, m.sc("stop", svc))
    q = native_result(m, m.sc("query", svc)) if stop["rc"] == 0 else stop
    open_error = m.device_io(p["DevicePath"])["open_error"] if p["DevicePath"] else None
    if p.get("Delete") and removed is not None and record is not None:
        pnp.delete_packages(m, svc, removed, record, native_result)
    dele = native_result(m, m.sc("delete", svc)) if p.get("Delete") else None
    return {"stop": stop, "final_query": q, "device_open_error": open_error, "delete": dele, "pnp": removed}


@handler("Test-DeviceChecks.ps1")
def test_device_checks(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    """The script's answer shape; each check sees the fake device's error for its call (a write: the read's)."""
    checks = json.loads(p["ChecksJson"])
    io = m.device_io(p["DevicePath"])
    if io["open_error"]:
        return {"device": p["DevicePath"], "open_error": io["open_error"], "steps": [], "close_error": 0}
    steps = []
    for check in checks:
        error = io["ioctl_error"] if check["op"] == "ioctl" else io["read_error"]
        steps.append({"name": check["name"], "error": error, "returned": 0, "output": "", **m.device_answers.get(check["name"], {})})
    return {"device": p["DevicePath"], "open_error": 0, "steps": steps, "close_error": io["close_error"]}


@handler("Set-FaultStep.ps1")
def set_fault_step(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    if not m.elevated:
        raise GuestScriptError("Requested registry access is not allowed.")
    key = m.params_key(p["ServiceName"])
    step = int(p["Step"])
    if step > 0:
        m.reg_set(key, "FailAtStep", step)
    else:
        m.reg_delete(key, "FailAtStep")
    return {"service": p["ServiceName"], "step": step}


@handler("Restart-Guest.ps1")
def restart_guest(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    if not m.elevated:
        return {"first": {"rc": 5, "output": "Access is denied.(5)"}, "abort": None, "second": None}
    rc = m.schedule_shutdown()
    first = {"rc": rc, "output": "" if rc == 0 else "A system shutdown has already been scheduled.(1190)"}
    abort = second = None
    if rc == 1190:
        abort = {"rc": m.abort_shutdown(), "output": ""}
        second = {"rc": m.schedule_shutdown(), "output": ""}
    return {"first": first, "abort": abort, "second": second}


@handler("Get-DriverStore.ps1")
def get_driver_store(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    return {"driver_packages": native_result(m, m.pnputil_enum_drivers())}


@handler("Get-BootTime.ps1")
def get_boot_time(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    return {"boot_time": m.boot_time}


@handler("Test-GuestReady.ps1")
def test_guest_ready(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    ready = m.ready_check()
    return {
        "ready": ready,
        "autologon_checked": m.reg_key(AUTOLOGON_KEY) is not None,
        "uptime_seconds": 30,
        "boot_time": m.boot_time,
    }


@handler("Set-GuestLease.ps1")
def set_guest_lease(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    from .lease import SIDECAR, decide, sidecar_text

    side = p["Path"] + SIDECAR
    new, result = decide(m.files.get(p["Path"], b"").decode("utf-8", "replace"), p, sidecar=m.files.get(side, b"").decode("utf-8", "replace"))
    if new == "":
        m.files.pop(p["Path"], None)
        m.files.pop(side, None)
    elif new is not None:
        m.files[side] = sidecar_text(new).encode("utf-8")
        m.files[p["Path"]] = new.encode("utf-8")
    return result
