"""Device checks: the project's `[[device_check]]` table, run after a load, and the one evaluator of their result.

The same table goes to the Wine agent (driverpipe/agent: `checks`) and to
scripts/guest/Test-DeviceChecks.ps1 on Windows (`-ChecksJson`); both answer

    {"device": "...", "open_error": N, "steps": [{"name": "...", "error": N, "returned": N, "output": "hex"}], "close_error": N}

(no steps when the open failed), and `evaluate` turns that into one verdict line
per check. `device_path = ""` declares a driver without a device: nothing runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..core.schema import CTL_ACCESS, CTL_METHODS
from ..parse.winparse import win32_name
from .state import ERROR_FILE_NOT_FOUND, DeployStepFailed

CALLS = {"ioctl": "DeviceIoControl", "read": "ReadFile", "write": "WriteFile"}
# What device I/O answers most (sc.exe's names come from parse.winparse).
IO_ERRORS = {
    0: "success",
    1: "ERROR_INVALID_FUNCTION",
    6: "ERROR_INVALID_HANDLE",
    122: "ERROR_INSUFFICIENT_BUFFER",
    234: "ERROR_MORE_DATA",
    998: "ERROR_NOACCESS",
    1784: "ERROR_INVALID_USER_BUFFER",
}


def error_name(code: int) -> str:
    return IO_ERRORS.get(code) or win32_name(code)


@dataclass(frozen=True)
class DeviceCheck:
    name: str
    op: str  # ioctl | read | write
    code: int  # the IOCTL code (0 for read/write)
    input: str  # hex, lower case, no spaces
    output_length: int
    expect_error: int
    expect_output: str | None  # hex, lower case
    expect_returned: int | None


def ctl_code(parts: Any) -> int:
    """CTL_CODE(DeviceType, Function, Method, Access) as winioctl.h computes it."""
    method = CTL_METHODS.index(str(parts["method"]))
    access = CTL_ACCESS.index(str(parts["access"]))
    return (int(parts["device_type"]) << 16) | (access << 14) | (int(parts["function"]) << 2) | method


def _hex(text: str | None) -> str | None:
    return None if text is None else text.replace(" ", "").lower()


def from_config(project: Any) -> list[DeviceCheck]:
    """The validated `device_check` entries (core.schema checked them), in order."""
    checks = []
    for entry in project.get("device_check") or []:
        code = 0
        if entry["op"] == "ioctl":
            code = int(entry["code"]) if entry["code"] is not None else ctl_code(entry["ctl_code"])
        checks.append(
            DeviceCheck(
                name=str(entry["name"]),
                op=str(entry["op"]),
                code=code,
                input=_hex(entry["input"]) or "",
                output_length=int(entry["output_length"]),
                expect_error=int(entry["expect_error"]),
                expect_output=_hex(entry["expect_output"]),
                expect_returned=entry["expect_returned"],
            )
        )
    return checks


def device_path(project: Any) -> str:
    """'' when the driver declares no device."""
    return str(project.device_path or "")


def agent_fields(device: str, checks: list[DeviceCheck]) -> list[str]:
    """The Wine agent's request: `checks <device> <op,code,output_length,input_hex,name>...` (names are plain: no comma)."""
    return ["checks", device, *(f"{c.op[0]},{c.code},{c.output_length},{c.input},{c.name}" for c in checks)]


def checks_json(checks: list[DeviceCheck]) -> str:
    """The table as Test-DeviceChecks.ps1's -ChecksJson (what to run; expectations stay here)."""
    return json.dumps([{"name": c.name, "op": c.op, "code": c.code, "input": c.input, "output_length": c.output_length} for c in checks])


@dataclass
class DeviceCheckResult:
    """What ran, and the verdict. `ok`, `open_error` and `describe` serve the deploy and unload steps."""

    device: str
    open_error: int
    steps: list[dict[str, Any]]
    close_error: int
    checks: list[DeviceCheck] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # one per check, in order
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def describe(self, device: str) -> str:
        if self.open_error != 0:
            return f"CreateFileW({device}) failed with Win32 error {self.open_error}" + (
                " (ERROR_FILE_NOT_FOUND: no symbolic link, the driver did not create its device)" if self.open_error == ERROR_FILE_NOT_FOUND else ""
            )
        calls = [f"{CALLS[c.op]} -> {s.get('error', -1)}" for c, s in zip(self.checks, self.steps, strict=False)]
        summary = ", ".join(["CreateFileW ok", *calls, f"CloseHandle -> {self.close_error}"])
        return summary if self.ok else f"{summary}; " + "; ".join(self.failures)


def parse_result(data: Any, checks: list[DeviceCheck], *, source: str) -> DeviceCheckResult:
    """The agent's or the guest script's answer -> a result (names from the table); a malformed one is a failed step."""
    try:
        steps = list(data.get("steps") or [])
        result = DeviceCheckResult(
            device=str(data.get("device", "")),
            open_error=int(data["open_error"]),
            steps=[{"error": int(s["error"]), "returned": int(s.get("returned", 0)), "output": str(s.get("output", "")).lower()} for s in steps],
            close_error=int(data.get("close_error", 0) or 0),
            checks=list(checks),
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        raise DeployStepFailed(f"{source} gave no usable device-check result: {str(data)[:200]}", "see the target's logs (`invoke logs`)") from None
    if result.open_error == 0 and len(result.steps) != len(checks):
        raise DeployStepFailed(f"{source} ran {len(result.steps)} device checks of {len(checks)}", "see the target's logs (`invoke logs`)")
    for check, step in zip(checks, result.steps, strict=False):
        step["name"] = check.name
    return evaluate(result)


def evaluate(result: DeviceCheckResult) -> DeviceCheckResult:
    """One verdict line per check (and the open/close): what was expected, what came back."""
    result.lines, result.failures = [], []
    if result.open_error != 0:
        result.failures.append(f"CreateFileW({result.device}) failed with Win32 error {result.open_error}")
        result.lines.extend(f"device check {c.name}: not run (the device did not open)" for c in result.checks)
        return result
    for check, step in zip(result.checks, result.steps, strict=False):
        wrong = []
        if step["error"] != check.expect_error:
            wrong.append(f"Win32 error {step['error']} ({error_name(step['error'])}), expected {check.expect_error} ({error_name(check.expect_error)})")
        if check.expect_returned is not None and step["returned"] != check.expect_returned:
            wrong.append(f"{step['returned']} bytes returned, expected {check.expect_returned}")
        if check.expect_output is not None and step["output"] != check.expect_output:
            wrong.append(f"output {step['output'] or '(none)'}, expected {check.expect_output or '(none)'}")
        call = f"{CALLS[check.op]}" + (f"(0x{check.code:08X})" if check.op == "ioctl" else "")
        if wrong:
            result.failures.append(f"{check.name}: " + ", ".join(wrong))
            result.lines.append(f"device check {check.name}: FAIL: {call}: " + ", ".join(wrong))
        else:
            result.lines.append(f"device check {check.name}: ok: {call} -> {step['error']}, {step['returned']} bytes")
    if result.close_error != 0:
        result.failures.append(f"CloseHandle failed with Win32 error {result.close_error}")
    return result
