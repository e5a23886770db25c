"""The configuration schema: every key, its type, default and meaning.

One declaration drives validation, defaults, environment-variable names and the
README's configuration reference, so they cannot drift apart.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Key:
    type: builtins.type | tuple[builtins.type, ...]
    default: Any = None
    doc: str = ""
    required: bool = False
    choices: tuple[str, ...] | None = None
    item_type: builtins.type | None = None  # for lists
    env: bool = True  # may be overridden from DRIVERPIPE_* environment variables
    low: float | None = None  # numbers: smallest allowed value (inclusive)
    high: float | None = None  # numbers: largest allowed value (inclusive)
    positive: bool = False  # numbers: finite and > 0 (timeouts, intervals)
    name: bool = False  # strings that become file or folder names: no separators, no '..'
    port: bool = False  # 1..65535, or 0 when 0 means "the default port"
    host: bool = False  # a host name, IPv4 or IPv6 address (or empty when not required)
    identifiers: bool = False  # lists: at least one item, each an identifier (letters, digits, '_'), no repeats


@dataclass(frozen=True)
class Table:
    """A fixed set of keys (and sub-tables)."""

    keys: dict[str, Key | Table | NamedTables | TableList]
    doc: str = ""
    optional: bool = False  # absent -> None (not a table of defaults): its presence means something


@dataclass(frozen=True)
class TableList:
    """An ordered array of tables ([[a.b]]), each following `entry`; errors name `key[N].sub`."""

    entry: Table
    doc: str = ""
    # (entry, index, entries) -> (key, problem, fix) for a rule between keys or entries; None: fine
    rule: Callable[[dict[str, Any], int, list[dict[str, Any]]], tuple[str, str, str] | None] | None = None


@dataclass(frozen=True)
class NamedTables:
    """A table of user-named entries, each following `entry` (e.g. [targets.NAME])."""

    entry: Table
    doc: str = ""
    by_kind: dict[str, Table] = field(default_factory=dict)  # extra keys depending on `kind`


EXPECT_PHASE = Table(
    {
        "sequence": Key(list, [], "ordered lines to find; exact text, or 're:' + regex (named groups usable later as {name})", item_type=str),
        "forbid": Key(list, [], "lines that must not appear; exact text, 're:' regex or shell-style glob with '*'", item_type=str),
        "timeout": Key((int, float), 30, positive=True, doc="seconds to wait for the whole sequence"),
        "prefix": Key(str, "", "only lines starting with this prefix take part (empty: all lines)"),
    },
    "one phase of DbgPrint expectations",
)

CTL_METHODS = ("buffered", "in_direct", "out_direct", "neither")
DEVICE_IO_MAX = 65536  # bytes one check sends or reads (the agent's buffers)
CTL_ACCESS = ("any", "read", "write", "read_write")

# One step of the device checks, run in order on one handle of `device_path` (checks/devicechecks.py
# adds the rules between keys: `code` xor `ctl_code` for an ioctl, hex strings, a plain unique name).
DEVICE_CHECK = Table(
    {
        "name": Key(str, "", "a plain name for the check (letters, digits, '.', '_', '-'), unique", required=True, name=True),
        "op": Key(str, "", "what the check does on the open handle", required=True, choices=("ioctl", "read", "write")),
        "code": Key(int, None, "ioctl: the IOCTL code (or give ctl_code)", low=0, high=0xFFFFFFFF),
        "ctl_code": Table(
            {
                "device_type": Key(int, 0x22, "CTL_CODE DeviceType (0x22: FILE_DEVICE_UNKNOWN)", low=0, high=0xFFFF),
                "function": Key(int, 0x800, "CTL_CODE Function (0x800 and up: vendor codes)", low=0, high=0xFFF),
                "method": Key(str, "buffered", "CTL_CODE TransferType", choices=CTL_METHODS),
                "access": Key(str, "any", "CTL_CODE RequiredAccess", choices=CTL_ACCESS),
            },
            "ioctl: the code as CTL_CODE parts (or give code)",
            optional=True,
        ),
        "input": Key(str, "", "hex bytes sent (ioctl input buffer; write data)"),
        "output_length": Key(int, 0, "bytes of output buffer offered (ioctl) or bytes to read (read), at most 65536", low=0, high=DEVICE_IO_MAX),
        "expect_error": Key(int, 0, "the Win32 error expected (0: the call succeeds)", low=0, high=0xFFFFFFFF),
        "expect_output": Key(str, None, "hex bytes expected back, exactly (absent: not checked)"),
        "expect_returned": Key(int, None, "bytes returned expected (absent: not checked)", low=0, high=0xFFFFFFFF),
    }
)

HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})*")
DEVICE_CHECKS_MAX = 64  # the Wine agent's request holds at most this many steps


def device_check_problem(check: dict[str, Any], index: int, checks: list[dict[str, Any]]) -> tuple[str, str, str] | None:
    """The rules between a device check's keys (the types and ranges are the Table's)."""
    if index >= DEVICE_CHECKS_MAX:
        return "name", f"more than {DEVICE_CHECKS_MAX} device checks", "split the checks or drop some: one load runs at most 64"
    if not check["name"]:
        return "name", "must not be empty", "give the check a plain name"
    if len(check["input"].replace(" ", "")) > 2 * DEVICE_IO_MAX:
        return "input", f"more than {DEVICE_IO_MAX} bytes", f"send at most {DEVICE_IO_MAX} bytes per check"
    if any(other["name"] == check["name"] for other in checks[:index]):
        return "name", f"{check['name']!r} is used by an earlier check", "give every check its own name"
    for key in ("input", "expect_output"):
        value = check[key]
        if value is not None and not HEX_RE.fullmatch(value.replace(" ", "")):
            return key, f"{value!r} is not hex bytes", 'write bytes as hex digit pairs, e.g. "0a0b0c0d" (spaces allowed)'
    if check["op"] == "ioctl":
        if (check["code"] is None) == (check["ctl_code"] is None):
            return "code", "an ioctl check needs exactly one of code and ctl_code", "set code = 0x222000 or ctl_code = { device_type = 0x22, function = 0x800 }"
    else:
        for key in ("code", "ctl_code"):
            if check[key] is not None:
                return key, f"only an ioctl check has {key} (this one is a {check['op']})", f'remove {key} or set op = "ioctl"'
    if check["op"] == "write" and check["output_length"]:
        return "output_length", "a write check reads nothing back", "remove output_length (input holds the bytes written)"
    return None


PROJECT = Table(
    {
        "driver_crate": Key(str, "driver", "path of the driver crate (folder holding Cargo.toml), relative to the project"),
        "inx": Key(str, "inf/WazabiEDR_Driver.inx", "the driver's INF template (.inx), relative to the project"),
        "service_name": Key(str, "WazabiEDR", "kernel service name used with sc.exe"),
        "device_path": Key(str, "\\\\.\\WazabiEDR", 'user-mode device path the device checks open ("": the driver creates no device)'),
        "log_prefix": Key(str, "[WazabiEDR]", "prefix of the driver's DbgPrint lines"),
        "default_target": Key(str, "", "target used when --target is not given"),
        "artifacts_dir": Key(str, "artifacts", "where logs, reports and dumps are written, relative to the project"),
        "build": Table(
            {
                "profile": Key(str, "release", "cargo profile", choices=("release", "debug")),
                "model": Key(
                    str,
                    "auto",
                    "driver model: kmdf (cargo + wdk-build, needs the WDK: Windows or a build host), "
                    "wdm (rust-lld on this host, no WDK), auto (kmdf where the WDK is reachable, else wdm)",
                    choices=("auto", "kmdf", "wdm"),
                ),
                "target_triple": Key(str, "x86_64-pc-windows-msvc", "Rust target triple of the driver"),
                "features": Key(list, [], "cargo features to enable", item_type=str),
                "build_host": Key(str, "", "name of a [build_hosts] entry used when not on Windows"),
                "arch": Key(str, "amd64", "INF architecture ($ARCH$)", choices=("amd64", "arm64")),
                "driver_version": Key(str, "", "DriverVer version (empty: the crate version + .0)"),
            }
        ),
        "sign": Table(
            {
                "backend": Key(str, "auto", "signing tool", choices=("auto", "signtool", "osslsigncode")),
                "cert_subject": Key(str, "CN=WazabiEDR Test Signing", "subject of the test certificate"),
                "cert_store": Key(str, "WDRTestCertStore", "Windows certificate store of the test certificate"),
                "cert_dir": Key(str, "", "directory of the test key/cert/PFX on non-Windows hosts (empty: per-user data dir)"),
                "pfx_password_env": Key(str, "DRIVERPIPE_PFX_PASSWORD", "environment variable holding the PFX password"),
                "timestamp_url": Key(str, "", "RFC 3161 timestamp server (empty: no timestamp; never required for test signing)"),
                "description": Key(str, "WazabiEDR test driver", "description embedded in the signature"),
            }
        ),
        "deploy": Table(
            {
                "guest_dir": Key(str, "C:\\WazabiEDR", "directory on the guest that receives the package"),
                "smoke_test": Key(bool, True, "open the device from user mode after loading"),
                "reboot_timeout": Key((int, float), 600, positive=True, doc="seconds to wait for a guest reboot"),
                "script_timeout": Key((int, float), 120, positive=True, doc="seconds one guest script may run"),
                "lock_wait": Key((int, float), 300, "seconds a run waits for a target (or the build output) another run holds", low=0, high=86400),
                "lease_seconds": Key(
                    (int, float), 900, positive=True, doc="lifetime of the lease on a remote guest, renewed at every step (a dead run's lease expires)"
                ),
            }
        ),
        "device_check": TableList(
            DEVICE_CHECK, "device checks after a load, in order, on one handle (none declared: open + close only)", rule=device_check_problem
        ),
        "debugview": Table(
            {
                "source": Key(str, "", "local path or https URL of Dbgview.exe (or Dbgview64.exe) to install on guests"),
                "sha256": Key(str, "", "expected SHA-256 of the DebugView executable"),
                "guest_path": Key(str, "C:\\Tools\\Dbgview.exe", "where DebugView lives on the guest"),
                "poll_interval": Key((int, float), 0.5, positive=True, doc="seconds between reads of the growing log"),
            }
        ),
        "expect": Table(
            {
                "load": EXPECT_PHASE,
                "unload": EXPECT_PHASE,
                "failed_load": EXPECT_PHASE,
            },
            "DbgPrint expectations per phase; in failed_load, {step} is the failing step's name",
        ),
        "regress": Table(
            {
                "cycles": Key(int, 10, "load/unload cycles", low=1, high=100000),
                "fault_steps": Key(
                    list,
                    ["IoCreateDevice", "IoCreateSymbolicLink"],
                    "DriverEntry steps, in order (fault injection index = position + 1); at least one, each an identifier",
                    item_type=str,
                    identifiers=True,
                ),
                "verifier": Key(bool, False, "run a Driver Verifier pass"),
                "stop_timeout": Key((int, float), 120, positive=True, doc="seconds a graceful guest shutdown may take at the end of a run before a hard stop"),
                "known_issues": Key(list, [], "known issues: tables with id, match (regex on a failure) and reason", item_type=dict, env=False),
            }
        ),
    }
)

TARGET = Table(
    {
        "transport": Key(str, "winrm", "how to reach the guest (wine: a Wine prefix on this Linux machine, tier 0)", choices=("winrm", "ssh", "local", "wine")),
        "host": Key(str, "", "guest address (winrm/ssh): a host name or IP address", host=True),
        "port": Key(int, 0, "port (0: 5986 WinRM over HTTPS, 5985 over HTTP, 22 SSH)", port=True),
        "user": Key(str, "", "account on the guest (an administrator)"),
        "password_env": Key(str, "", "environment variable holding the password"),
        "password_keyring": Key(str, "", "keyring entry 'service/username' holding the password"),
        "test_machine": Key(bool, False, "true allows the pipeline to change boot settings, trust stores and reboot"),
        "guest_dir": Key(str, "", "overrides deploy.guest_dir for this target"),
        "vm_host": Key(str, "", "name of a [vm_hosts] entry that runs this guest"),
        "vm_name": Key(str, "", "VM/domain name on the VM host"),
        "clean_state": Key(str, "clean", "snapshot/checkpoint name of the clean state", name=True),
        "winrm": Table(
            {
                "ssl": Key(bool, True, "HTTPS (5986); false means HTTP with message encryption"),
                "auth": Key(str, "negotiate", "authentication", choices=("negotiate", "ntlm", "kerberos", "credssp", "basic", "certificate")),
                "cert_validation": Key(bool, True, "validate the server certificate"),
                "ca_bundle": Key(str, "", "CA bundle or the listener's self-signed certificate (PEM)"),
                "allow_basic_http": Key(bool, False, "allow Basic auth over plain HTTP (credentials in clear text)"),
                "allow_unverified_basic": Key(bool, False, "allow Basic auth with cert_validation = false (the password goes to whoever answers on that port)"),
                "use_proxy": Key(bool, False, "send WinRM through HTTP(S)_PROXY (false: a lab guest is reached directly)"),
                "connection_timeout": Key((int, float), 30, positive=True, doc="seconds"),
                "read_timeout": Key((int, float), 30, positive=True, doc="seconds"),
                "operation_timeout": Key((int, float), 20, positive=True, doc="seconds (must stay below read_timeout)"),
            }
        ),
        "ssh": Table(
            {
                "known_hosts": Key(str, "", "known_hosts file (empty: ~/.ssh/known_hosts)"),
                "trust_on_first_use": Key(bool, False, "accept and record an unknown host key (never a changed one)"),
                "key_file": Key(str, "", "private key file (empty: agent / default keys / password)"),
                "connect_timeout": Key((int, float), 15, positive=True, doc="seconds"),
                "powershell_path": Key(str, "powershell", "PowerShell on the guest: powershell (Windows PowerShell 5.1), pwsh or a full path"),
            }
        ),
        "wine": Table(
            {
                "prefix": Key(
                    str,
                    "",
                    "the Wine prefix (empty: per-user state dir, driverpipe/wine/<target>); never inside the repository; "
                    "a directory driverpipe made, an empty one or none (another prefix is refused, never changed)",
                ),
                "wine": Key(str, "wine", "the wine program (a name on PATH or the path of an executable file)"),
                "wineserver": Key(str, "wineserver", "the wineserver program (a name on PATH or the path of an executable file)"),
                "start_timeout": Key((int, float), 180, positive=True, doc="seconds to create the prefix or start Wine's services"),
            }
        ),
    }
)

VM_HOST_COMMON = Table(
    {
        "kind": Key(str, "", "hypervisor", required=True, choices=("qemu", "libvirt", "hyperv")),
    }
)

VM_HOST_KINDS = {
    "qemu": Table(
        {
            "binary": Key(str, "qemu-system-x86_64", "QEMU system emulator"),
            "machine": Key(str, "q35", "machine type"),
            "accel": Key(str, "kvm:tcg", "accelerators in order of preference"),
            "memory_mb": Key(int, 4096, "guest memory", low=16, high=1 << 22),
            "cpus": Key(int, 2, "guest CPUs", low=1, high=1024),
            "base_image": Key(str, "", "qcow2 base image of the prepared guest (never written)"),
            "ovmf_code": Key(str, "", "OVMF code image without Secure Boot (empty: BIOS boot)"),
            "ovmf_vars": Key(str, "", "OVMF vars template"),
            "state_dir": Key(str, "", "where overlays, named states and sockets live (empty: per-user data dir)"),
            "forward_winrm": Key(int, 55986, "loopback port forwarded to the guest's 5986 (0: none)", port=True),
            "forward_ssh": Key(int, 0, "loopback port forwarded to the guest's 22 (0: none)", port=True),
            "forward_rdp": Key(int, 0, "loopback port forwarded to the guest's 3389 (0: none)", port=True),
            "extra_args": Key(list, [], "extra QEMU arguments", item_type=str),
            "display": Key(str, "none", "QEMU -display value"),
            "nic": Key(str, "e1000", "guest NIC model (e1000: driver in-box in Windows; virtio-net-pci needs virtio-win drivers)"),
        }
    ),
    "libvirt": Table(
        {
            "uri": Key(str, "qemu:///system", "libvirt connection URI (qemu+ssh://user@host/system for remote)"),
            "virsh": Key(str, "virsh", "virsh program"),
        }
    ),
    "hyperv": Table(
        {
            "transport": Key(str, "local", "how to reach the Hyper-V host", choices=("local", "winrm")),
            "host": Key(str, "", "Hyper-V host (winrm): a host name or IP address", host=True),
            "user": Key(str, "", "account on the Hyper-V host (winrm)"),
            "password_env": Key(str, "", "environment variable holding that account's password"),
            "use_powershell_direct": Key(bool, False, "reach the guest over PowerShell Direct (pipeline runs on the host)"),
        }
    ),
}

BUILD_HOST = Table(
    {
        "transport": Key(str, "ssh", "how to reach the Windows build host", choices=("ssh", "winrm")),
        "host": Key(str, "", "address: a host name or IP address", required=True, host=True),
        "port": Key(int, 0, "port (0: transport default)", port=True),
        "user": Key(str, "", "account", required=True),
        "password_env": Key(str, "", "environment variable holding the password"),
        "password_keyring": Key(str, "", "keyring entry 'service/username'"),
        "work_dir": Key(str, "C:\\driverpipe-build", "where sources are unpacked and built"),
        "ssh": TARGET.keys["ssh"],  # type: ignore[dict-item]
        "winrm": TARGET.keys["winrm"],  # type: ignore[dict-item]
    }
)

USER = Table(
    {
        "default_target": Key(str, "", "target used when --target is not given"),
        "targets": NamedTables(TARGET, "Windows guests the driver is deployed to"),
        "vm_hosts": NamedTables(VM_HOST_COMMON, "hypervisors that run the guests", by_kind=VM_HOST_KINDS),
        "build_hosts": NamedTables(BUILD_HOST, "Windows machines with the WDK used to build from other hosts"),
    }
)
