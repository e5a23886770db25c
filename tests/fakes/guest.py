"""A fake Windows guest that keeps the Windows rules the pipeline depends on.

`FakeWindows` is machine state: boot time, BCD store (pending vs active), Secure
Boot, HVCI, registry, certificate stores, files, services, devices and the
kernel debug output. Its sc.exe methods print the real sc.exe formats (see
the shared notes (02) and corpus/sc) and return the Win32 code as the exit code.

`FakeGuest` implements driverpipe.transports.base.Guest on top of it. run_script
dispatches by script FILE NAME to handlers registered with @handler("X.ps1");
before dispatch it checks the bound parameters against the real shipped script
with driverpipe.parse.psgrammar.check_bound_params, so a binding bug fails the test.

What is modelled is what the notes state; where Windows behaviour is a guess it
says "(unsure)". Nothing here ran against a real Windows machine.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driverpipe.core.errors import EnvironmentProblem, PipelineError, StepFailed
from driverpipe.core.scripts import script_path
from driverpipe.transports.base import GuestScriptError, PushResult

Handler = Callable[["FakeWindows", dict[str, Any]], Any]

# One registry per process even if this module is imported as both `fakes.guest`
# and `tests.fakes.guest` (two module objects would otherwise split the handlers).
HANDLERS: dict[str, Handler] = sys.__dict__.setdefault("_driverpipe_fake_guest_handlers", {})


def handler(script: str) -> Callable[[Handler], Handler]:
    """Register `fn(machine, params) -> result` as the fake of the shipped script `script`."""

    def register(fn: Handler) -> Handler:
        HANDLERS[script.lower()] = fn
        return fn

    return register


# --------------------------------------------------------------------------------------------
# Machine state
# --------------------------------------------------------------------------------------------

FILETIME_2026 = 134_118_000_000_000_000  # some FileTime in 2026 (100 ns ticks since 1601)
TEN_MINUTES = 10 * 60 * 10_000_000

DEBUG_FILTER_KEY = r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Debug Print Filter"
AUTOLOGON_KEY = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon\AutoLogonChecked"
SERVICES_KEY = r"HKLM\SYSTEM\CurrentControlSet\Services"

WIN32_MESSAGES = {
    2: "The system cannot find the file specified.",
    5: "Access is denied.",
    31: "A device attached to the system is not functioning.",
    577: "Windows cannot verify the digital signature for this file. A recent hardware or software change "
    "might have installed a file that is signed incorrectly or damaged, or that might be malicious software "
    "from an unknown source.",
    1052: "The requested control is not valid for this service.",
    1056: "An instance of the service is already running.",
    1058: "The service cannot be started, either because it is disabled or because it has no enabled devices associated with it.",
    1060: "The specified service does not exist as an installed service.",
    1062: "The service has not been started.",
    1072: "The specified service has been marked for deletion.",
    1073: "The specified service already exists.",
    1275: "This driver has been blocked from loading",
}

STATE_NAMES = {1: "STOPPED", 2: "START_PENDING", 3: "STOP_PENDING", 4: "RUNNING"}
START_NAMES = {0: "BOOT_START", 1: "SYSTEM_START", 2: "AUTO_START", 3: "DEMAND_START", 4: "DISABLED"}
START_WORDS = {"boot": 0, "system": 1, "auto": 2, "demand": 3, "disabled": 4}


class CaseInsensitiveDict(MutableMapping[str, Any]):
    """Windows paths/names: case-insensitive keys, '/' and '\\' the same, original spelling kept."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, Any]] = {}

    @staticmethod
    def _norm(key: str) -> str:
        return key.replace("/", "\\").lower()

    def __getitem__(self, key: str) -> Any:
        return self._data[self._norm(key)][1]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[self._norm(key)] = (key, value)

    def __delitem__(self, key: str) -> None:
        del self._data[self._norm(key)]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._data.values())

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"CaseInsensitiveDict({dict(self.items())!r})"


