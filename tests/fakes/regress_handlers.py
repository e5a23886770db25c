"""Fake handlers for the regression suite's guest scripts (bugcheck evidence, verifier)."""

from __future__ import annotations

from typing import Any

from .deploy_handlers import native_result
from .guest import FakeWindows, handler


@handler("Get-BugcheckEvidence.ps1")
def get_bugcheck_evidence(machine: FakeWindows, params: dict[str, Any]) -> dict[str, Any]:
    since = int(params.get("SinceFileTime") or 0)
    # The fake's events carry no time; a 1001 record exists only after a crash, and a crash
    # always moves boot_time past `since`, which is how Windows' own records relate too.
    events = [{"time": machine.boot_time, "message": e["message"]} for e in machine.events if e.get("id") == 1001 and machine.boot_time > since]
    dumps = [path for path in machine.files if path.lower().endswith(".dmp") and machine.boot_time > since]
    return {"boot_time": machine.boot_time, "events": events, "new_dumps": dumps}


@handler("Set-DriverVerifier.ps1")
def set_driver_verifier(machine: FakeWindows, params: dict[str, Any]) -> dict[str, Any]:
    reboot = "The system reboot is required for the changes to take effect."
    if params.get("Reset"):
        machine.registry.pop("verifier", None)
        settings = native_result(machine, (0, "Special pool: Disabled\r\n\r\nVerified drivers:\r\n\r\nNone\r\n"))
        return {"rc": 2, "output": reboot, "settings": settings, "reboot_required": True}
    driver = str(params["Driver"])
    machine.reg_set(r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Memory Management", "VerifyDrivers", driver)
    # verifier /querysettings' layout (tests/corpus/verifier): one option per line, then the driver list.
    settings = f"Special pool: Enabled\r\nPool tracking: Enabled\r\nForce IRQL checking: Enabled\r\n\r\nVerified drivers:\r\n\r\n{driver}\r\n"
    return {"rc": 2, "output": reboot, "settings": native_result(machine, (0, settings)), "reboot_required": True}
