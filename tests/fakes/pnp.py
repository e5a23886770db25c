"""Windows' PnP rules for the fake guest: the driver store, root-enumerated device nodes, pnputil.

What the real machine does and the fake keeps: `pnputil /add-driver` stages a package under
a new `oemNN.inf` name (an identical package already staged keeps its name); a root-enumerated
device node exists once SetupAPI creates it, with no driver and no service; installing the
driver on it (UpdateDriverForPlugAndPlayDevices, or pnputil's /install on a matching device)
creates the service from the INF's AddService and starts it (DriverEntry runs), after which
`sc start` answers 1056; removing the node unloads the driver (DriverUnload) and leaves the
service; `pnputil /delete-driver oemNN.inf /uninstall` removes the package from the store.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from driverpipe.image.inf import decode, driver_binary, root_hardware_id, service_names

from .guest import FakeService, FakeWindows

INF_DIR = "C:\\Windows\\INF\\"
DRIVERS = "\\SystemRoot\\System32\\drivers\\"
RECORD_DIR = "C:\\ProgramData\\driverpipe\\"
ERROR_NO_SUCH_DEVINST = 0xE000020B - (1 << 32)  # as the C# int the script returns


def record_path(service: str) -> str:
    return f"{RECORD_DIR}pnp-{service}.json"


def _inf_facts(m: FakeWindows, published: str) -> tuple[str, str, str]:
    text = decode(m.files[INF_DIR + published]).text
    return root_hardware_id(text) or "", (service_names(text) or [""])[0], driver_binary(text) or ""


def published_infs(m: FakeWindows) -> set[str]:
    return {k.rsplit("\\", 1)[1].lower() for k in m.files if k.lower().startswith(INF_DIR.lower()) and re.fullmatch(r"oem\d+\.inf", k.rsplit("\\", 1)[1], re.I)}


def _stage(m: FakeWindows, inf_path: str) -> tuple[str | None, str]:
    """The package into the store: (published name, error text)."""
    data = m.files.get(inf_path)
    if data is None:
        return None, "The system cannot find the file specified."
    if not m.driver_signed:
        return None, "The third-party INF does not contain digital signature information."
    for name in sorted(published_infs(m)):
        if m.files[INF_DIR + name] == data:
            return name, ""  # an identical package keeps its published name
    number = max([int(re.sub(r"\D", "", n)) for n in published_infs(m)] or [m.first_oem - 1]) + 1
    name = f"oem{number}.inf"
    m.files[INF_DIR + name] = data
    folder = inf_path.rsplit("\\", 1)[0]
    m.store_files[name] = {f: m.files[folder + "\\" + f] for f in [driver_binary(decode(data).text) or ""] if folder + "\\" + f in m.files}
    m.driver_store.append((name, inf_path.rsplit("\\", 1)[1], "WazabiEDR Test Signing"))
    return name, ""


def _install(m: FakeWindows, published: str, instance: str) -> None:
    """The staged driver on one device node: the service appears (from AddService) and the driver starts."""
    _, service, binary = _inf_facts(m, published)
    for name, data in m.store_files.get(published, {}).items():
        m.files[DRIVERS + name] = data
    svc = m.services.get(service)
    if not isinstance(svc, FakeService):
        svc = m.services[service] = FakeService(name=service, binpath=DRIVERS + binary)
    if svc.state == 4:  # a forced update restarts the device on the new build
        m.sc("stop", service)
    m.pnp_devices[instance]["driver"] = published
    m._start(svc)


def add_driver(m: FakeWindows, inf_path: str, install: bool) -> tuple[int, str]:
    """`pnputil /add-driver <inf> [/install]` in its Windows 10/11 layout."""
    if not m.elevated:
        return 5, "Microsoft PnP Utility\r\n\r\nAccess is denied.\r\n"
    name, error = _stage(m, inf_path)
    head = f"Microsoft PnP Utility\r\n\r\nAdding driver package:  {inf_path.rsplit(chr(92), 1)[1]}\r\n"
    if name is None:
        return 1, head + f"Failed to add driver package: {error}\r\n\r\nTotal driver packages:  1\r\nAdded driver packages:  0\r\n"
    if install:
        hwid = _inf_facts(m, name)[0]
        for instance in find(m, hwid):
            _install(m, name, instance)
    return 0, head + f"Driver package added successfully.\r\nPublished Name:         {name}\r\n\r\nTotal driver packages:  1\r\nAdded driver packages:  1\r\n"


def find(m: FakeWindows, hwid: str) -> list[str]:
    return [i for i, d in m.pnp_devices.items() if d["hwid"].lower() == hwid.lower()]


def create(m: FakeWindows, hwid: str) -> tuple[int, str]:
    if not m.elevated:
        return 5, ""
    taken = {i.upper() for i in m.pnp_devices}
    instance = next(f"ROOT\\SYSTEM\\{n:04d}" for n in range(10_000) if f"ROOT\\SYSTEM\\{n:04d}" not in taken)  # the lowest free, as SetupAPI's DICD_GENERATE_ID
    m.pnp_devices[instance] = {"hwid": hwid, "driver": None}
    return 0, instance


def update(m: FakeWindows, inf_path: str, hwid: str) -> int:
    devices = find(m, hwid)
    if not devices:
        return ERROR_NO_SUCH_DEVINST
    name, _ = _stage(m, inf_path)
    if name is None:
        return 0x800B0100 - (1 << 32)  # TRUST_E_NOSIGNATURE
    for instance in devices:
        _install(m, name, instance)
    return 0


def remove(m: FakeWindows, instance: str) -> int:
    device = m.pnp_devices.pop(instance, None)
    if device is None:
        return ERROR_NO_SUCH_DEVINST
    if device["driver"]:
        service = _inf_facts(m, device["driver"])[1]
        svc = m.services.get(service)
        if isinstance(svc, FakeService) and svc.state == 4 and not any(d["driver"] == device["driver"] for d in m.pnp_devices.values()):
            m.sc("stop", service)  # the last device of the driver gone: DriverUnload
    return 0


def delete_driver(m: FakeWindows, published: str) -> tuple[int, str]:
    head = "Microsoft PnP Utility\r\n\r\n"
    if INF_DIR + published not in m.files:
        return 2, head + "Failed to delete driver package: The system cannot find the file specified.\r\n"
    for device in m.pnp_devices.values():
        if device["driver"] == published:  # /uninstall: off every device first
            device["driver"] = None
            service = _inf_facts(m, published)[1]
            svc = m.services.get(service)
            if isinstance(svc, FakeService) and svc.state == 4:
                m.sc("stop", service)
    del m.files[INF_DIR + published]
    m.store_files.pop(published, None)
    m.driver_store[:] = [e for e in m.driver_store if e[0] != published]
    return 0, head + "Driver package uninstalled.\r\nDriver package deleted successfully.\r\n"


def read_record(m: FakeWindows, service: str) -> dict[str, Any]:
    data = m.files.get(record_path(service))
    try:
        loaded = json.loads(data) if data else {}
    except ValueError:
        return {"published": [], "devices": [], "unreadable": "Invalid JSON primitive."}
    return {"published": [n for n in loaded.get("published") or [] if re.fullmatch(r"oem\d+\.inf", n)], "devices": list(loaded.get("devices") or [])}


def write_record(m: FakeWindows, service: str, record: dict[str, Any]) -> None:
    if "unreadable" in record:
        return  # the script never overwrites a record it could not read
    if not record["published"] and not record["devices"]:
        m.files.pop(record_path(service), None)
    else:
        m.files[record_path(service)] = json.dumps(record).encode()


def image_sha256(m: FakeWindows, service: str) -> str:
    svc = m.services.get(service)
    data = m.files.get(svc.binpath) if isinstance(svc, FakeService) else None
    return hashlib.sha256(data).hexdigest() if data is not None else ""


def load(m: FakeWindows, p: dict[str, Any], result: dict[str, Any], native: Any) -> dict[str, Any]:
    """Invoke-DriverLoad.ps1's PnP route, as the script runs it."""
    svc, inf_path, hwid = p["ServiceName"], p["InfPath"], p["HardwareId"]
    ops: list[dict[str, Any]] = result["ops"]
    record = read_record(m, svc)
    before = published_infs(m)
    ops.append({"op": "pnputil", **native(m, add_driver(m, inf_path, install=True))})
    pnp: dict[str, Any] = {
        "hardware_id": hwid,
        "devices": find(m, hwid),
        "created": "",
        "create_error": 0,
        "update_error": 0,
        "reboot_required": False,
        "record_error": record.get("unreadable", ""),
    }
    if not pnp["devices"]:
        pnp["create_error"], instance = create(m, hwid)
        if not pnp["create_error"]:
            pnp["created"], pnp["devices"] = instance, [instance]
    if not pnp["create_error"]:
        pnp["update_error"] = update(m, inf_path, hwid)
    pnp["published_new"] = sorted(published_infs(m) - before)
    record["published"] = list(dict.fromkeys(record["published"] + pnp["published_new"]))
    if pnp["created"]:
        record["devices"] = list(dict.fromkeys([*record["devices"], pnp["created"]]))
    if pnp["published_new"] or pnp["created"]:
        write_record(m, svc, record)
    result["pnp"] = pnp
    if not pnp["create_error"] and not pnp["update_error"]:
        start = native(m, m.sc("start", svc))
        ops.append({"op": "start", **start})
        result["start_rc"] = start["rc"]
        result["final_query"] = native(m, m.sc("query", svc))
        result["ok"] = start["rc"] in (0, 1056)
    return result


def unload_devices(m: FakeWindows, svc: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Invoke-DriverUnload.ps1's PnP part before its sc stop: the recorded device nodes removed."""
    record = read_record(m, svc)
    pnp: dict[str, Any] = {"removed": [], "deleted": [], "record_error": record.get("unreadable", "")}
    left = []
    for instance in record["devices"]:
        error = remove(m, instance)
        pnp["removed"].append({"id": instance, "error": error})
        if error not in (0, ERROR_NO_SUCH_DEVINST):
            left.append(instance)
    record["devices"] = left
    write_record(m, svc, record)
    return pnp, record


def delete_packages(m: FakeWindows, svc: str, pnp: dict[str, Any], record: dict[str, list[str]], native: Any) -> None:
    kept = []
    for name in record["published"]:
        done = native(m, delete_driver(m, name))
        pnp["deleted"].append({**done, "inf": name})
        if done["rc"] != 0:
            kept.append(name)
    record["published"] = kept
    write_record(m, svc, record)
