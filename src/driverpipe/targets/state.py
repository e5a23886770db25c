"""What deploy and the guest operations share: the guest's state, the results of a load and an
unload, the errors a deploy raises, and the Deployment/Step records a plan is made of."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..core.context import RunContext
from ..core.errors import CheckFailed, EnvironmentProblem, StepFailed
from ..core.files import sha256_file
from ..parse.winparse import sc_code
from .reboot import Diagnosed

DEBUG_FILTER_WANTED = 0xF
ERROR_INVALID_FUNCTION = 1
ERROR_FILE_NOT_FOUND = 2
FAILED_LINE = re.compile(r"(\S*\]?\s*\S+ failed\b.*)$")


class GuestNotReady(Diagnosed, EnvironmentProblem):
    """The guest answered but lacks a prerequisite (elevation, Secure Boot off, HVCI off). Exit code 3."""


class DeployStepFailed(Diagnosed, StepFailed):
    """A deploy operation ran on the guest and failed (sc.exe code, bcdedit, push hash). Exit code 4."""


class PackageLike(Protocol):
    """What deploy needs of driverpipe.sign.SignedPackage."""

    dir: Path
    name: str
    files: list[Path]
    cert_path: Path


@dataclass
class ServiceInfo:
    exists: bool = False
    state: int | None = None  # 1 STOPPED, 4 RUNNING, ...
    state_name: str | None = None
    binary_path: str | None = None
    start_type: int | None = None
    type: int | None = None
    win32_exit_code: int | None = None

    @property
    def running(self) -> bool:
        return self.exists and self.state not in (None, 1)


@dataclass
class GuestState:
    """What Get-GuestState.ps1 found (one round trip). `synthetic` = a dry run's assumed first deploy."""

    elevated: bool = True
    os_caption: str = ""
    os_build: int = 0
    secure_boot: bool | None = False  # None: BIOS (no Secure Boot) or unknown (see secure_boot_detail)
    secure_boot_detail: str = ""  # "unsupported (BIOS)" or why it could not be read
    hvci: bool = False
    testsigning_configured: bool | None = None  # in the BCD store (bcdedit)
    testsigning_active: bool | None = None  # in the running boot (SystemStartOptions)
    debug_filter: int | None = None
    cert_root: bool = False
    cert_trusted_publisher: bool = False
    files: dict[str, str | None] = field(default_factory=dict)  # name -> sha256 in the guest dir (None: absent)
    debugview_present: bool | None = None
    service: ServiceInfo = field(default_factory=ServiceInfo)
    boot_time: int | None = None
    pending_reboot: bool = False
    synthetic: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def cert_trusted(self) -> bool:
        return self.cert_root and self.cert_trusted_publisher

    @property
    def testsigning(self) -> bool | None:
        """TESTSIGNING active in the running boot (what makes test-signed drivers load)."""
        return self.testsigning_active

    @property
    def debug_filter_ok(self) -> bool | None:
        return _filter_ok(self.debug_filter)

    def summary(self) -> str:
        ts = {True: "on", False: "off", None: "unknown"}
        active = ts[self.testsigning_active]
        if self.testsigning_configured and not self.testsigning_active:
            active = "off (on after reboot)"
        flt = "unset" if self.debug_filter is None else f"0x{self.debug_filter:X}"
        sb = "ON" if self.secure_boot is True else ("off" if self.secure_boot is False else (self.secure_boot_detail or "unknown"))
        return (
            f"{self.os_caption or 'Windows'} build {self.os_build}, elevated {'yes' if self.elevated else 'NO'}, Secure Boot {sb}, "
            f"HVCI {'on' if self.hvci else 'off'}, TESTSIGNING {active}, Debug Print Filter {flt}, "
            f"test cert {'trusted' if self.cert_trusted else 'not trusted'}"
        )


def _filter_ok(value: int | None) -> bool:
    return value is not None and (value & DEBUG_FILTER_WANTED) == DEBUG_FILTER_WANTED


def _dry_state(pkg: PackageLike | None) -> GuestState:
    """A dry run cannot ask the guest: plan a first deploy on an unprepared test machine."""
    names = [p.name for p in pkg.files] if pkg else []
    return GuestState(
        os_caption="(dry run: assumed)",
        testsigning_configured=False,
        testsigning_active=False,
        files=dict.fromkeys(names),
        synthetic=True,
    )