@dataclass
class FakeService:
    name: str
    type: int = 1  # 1 KERNEL_DRIVER
    start: int = 3  # 3 DEMAND_START
    binpath: str = ""
    state: int = 1  # 1 STOPPED, 4 RUNNING
    win32_exit: int = 1077  # "never started since boot"
    service_exit: int = 0
    marked_for_delete: bool = False
    loaded_image_sha256: str = ""  # hash of the image that is running (for "older build" checks)
    no_unload: bool = False  # a driver without DriverUnload: sc stop is refused with 1052
    stop_pending: bool = False  # already stopping: sc stop answers 1061, the service reaches STOPPED by itself


class ConnectionDropped(Exception):
    """Raised inside a handler when the machine goes away mid-call (bugcheck, shutdown)."""


@dataclass
class FakeWindows:
    """A Windows machine's state and rules. Knobs are plain attributes; set them in tests."""

    os_caption: str = "Microsoft Windows 11 Pro"
    os_build: int = 22631
    elevated: bool = True
    secure_boot: bool | None = False  # None: BIOS machine (Confirm-SecureBootUEFI unsupported)
    hvci: bool = False
    driver_signed: bool = True
    service_name: str = "WazabiEDR"
    device_path: str = "\\\\.\\WazabiEDR"
    log_prefix: str = "[WazabiEDR]"
    fault_steps: list[str] = field(default_factory=lambda: ["IoCreateDevice", "IoCreateSymbolicLink"])
    # knobs
    fail_reboot: bool = False  # after shutdown the machine never answers again
    crash_on_load: bool = False  # sc start bugchecks (0x9F): reboot + Event 1001 + minidump
    leaky_unwind: bool = False  # a failed load leaks the device name: the next load fails in IoCreateDevice
    lose_connection_after: int | None = None  # N more round trips, then unreachable for good (counts down)
    drop_error: str = "unreachable"  # how a lost connection surfaces: "unreachable" (EnvironmentProblem) or "closed" (StepFailed)
    shutdown_lag: int = 1  # round trips still answered (old boot time) after shutdown.exe returns
    down_attempts: int = 2  # connection attempts refused while rebooting
    fail_push: bool = False  # the connection drops in the middle of the next push
    ready_lag: int = 1  # readiness checks failing after the new boot
    ioctl_error: int = 1  # Win32 error of DeviceIoControl on the device (1 = ERROR_INVALID_FUNCTION)
    read_error: int = 1  # Win32 error of ReadFile on the device
    device_answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # check name -> {error, returned, output}: a driver that answers that check
    oem_code_page: int = 437  # what native tools' redirected output is encoded in
    native_labels: dict[str, str] = field(default_factory=dict)  # English label -> this display language's (sc.exe, bcdedit)
    powershell_decodes_as: str | None = None  # a codec other than the OEM one: PowerShell's own `output` is mojibake
    driver_store: list[tuple[str, str, str]] = field(default_factory=list)  # (oemNN.inf, original INF, signer) as pnputil lists them
    first_oem: int = 5  # the first oemNN.inf number pnputil publishes (other vendors' packages hold the lower ones)
    # state
    boot_time: int = FILETIME_2026
    boot_count: int = 0
    down: bool = False
    bcd: dict[str, str] = field(default_factory=lambda: {"testsigning": "No"})  # the store (bcdedit)
    bcd_active: dict[str, str] = field(default_factory=lambda: {"testsigning": "No"})  # what the kernel booted with
    registry: dict[str, CaseInsensitiveDict] = field(default_factory=dict)  # key path (lower) -> values
    volatile_keys: set[str] = field(default_factory=set)
    cert_stores: dict[str, set[str]] = field(default_factory=lambda: {"Root": set(), "TrustedPublisher": set()})
    files: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)
    services: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)
    devices: set[str] = field(default_factory=set)
    pnp_devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # device instance id -> {hwid, driver: oemNN.inf | None} (fakes/pnp.py)
    store_files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # oemNN.inf -> the package's other files in the driver store
    debug_output: list[str] = field(default_factory=list)
    debug_listeners: list[Callable[[str], None]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # System log records we model (1001 bugcheck)
    leaked_device: bool = False
    reboot_scheduled: bool = False
    sc_log: list[str] = field(default_factory=list)  # every sc.exe command line run, for assertions
    _shutdown_countdown: int | None = None
    _down_left: int = 0
    _not_ready_left: int = 0

    def __post_init__(self) -> None:
        self._set_volatile(AUTOLOGON_KEY)

    # ---- convenience ----------------------------------------------------------------------
    @classmethod
    def prepared(cls, cert_thumbprint: str = "", **kw: Any) -> FakeWindows:
        """A test machine already prepared: TESTSIGNING active, Debug Print Filter 0xF, cert trusted."""
        m = cls(**kw)
        m.bcd["testsigning"] = "Yes"
        m.bcd_active["testsigning"] = "Yes"
        m.reg_set(DEBUG_FILTER_KEY, "DEFAULT", 0xF)
        if cert_thumbprint:
            for store in m.cert_stores.values():
                store.add(cert_thumbprint.upper())
        return m

    def reg_key(self, path: str, create: bool = False) -> CaseInsensitiveDict | None:
        key = path.lower()
        if key not in self.registry and create:
            self.registry[key] = CaseInsensitiveDict()
        return self.registry.get(key)

    def reg_get(self, path: str, name: str) -> Any:
        values = self.reg_key(path)
        return None if values is None or name not in values else values[name]

    def reg_set(self, path: str, name: str, value: Any) -> None:
        values = self.reg_key(path, create=True)
        assert values is not None
        values[name] = value

    def reg_delete(self, path: str, name: str) -> None:
        values = self.reg_key(path)
        if values is not None and name in values:
            del values[name]

    def _set_volatile(self, path: str) -> None:
        self.reg_key(path, create=True)
        self.volatile_keys.add(path.lower())

    def params_key(self, service: str | None = None) -> str:
        return f"{SERVICES_KEY}\\{service or self.service_name}\\Parameters"

    @property
    def testsigning_active(self) -> bool:
        return self.bcd_active.get("testsigning", "No") == "Yes"

    @property
    def system_start_options(self) -> str:
        # HKLM\SYSTEM\CurrentControlSet\Control\SystemStartOptions as the kernel booted.
        opts = " NOEXECUTE=OPTIN"
        if self.testsigning_active:
            opts += "  TESTSIGNING"
        return opts

    # ---- debug output ---------------------------------------------------------------------
    def kernel_print(self, msg: str) -> None:
        """DbgPrint: recorded and handed to every listener (a capture appends it to its log file)."""
        self.debug_output.append(msg)
        for listener in list(self.debug_listeners):
            listener(msg)

    # ---- connection / reboot lifecycle ------------------------------------------------------
    def round_trip(self) -> None:
        """Called once per remote round trip, BEFORE the work. Raises ConnectionDropped when down."""
        if self._shutdown_countdown is not None:
            if self._shutdown_countdown <= 0:
                self._go_down_for_reboot()
            else:
                self._shutdown_countdown -= 1
        if self.lose_connection_after is not None:
            if self.lose_connection_after <= 0:
                self.down = True
            else:
                self.lose_connection_after -= 1
        if self.down:
            raise ConnectionDropped("the guest does not answer")

    def connect_attempt(self) -> None:
        """A new connection (pool) is being opened. Raises ConnectionDropped while down."""
        if self._shutdown_countdown is not None and self._shutdown_countdown <= 0:
            self._go_down_for_reboot()
        if self.down and self._down_left > 0:
            self._down_left -= 1
            if self._down_left == 0 and not self.fail_reboot:
                self._finish_reboot()
        if self.down:
            raise ConnectionDropped("connection refused")

    def _go_down_for_reboot(self) -> None:
        self._shutdown_countdown = None
        self.reboot_scheduled = False
        self.down = True
        self._down_left = max(1, self.down_attempts)

    def _finish_reboot(self) -> None:
        self.down = False
        self.reboot()

    def schedule_shutdown(self) -> int:
        """shutdown.exe /r: 1190 if one is already scheduled, else 0 (the reboot happens a bit later)."""
        if self.reboot_scheduled:
            return 1190
        self.reboot_scheduled = True
        self._shutdown_countdown = self.shutdown_lag
        return 0

    def abort_shutdown(self) -> int:
        """shutdown.exe /a: 1116 when nothing is scheduled."""
        if not self.reboot_scheduled:
            return 1116
        self.reboot_scheduled = False
        self._shutdown_countdown = None
        return 0

    def reboot(self) -> None:
        """A completed reboot: services stop, boot time changes, pending BCD applies, volatile keys reset."""
        self.boot_count += 1
        self.boot_time += TEN_MINUTES + self.boot_count  # always different from any earlier boot
        for svc in self.services.values():
            svc.state = 1
            svc.win32_exit = 1077
            svc.loaded_image_sha256 = ""
        for name in [n for n, s in self.services.items() if s.marked_for_delete]:
            del self.services[name]
        self.devices.clear()
        self.leaked_device = False
        self.bcd_active = dict(self.bcd)
        for key in self.volatile_keys:
            self.registry.pop(key, None)
        self._not_ready_left = self.ready_lag
        self.reboot_scheduled = False
        self._shutdown_countdown = None

    def ready_check(self) -> bool:
        """LogonUI recreates the volatile AutoLogonChecked key some time after boot."""
        if self._not_ready_left > 0:
            self._not_ready_left -= 1
            return False
        self._set_volatile(AUTOLOGON_KEY)
        return True

    def bugcheck(self, code: int = 0x9F) -> None:
        """A crash: the machine reboots at once, leaving Event 1001 and a minidump."""
        self.reboot()
        self.events.append(
            {
                "id": 1001,
                "provider": "Microsoft-Windows-WER-SystemErrorReporting",
                "message": f"The computer has rebooted from a bugcheck.  The bugcheck was: 0x{code:08x} "
                "(0x0000000000000003, 0xffffc00000000000, 0xfffff80000000000, 0xffffc00000001000). "
                "A dump was saved in: C:\\Windows\\MEMORY.DMP. Report Id: 00000000-0000-0000-0000-000000000001.",
            }
        )
        self.files[f"C:\\Windows\\Minidump\\112326-{self.boot_count:02d}.dmp"] = b"PAGEDU64" + b"\0" * 56
        self.down = True
        self._down_left = max(1, self.down_attempts)

    # ---- pnputil ------------------------------------------------------------------------------
    def pnputil_enum_drivers(self) -> tuple[int, str]:
        """`pnputil /enum-drivers` in its Windows 10/11 layout."""
        lines = ["Microsoft PnP Utility", ""]
        for published, original, signer in self.driver_store:
            lines += [
                f"Published Name:     {published}",
                f"Original Name:      {original}",
                "Provider Name:      Wazabi",
                "Class Name:         System devices",
                "Class GUID:         {4d36e97d-e325-11ce-bfc1-08002be10318}",
                "Driver Version:     12/06/2026 0.1.0.0",
                f"Signer Name:        {signer}",
                "",
            ]
        return 0, "\r\n".join(lines)

    # ---- bcdedit ------------------------------------------------------------------------------
    def bcdedit_enum_current(self) -> tuple[int, str]:
        lines = [
            "",
            "Windows Boot Loader",
            "-------------------",
            "identifier              {current}",
            "device                  partition=C:",
            "path                    \\Windows\\system32\\winload.efi",
            "description             Windows 11",
            "locale                  en-US",
            "inherit                 {bootloadersettings}",
            "recoverysequence        {3f80ecd2-df10-11ed-bafc-80a84b2564bb}",
            "displaymessageoverride  Recovery",
            "recoveryenabled         Yes",
        ]
        for key, value in self.bcd.items():
            if key == "testsigning" and value == "No" and "testsigning_set" not in self.bcd:
                continue  # absent if never set (note 02)
            if key.endswith("_set"):
                continue
            lines.append(f"{key:<24}{value}")
        lines += ["osdevice                partition=C:", "systemroot              \\Windows", "nx                      OptIn", ""]
        return 0, "\r\n".join(lines)

    def bcdedit_set(self, key: str, value: str) -> tuple[int, str]:
        if not self.elevated:
            return 1, "The boot configuration data store could not be opened.\r\nAccess is denied."
        if self.secure_boot and key in ("testsigning", "nointegritychecks", "debug"):
            return 1, ("An error has occurred setting the element data.\r\nThe value is protected by Secure Boot policy and cannot be modified or deleted.")
        self.bcd[key] = "Yes" if value.lower() in ("on", "yes", "true") else "No"
        self.bcd[f"{key}_set"] = "1"
        return 0, "The operation completed successfully."

    # ---- sc.exe -----------------------------------------------------------------------------
    @staticmethod
    def _failed(api: str, code: int) -> tuple[int, str]:
        return code, f"[SC] {api} FAILED {code}:\r\n\r\n{WIN32_MESSAGES.get(code, 'Unknown error.')}\r\n\r\n"

    def _svc(self, name: str) -> FakeService | None:
        svc = self.services.get(name)
        return svc if isinstance(svc, FakeService) else None

    def _status_block(self, svc: FakeService, *, with_pid: bool = False) -> str:
        lines = [
            "",
            f"SERVICE_NAME: {svc.name} ",
            f"        TYPE               : {svc.type}  {'KERNEL_DRIVER' if svc.type == 1 else 'WIN32_OWN_PROCESS'}  ",
            f"        STATE              : {svc.state}  {STATE_NAMES[svc.state]} ",
        ]
        if svc.state == 4:
            lines.append("                                (STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)")
        lines += [
            f"        WIN32_EXIT_CODE    : {svc.win32_exit}  (0x{svc.win32_exit:x})",
            f"        SERVICE_EXIT_CODE  : {svc.service_exit}  (0x{svc.service_exit:x})",
            "        CHECKPOINT         : 0x0",
            "        WAIT_HINT          : 0x0",
        ]
        if with_pid:
            lines += ["        PID                : 0", "        FLAGS              :"]
        return "\r\n".join(lines) + "\r\n"

    def sc(self, *args: str) -> tuple[int, str]:
        """Run `sc.exe <args>`; returns (exit code = Win32 error, output text)."""
        self.sc_log.append(" ".join(args))
        if not args:
            return 1639, "DESCRIPTION:\r\n        SC is a command line program ..."
        verb, rest = args[0].lower(), list(args[1:])
        name = rest[0] if rest else ""
        opts = _sc_options(rest[1:])
        mutating = verb in ("create", "config", "start", "stop", "delete")
        if mutating and not self.elevated:
            api = {"create": "OpenSCManager", "delete": "OpenService", "config": "OpenService"}.get(verb, "OpenService")
            return self._failed(api, 5)
        svc = self._svc(name)
        if verb == "create":
            if svc is not None:
                return self._failed("CreateService", 1072 if svc.marked_for_delete else 1073)
            new = FakeService(name=name)
            self._apply_options(new, opts)
            self.services[name] = new
            return 0, "[SC] CreateService SUCCESS\r\n"
        if svc is None:
            api = {"query": "EnumQueryServicesStatus:OpenService", "queryex": "EnumQueryServicesStatus:OpenService"}.get(verb, "OpenService")
            return self._failed(api, 1060)
        if verb in ("query", "queryex"):
            return 0, self._status_block(svc, with_pid=verb == "queryex")
        if verb == "qc":
            return 0, (
                "[SC] QueryServiceConfig SUCCESS\r\n\r\n"
                f"SERVICE_NAME: {svc.name}\r\n"
                f"        TYPE               : {svc.type}  {'KERNEL_DRIVER' if svc.type == 1 else 'WIN32_OWN_PROCESS'}\r\n"
                f"        START_TYPE         : {svc.start}   {START_NAMES.get(svc.start, '')}\r\n"
                "        ERROR_CONTROL      : 1   NORMAL\r\n"
                f"        BINARY_PATH_NAME   : {svc.binpath}\r\n"
                "        LOAD_ORDER_GROUP   : \r\n"
                "        TAG                : 0\r\n"
                f"        DISPLAY_NAME       : {svc.name}\r\n"
                "        DEPENDENCIES       : \r\n"
                "        SERVICE_START_NAME : \r\n"
            )
        if verb == "config":
            if svc.marked_for_delete:
                return self._failed("ChangeServiceConfig", 1072)
            self._apply_options(svc, opts)
            return 0, "[SC] ChangeServiceConfig SUCCESS\r\n"
        if verb == "delete":
            if svc.marked_for_delete:
                return self._failed("DeleteService", 1072)
            if svc.state == 1:
                del self.services[name]
            else:
                svc.marked_for_delete = True  # gone once stopped / after reboot
            return 0, "[SC] DeleteService SUCCESS\r\n"
        if verb == "stop":
            if svc.state == 1:
                return self._failed("ControlService", 1062)
            if svc.no_unload:
                return self._failed("ControlService", 1052)
            pending, svc.stop_pending = svc.stop_pending, False
            self.kernel_print(f"{self.log_prefix} DriverUnload called")
            self.devices.discard(self.device_path)
            self.kernel_print(f"{self.log_prefix} unloaded")
            svc.state = 1
            svc.win32_exit = 0
            svc.loaded_image_sha256 = ""
            out = self._status_block(svc)
            if svc.marked_for_delete:
                del self.services[name]
            if pending:
                return self._failed("ControlService", 1061)
            return 0, out
        if verb == "start":
            return self._start(svc)
        return 1639, "DESCRIPTION:\r\n        SC is a command line program ..."

    @staticmethod
    def _apply_options(svc: FakeService, opts: dict[str, str]) -> None:
        if "type" in opts:
            svc.type = 1 if opts["type"].lower() == "kernel" else 16
        if "start" in opts:
            svc.start = START_WORDS.get(opts["start"].lower(), svc.start)
        if "binpath" in opts:
            svc.binpath = opts["binpath"]

    def _start(self, svc: FakeService) -> tuple[int, str]:
        if svc.marked_for_delete:
            return self._failed("StartService", 1072)
        if svc.state == 4:
            return self._failed("StartService", 1056)
        if svc.start == 4:
            return self._failed("StartService", 1058)
        image = _strip_nt_prefix(svc.binpath)
        if image not in self.files:
            svc.win32_exit = 2
            return self._failed("StartService", 2)
        # Code Integrity: HVCI blocks test-signed drivers (1275); without active TESTSIGNING
        # (or without any signature) the image hash check fails (577). (note 02 / seed)
        if self.hvci:
            svc.win32_exit = 1275
            return self._failed("StartService", 1275)
        if not self.driver_signed or not self.testsigning_active:
            svc.win32_exit = 577
            return self._failed("StartService", 577)
        if self.crash_on_load:
            self.kernel_print(f"{self.log_prefix} DriverEntry called")
            self.bugcheck(0x9F)
            raise ConnectionDropped("the guest stopped answering (bugcheck)")
        self.kernel_print(f"{self.log_prefix} DriverEntry called")
        step = self.reg_get(self.params_key(svc.name), "FailAtStep") or 0
        failing: str | None = None
        status = "0xC0000001"
        if self.leaky_unwind and self.leaked_device:
            failing, status = "IoCreateDevice", "0xC0000035"  # STATUS_OBJECT_NAME_COLLISION
        elif 0 < int(step) <= len(self.fault_steps):
            failing = self.fault_steps[int(step) - 1]
            self.kernel_print(f"{self.log_prefix} fault injection: failing step {int(step)} ({failing})")
        if failing is not None:
            self.kernel_print(f"{self.log_prefix} {failing} failed (status {status})")
            if self.leaky_unwind and failing != "IoCreateDevice":
                self.leaked_device = True  # the device was created, and the broken unwind forgot to delete it
            svc.win32_exit = 31
            return self._failed("StartService", 31)
        self.devices.add(self.device_path)
        self.kernel_print(f"{self.log_prefix} ready (device \\Device\\WazabiEDR, symlink \\DosDevices\\WazabiEDR)")
        svc.state = 4
        svc.win32_exit = 0
        svc.loaded_image_sha256 = hashlib.sha256(self.files[image]).hexdigest()
        return 0, self._status_block(svc, with_pid=True)

    # ---- device I/O (what Test-DeviceChecks' P/Invoke sees) ---------------------------------------
    def device_io(self, path: str) -> dict[str, int]:
        """Win32 errors of CreateFileW / DeviceIoControl / ReadFile / CloseHandle on `path`."""
        if path.lower() not in {d.lower() for d in self.devices}:
            return {"open_error": 2, "ioctl_error": -1, "read_error": -1, "close_error": -1}
        return {"open_error": 0, "ioctl_error": self.ioctl_error, "read_error": self.read_error, "close_error": 0}

    def running_images(self) -> set[str]:
        return {_strip_nt_prefix(s.binpath).lower() for s in self.services.values() if s.state == 4}


def _sc_options(args: list[str]) -> dict[str, str]:
    """sc.exe's `name= value` pairs (the space after '=' is required)."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if token.endswith("=") and i + 1 < len(args):
            opts[token[:-1].lower()] = args[i + 1]
            i += 2
        else:
            i += 1
    return opts


def _strip_nt_prefix(path: str) -> str:
    for prefix in ("\\??\\", "\\\\?\\"):
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


# --------------------------------------------------------------------------------------------
# The Guest
# --------------------------------------------------------------------------------------------


class FakeGuest:
    """driverpipe.transports.base.Guest over a FakeWindows. Counts round trips and pools opened."""

    def __init__(self, machine: FakeWindows, name: str = "fake", *, check_params: bool = True):
        self.machine = machine
        self.name = name
        self.check_params = check_params
        self.round_trips = 0
        self.pools_opened = 0
        self.connect_attempts = 0
        self.calls: list[tuple[str, dict[str, Any]]] = []  # every script run, in order
        self.closed = False
        self._checked: set[tuple[str, frozenset[str]]] = set()
        self._open()

    # Real transports raise EnvironmentProblem for an unreachable guest and StepFailed for a connection
    # closed mid-operation (driverpipe.transports.errors); `machine.drop_error` picks which one a drop gives.
    def _unreachable(self, why: str, *, connecting: bool = False) -> PipelineError:
        if self.machine.drop_error == "closed" and not connecting:
            return StepFailed(f"{self.name}: the connection was closed by the guest ({why})", "the guest may be rebooting; retry")
        return EnvironmentProblem(f"{self.name}: guest unreachable ({why})", "check that the VM is running and WinRM answers")

    def _open(self) -> None:
        self.connect_attempts += 1
        try:
            self.machine.connect_attempt()
        except ConnectionDropped as exc:
            raise self._unreachable(str(exc), connecting=True) from None
        self.pools_opened += 1
        self.closed = False

    def _trip(self) -> None:
        try:
            self.machine.round_trip()
        except ConnectionDropped as exc:
            raise self._unreachable(str(exc)) from None
        self.round_trips += 1

    def _check(self, script: str, params: dict[str, Any]) -> None:
        path = script_path(script)  # FileNotFoundError: not a shipped script
        if not self.check_params:
            return
        key = (script, frozenset(params))
        if key in self._checked:
            return
        from driverpipe.parse.psgrammar import check_bound_params

        problems = check_bound_params(path, dict(params))
        if problems:
            raise AssertionError("; ".join(problems))
        self._checked.add(key)

    def _dispatch(self, script: str, params: dict[str, Any]) -> Any:
        self._check(script, params)
        fn = HANDLERS.get(script.lower())
        if fn is None:
            raise AssertionError(f"no fake handler registered for {script} (add one in tests/fakes/*_handlers.py)")
        self.calls.append((script, dict(params)))
        try:
            result = fn(self.machine, dict(params))
        except ConnectionDropped as exc:
            raise self._unreachable(str(exc)) from None
        # What comes back went through ConvertTo-Json / ConvertFrom-Json.
        return json.loads(json.dumps(result)) if result is not None else None

    def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        self._trip()
        return self._dispatch(script, params or {})

    def run_batch(self, items: list[tuple[str, dict[str, Any]]], *, timeout: float | None = None) -> list[Any]:
        """One round trip; stops at the first failing item like Invoke-Batch.ps1 / BatchMixin."""
        self._trip()
        out: list[Any] = []
        for name, params in items:
            try:
                out.append(self._dispatch(name, params))
            except GuestScriptError as exc:
                raise GuestScriptError(f"{name} failed on the guest: {exc.message}") from None
        return out

    def push(self, local: Path, remote: str) -> PushResult:
        """Temp name + rename; skipped when the hash already matches. A running driver image is locked."""
        self._trip()
        data = Path(local).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        existing = self.machine.files.get(remote)
        if existing is not None and hashlib.sha256(existing).hexdigest() == digest:
            return PushResult(remote, digest, False, len(data))
        if remote.lower() in self.machine.running_images():
            # A loaded driver's image file cannot be replaced (unsure: modelled as a sharing violation).
            raise GuestScriptError(f"cannot replace {remote}: The process cannot access the file because it is being used by another process")
        self.machine.files[remote + ".driverpipe-tmp"] = data[: len(data) // 2]
        if self.machine.fail_push:
            self.machine.down = True  # the half-written temp file stays; the target is untouched
            raise self._unreachable("connection lost during copy")
        self.machine.files[remote + ".driverpipe-tmp"] = data
        self.machine.files[remote] = self.machine.files.pop(remote + ".driverpipe-tmp")
        return PushResult(remote, digest, True, len(data))

    def pull(self, remote: str, local: Path) -> None:
        self._trip()
        if remote not in self.machine.files:
            raise GuestScriptError(f"{remote}: Cannot find path '{remote}' because it does not exist.")
        Path(local).write_bytes(self.machine.files[remote])

    def read_range(self, remote: str, offset: int, max_bytes: int) -> bytes:
        self._trip()
        data = self.machine.files.get(remote)
        if data is None:
            raise GuestScriptError(f"{remote}: Cannot find path '{remote}' because it does not exist.")
        return bytes(data[offset : offset + max_bytes])

    def reconnect(self) -> None:
        self.closed = True
        self._open()

    def close(self) -> None:
        self.closed = True


class FakeCapture:
    """Stand-in for driverpipe.targets.capture.Capture in deploy tests: the guest's kernel output goes to a log
    file in machine.files, and wait_for() reads it back with ONE read_range round trip."""

    LOG = "C:\\driverpipe\\fake-capture.log"

    def __init__(self, guest: FakeGuest, prefix: str = "[WazabiEDR]"):
        self.guest = guest
        self.prefix = prefix
        self.offset = 0
        self.started = False

    def _append(self, msg: str) -> None:
        files = self.guest.machine.files
        files[self.LOG] = files.get(self.LOG, b"") + (msg + "\r\n").encode()

    def start_items(self) -> list[tuple[str, dict[str, Any]]]:
        if not self.started:
            self.guest.machine.debug_listeners.append(self._append)
            self.guest.machine.files.setdefault(self.LOG, b"")
            self.started = True
        self.offset = len(self.guest.machine.files.get(self.LOG, b""))
        return []

    def stop_items(self) -> list[tuple[str, dict[str, Any]]]:
        return []

    def wait_for(self, phase: str) -> FakeVerdict:
        data = self.guest.read_range(self.LOG, self.offset, 1 << 20)
        lines = [ln for ln in data.decode().splitlines() if ln.startswith(self.prefix)]
        failed = [ln for ln in lines if " failed" in ln]
        ready = any(" ready (" in ln for ln in lines)
        passed = ready and not failed if phase == "load" else not failed
        return FakeVerdict(passed=passed, status="passed" if passed else "failed", message=failed[0] if failed else "", lines=lines)


@dataclass
class FakeVerdict:
    passed: bool
    status: str
    message: str
    lines: list[str]

    def render_table(self) -> str:
        return "\n".join(self.lines)
