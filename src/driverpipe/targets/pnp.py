"""A PnP driver package on a Windows guest: pnputil and a root-enumerated device node.

A package whose INF has a [Manufacturer] section with a root-enumerated hardware
id (`Root\\X`, image/inf.py) is not a service for sc.exe: Windows creates its
service when the driver is installed on a device. Invoke-DriverLoad.ps1 then
stages it with `pnputil /add-driver <inf> /install`, creates the device node
once through SetupAPI (an existing one with that id is reused) and installs the
driver on it; Invoke-DriverUnload.ps1 removes the device node and, on delete,
`pnputil /delete-driver oemNN.inf /uninstall`, only for what the guest-side
record says this pipeline added. This module picks the route and reads the
PnP parts of both answers (pnputil's text through parse.tools).

Exercised only against the fake guest (tests/fakes), never on real Windows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.context import RunContext
from ..image.inf import decode, root_hardware_id
from ..parse.text import native_text
from ..parse.tools import parse_pnputil_add
from .state import PackageLike

ERROR_SERVICE_ALREADY_RUNNING = 1056  # sc start after the PnP manager started the driver itself
ERROR_NO_SUCH_DEVINST = 0xE000020B


def _hardware_id(inf: Path) -> str | None:
    try:
        return root_hardware_id(decode(inf.read_bytes(), str(inf)).text)
    except (OSError, ValueError):
        return None  # the build's INF checks name an unreadable INF; here it is only not PnP


def package_route(pkg: PackageLike) -> tuple[str, str] | None:
    """(the package's INF file name, its root hardware id) for a PnP package; None: a legacy one (sc create)."""
    for f in pkg.files:
        if f.suffix.lower() == ".inf":
            hwid = _hardware_id(f)
            return (f.name, hwid) if hwid else None
    return None


def project_hardware_id(ctx: RunContext) -> str | None:
    """The project's INF template's root hardware id (unload has no package at hand)."""
    inx = str(ctx.config.project.inx or "")
    return _hardware_id(ctx.config.root / inx) if inx else None


def _win32(code: int) -> str:
    return f"0x{code & 0xFFFFFFFF:08X}" if code < 0 or code > 0xFFFF else str(code)


def load_failure(load: dict[str, Any], inf: str) -> str | None:
    """Why the PnP install in Invoke-DriverLoad's answer failed (None: it did not)."""
    pnp = load.get("pnp")
    if not isinstance(pnp, dict):
        return None
    hwid = pnp.get("hardware_id")
    added = next((op for op in load.get("ops") or [] if isinstance(op, dict) and op.get("op") == "pnputil"), None)
    staged = parse_pnputil_add(native_text(added)) if added is not None else None
    if staged is not None and not staged.ok:
        return f"pnputil /add-driver {inf} /install failed (exit {added.get('rc') if added else '?'}): {staged.message or 'no package was added'}"
    create_error = int(pnp.get("create_error") or 0)
    if create_error:
        return f"creating the root-enumerated device {hwid} failed with Win32 error {_win32(create_error)} (SetupAPI)"
    update_error = int(pnp.get("update_error") or 0)
    if update_error:
        return f"installing {inf} on the device {hwid} failed with Win32 error {_win32(update_error)} (UpdateDriverForPlugAndPlayDevices)"
    if pnp.get("record_error"):
        return f"the guest's record of what this pipeline added is unreadable ({str(pnp['record_error'])[:200]}); it was left as it is"
    if pnp.get("reboot_required"):
        return f"Windows needs a reboot to finish installing {inf} on {hwid} (the running build could not be replaced)"
    return None


def start_code(load: dict[str, Any], code: int) -> int:
    """sc start's code as the load sees it: on the PnP route, 1056 means the PnP manager started the driver."""
    return 0 if isinstance(load.get("pnp"), dict) and code == ERROR_SERVICE_ALREADY_RUNNING else code


def unload_failures(raw: dict[str, Any]) -> list[str]:
    """Device nodes not removed and packages not deleted, from Invoke-DriverUnload's answer."""
    pnp = raw.get("pnp")
    if not isinstance(pnp, dict):
        return []
    problems = []
    if pnp.get("record_error"):
        problems.append(f"the guest's record of what this pipeline added is unreadable ({str(pnp['record_error'])[:200]}): nothing was removed by it")
    for removed in pnp.get("removed") or []:
        error = int(removed.get("error") or 0)
        if error not in (0, ERROR_NO_SUCH_DEVINST, ERROR_NO_SUCH_DEVINST - (1 << 32)):
            problems.append(f"removing the device {removed.get('id')} failed with Win32 error {_win32(error)}")
    for deleted in pnp.get("deleted") or []:
        if int(deleted.get("rc") or 0) != 0:
            problems.append(f"pnputil /delete-driver {deleted.get('inf')} /uninstall failed (exit {deleted.get('rc')}): {native_text(deleted).strip()[:200]}")
    return problems