def cert_thumbprint(cert_path: Path) -> tuple[str, bytes]:
    """(SHA-1 thumbprint as Windows shows it, DER bytes) of a .cer (DER or PEM)."""
    data = Path(cert_path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        body = b"".join(line for line in data.splitlines() if line and not line.startswith(b"-----"))
        data = base64.b64decode(body)
    return hashlib.sha1(data).hexdigest().upper(), data


def _service_name(ctx: RunContext) -> str:
    return str(ctx.config.project.service_name)


def _guest_dir(ctx: RunContext, target: Any = None) -> str:
    override = str(target.get("guest_dir") or "") if target is not None else ""
    return override or str(ctx.config.project.deploy.guest_dir)


def _join(directory: str, name: str) -> str:
    return directory.rstrip("\\/") + "\\" + name


@dataclass
class ScOp:
    op: str  # query / stop / wait_stopped / create / config / start
    rc: int
    output: str

    @property
    def code(self) -> int:
        return sc_code(self.rc, self.output)


@dataclass
class LoadResult:
    ok: bool  # sc start succeeded
    start_code: int | None  # Win32 code of sc start (None: start not reached)
    ops: list[ScOp] = field(default_factory=list)
    message: str = ""  # diagnosis when not ok
    error: str = ""  # script-level refusal: hash_mismatch / image_missing / stop_timeout
    smoke: Any = None  # devicechecks.DeviceCheckResult: the device checks after the start (None: not run)
    verdict: Any = None  # driverpipe.verify Verdict when fetched here (sc 31)
    failed_line: str = ""  # the driver's `<step> failed` DbgPrint line, when captured
    driver_loaded: bool = False
    capture_error: str = ""  # the capture could not start (the load ran without it)
    dry: bool = False


@dataclass
class UnloadResult:
    stopped: bool  # the service is STOPPED (or not installed)
    stop_code: int
    device_gone: bool
    device_open_error: int | None
    deleted: bool | None = None
    delete_code: int | None = None
    message: str = ""
    dry: bool = False


def _sys_file(pkg: PackageLike) -> Path:
    for f in pkg.files:
        if f.suffix.lower() == ".sys":
            return f
    raise CheckFailed(f"the signed package {pkg.name} has no .sys file", "run `invoke build sign` again")


def _sha256(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _line_text(item: Any) -> str:
    return str(getattr(item, "message", None) or item)


def _failed_line(verdict: Any, prefix: str) -> str:
    """The driver's `<step> failed` line from a Verdict: its forbidden line, else any line that took part."""
    texts: list[str] = []
    forbidden = getattr(verdict, "forbidden", None)
    if forbidden is not None and getattr(forbidden, "line", None) is not None:
        texts.append(_line_text(forbidden.line))
    for attr in ("lines", "captured"):
        value = getattr(verdict, attr, None)
        if isinstance(value, list | tuple):
            texts.extend(_line_text(v) for v in value)
    texts.append(str(getattr(verdict, "message", "") or ""))
    for text in texts:
        for line in text.splitlines():
            if " failed" in line and (not prefix or prefix in line):
                start = line.find(prefix) if prefix and prefix in line else 0
                return line[start:].strip()
    return ""


@dataclass
class Deployment:
    """Everything the steps share while a deploy runs."""

    ctx: RunContext
    guest: Any
    pkg: PackageLike
    target: Any  # config Section of the target
    verify: bool = True
    capture_factory: Callable[[RunContext, Any, str], Any] | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    state: GuestState = field(default_factory=GuestState)
    capture: Any = None
    load: LoadResult | None = None
    reboot_needed: bool = False
    to_push: list[Path] = field(default_factory=list)
    driver: str = "unknown"  # last known driver state on the guest, for interruption messages
    renew: Callable[[], None] | None = None  # renews the run's lease on the guest before each step
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))

    @property
    def dir(self) -> str:
        return _guest_dir(self.ctx, self.target)

    @property
    def name(self) -> str:
        return str(self.target.get("name") or getattr(self.guest, "name", "guest"))


@dataclass(frozen=True)
class Step:
    name: str
    summary: str
    action: Callable[[Deployment], None]
    when: Callable[[Deployment], bool] = lambda d: True
    if_interrupted: str = ""  # what the guest is left with when this step is cut short ("" = the last known state)


F = TypeVar("F", bound=Callable[..., Any])
UNFIT = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError)


def unfit_answer(script: str, detail: str) -> DeployStepFailed:
    return DeployStepFailed(
        f"the guest's answer to {script} is unreadable ({detail}); nothing was decided from it",
        "check the guest's PowerShell and the shipped script (`invoke doctor --target NAME`), then run the task again",
    )


def answer_of(script: str) -> Callable[[F], F]:
    """Parsing `script`'s answer: a value of the wrong type or shape is one DeployStepFailed line, not a traceback."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except UNFIT as exc:
                raise unfit_answer(script, f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'wrong type'}") from None

        return inner  # type: ignore[return-value]

    return wrap


def _object(script: str, raw: Any) -> dict[str, Any] | None:
    """The answer as a JSON object; None only for a dry run's (or a fake's) empty answer."""
    if raw is None or isinstance(raw, dict):
        return raw
    raise unfit_answer(script, f"a {type(raw).__name__}, not a JSON object")
