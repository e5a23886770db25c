"""`invoke doctor`: is everything the wanted tasks need actually here?

Each check yields (name, status, detail, fix). Statuses: ok, missing (needed and
absent: exit 3), warn (works but worth fixing), n/a (not needed on this host or
for these tasks). Checks only read: they run under --dry too, since a report of
what is missing is exactly what a dry run is for.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .core.context import RunContext
from .core.errors import ExitCode, PipelineError
from .core.runner import which

ALL_TASKS = ("build", "package", "sign", "deploy", "verify", "regress", "vm")
MAIN_JOB = ("build", "package", "sign", "deploy")
WINDOWS_TRIPLE = "x86_64-pc-windows-msvc"


@dataclass
class Check:
    name: str
    status: str  # ok | missing | warn | n/a
    detail: str = ""
    fix: str = ""


def _is_windows() -> bool:
    return sys.platform == "win32"


def check_python_deps() -> Iterable[Check]:
    for module, package in (
        ("invoke", "invoke"),
        ("tomlkit", "tomlkit"),
        ("paramiko", "paramiko"),
        ("pypsrp", "pypsrp"),
        ("cryptography", "cryptography"),
        ("asn1crypto", "asn1crypto"),
        ("lief", "lief"),
        ("qemu.qmp", "qemu.qmp"),
    ):
        found = importlib.util.find_spec(module) is not None
        yield Check(f"python: {package}", "ok" if found else "missing", "", "" if found else "python -m pip install -e .")


def _version(ctx: RunContext, argv: list[str]) -> str | None:
    try:
        done = ctx.runner.run(argv, check=False, mutates=False, timeout=30)
    except PipelineError:
        return None
    return done.stdout.strip().splitlines()[0] if done.ok and done.stdout.strip() else None


def check_rust(ctx: RunContext, local_build: bool) -> Iterable[Check]:
    need = "missing" if local_build else "n/a"
    for tool in ("cargo", "rustc"):
        version = _version(ctx, [tool, "--version"]) if which(tool) else None
        if version:
            match = re.search(r"(\d+)\.(\d+)", version)
            too_old = bool(match and (int(match.group(1)), int(match.group(2))) < (1, 85))
            yield Check(tool, "warn" if too_old else "ok", version, "rustup update (wdk-build 0.5.1 needs Rust >= 1.85)" if too_old else "")
        else:
            yield Check(tool, need, "not found", "install Rust with rustup (https://rustup.rs)")
    if not local_build:
        yield Check(f"rust target {WINDOWS_TRIPLE}", "n/a", "builds run on the Windows build host or come from --from")
        return
    done = None
    if which("rustup"):
        try:
            done = ctx.runner.run(["rustup", "target", "list", "--installed"], check=False, mutates=False, timeout=30)
        except PipelineError:
            done = None
    installed = done.stdout.split() if done and done.ok else []
    ok = WINDOWS_TRIPLE in installed
    yield Check(f"rust target {WINDOWS_TRIPLE}", "ok" if ok else "missing", "", "" if ok else f"rustup target add {WINDOWS_TRIPLE}")


def check_llvm(ctx: RunContext, local_build: bool) -> Iterable[Check]:
    import os

    if not local_build:
        yield Check("LLVM/libclang", "n/a", "only the Windows build machine needs it")
        return
    libclang = os.environ.get("LIBCLANG_PATH")
    clang = which("clang")
    if libclang or clang:
        version = _version(ctx, ["clang", "--version"]) if clang else None
        yield Check("LLVM/libclang", "ok", libclang or version or str(clang))
    else:
        yield Check("LLVM/libclang", "missing", "bindgen needs libclang", "winget install -i LLVM.LLVM --version 17.0.6 (or set LIBCLANG_PATH)")


def check_wdk(ctx: RunContext, local_build: bool) -> Iterable[Check]:
    if not local_build:
        yield Check("WDK", "n/a", "not a Windows host: the WDK lives on the build host")
        return
    try:
        wdk = importlib.import_module("driverpipe.image.wdk")
        info = wdk.discover()
    except ModuleNotFoundError:
        yield Check("WDK", "missing", "WDK discovery is not available in this version")
        return
    except PipelineError as exc:
        yield Check("WDK", "missing", exc.message, exc.hint or "install the WDK (or open an eWDK prompt)")
        return
    yield Check("WDK", "ok", f"{getattr(info, 'root', '')} {getattr(info, 'version', '')}".strip())
    tools = getattr(info, "tools", {}) or {}
    for tool in ("stampinf", "inf2cat", "infverif", "signtool"):
        path = tools.get(tool) if isinstance(tools, dict) else None
        yield Check(f"WDK tool {tool}", "ok" if path else "missing", str(path or "not found"), "" if path else "repair the WDK install")


def check_signing(ctx: RunContext) -> Iterable[Check]:
    backend = ctx.config.project.sign.backend
    if _is_windows() and backend in ("auto", "signtool"):
        found = which("signtool")
        yield Check("signtool", "ok" if found else "warn", str(found or "not on PATH (the WDK copy is used if found)"))
        return
    found = which("osslsigncode")
    yield Check(
        "osslsigncode",
        "ok" if found else "missing",
        (_version(ctx, ["osslsigncode", "--version"]) or "").split(",")[0] if found else "not found",
        "" if found else "apt-get install osslsigncode (or brew install osslsigncode)",
    )


def check_build_host(ctx: RunContext) -> Iterable[Check]:
    name = ctx.config.project.build.build_host
    if _is_windows():
        return
    if not name:
        yield Check(
            "Windows build host",
            "missing",
            "none configured: `invoke build` needs one on this host, or --from PATH with a built driver",
            "add [build_hosts.NAME] to the user config and set build.build_host",
        )
        return
    try:
        ctx.config.named("build_hosts", name, "build.build_host")
    except PipelineError as exc:
        yield Check("Windows build host", "missing", exc.message, exc.hint or "")
        return
    yield Check("Windows build host", "ok", name)


def check_config(ctx: RunContext) -> Iterable[Check]:
    cfg = ctx.config
    exists = cfg.user_path.is_file()
    yield Check("project config", "ok", f"{cfg.root / 'pyproject.toml'} [tool.driverpipe]")
    yield Check(
        "user config",
        "ok" if exists else "warn",
        f"{cfg.user_path} ({len(cfg.user.targets)} targets)" if exists else f"{cfg.user_path} does not exist",
        "" if exists else "invoke target-add NAME --host ... --password-env ... (or set DRIVERPIPE_CONFIG)",
    )


def check_wine_target(ctx: RunContext, target: Any) -> Iterable[Check]:
    """A Wine target, without starting Wine: the tools, the prefix, what cannot be checked there."""
    from .targets.wine.host import WineHost
    from .targets.wine.prefix import INSTALL_HINT
    from .targets.wine.target import NOT_APPLICABLE

    for tool in (str(target.wine["wine"]), str(target.wine["wineserver"])):
        found = which(tool)
        yield Check(f"target {target.name}: {tool}", "ok" if found else "missing", str(found or "not found"), "" if found else INSTALL_HINT)
    if not which(str(target.wine["wine"])):
        return
    try:
        status = WineHost(ctx, target).status()
    except PipelineError as exc:
        yield Check(f"target {target.name}: prefix", "missing", exc.message, exc.hint or "")
        return
    if status.state.value == "unknown":
        yield Check(f"target {target.name}: prefix", "missing", status.detail, f"invoke vm.revert --target {target.name}")
    elif status.state.value == "absent":
        yield Check(f"target {target.name}: prefix", "ok", status.detail)
    else:
        yield Check(f"target {target.name}: prefix", "ok", f"{status.state.value}; {status.detail}")
    for what, why in NOT_APPLICABLE.items():
        yield Check(f"target {target.name}: {what}", "n/a", f"not applicable on wine ({why})")
    yield from check_wine_imports(ctx, target)


def check_wine_imports(ctx: RunContext, target: Any) -> Iterable[Check]:
    """The built image's kernel imports that this Wine's ntoskrnl.exe lacks (the load would end its driver host)."""
    from .image.artifact import load_manifest
    from .image.imagecheck import read_facts
    from .targets.wine.imports import missing_exports, ntoskrnl_path

    name = f"target {target.name}: image imports"
    ntoskrnl = ntoskrnl_path(str(target.wine["wine"]))
    if ntoskrnl is None:
        yield Check(name, "n/a", "Wine's ntoskrnl.exe was not found next to the wine executable")
        return
    try:
        image = load_manifest(ctx).artifact
        missing = missing_exports(read_facts(image).imports, ntoskrnl)
    except PipelineError:
        yield Check(name, "n/a", "no build output yet (`invoke build`)")
        return
    if missing:
        yield Check(
            name,
            "warn",
            f"{image.name} imports {len(missing)} routine{'s' if len(missing) > 1 else ''} Wine's ntoskrnl.exe does not export: {', '.join(missing)}",
            "the first call ends the driver under Wine: use routines Wine exports, or deploy to a Windows target",
        )
    else:
        yield Check(name, "ok", f"every ntoskrnl.exe import of {image.name} is exported by {ntoskrnl}")


def check_target(ctx: RunContext, target_name: str) -> Iterable[Check]:
    target = ctx.config.target(target_name)
    from .core.locks import describe, target_lock

    holder = target_lock(ctx, target).probe()
    yield Check(f"target {target.name}: lock", "warn" if holder else "ok", f"in use by {describe(holder)}" if holder else "free on this machine")
    if target.transport == "wine":
        yield from check_wine_target(ctx, target)
        return
    try:
        from .targets.open import open_target as open_guest
    except ModuleNotFoundError:
        yield Check(f"target {target.name}", "missing", "the guest transports are not available in this version")
        return
    try:
        guest = open_guest(ctx, target)
    except PipelineError as exc:
        yield Check(f"target {target.name}: reachable", "missing", exc.message, exc.hint or "")
        return
    try:
        if ctx.dry:
            yield Check(f"target {target.name}: state", "n/a", "--dry: the guest is not contacted")
            return
        from .targets.operations import read_guest_state

        state = read_guest_state(guest, ctx)
        vm_name = getattr(guest, "vm_name", "")  # PowerShell Direct
        where = f"powershell-direct://{vm_name}" if vm_name else f"{target.transport}://{target.host or 'local'}"
        yield Check(f"target {target.name}: reachable", "ok", where)
        from .targets.leases import lease_for

        lease = lease_for(ctx, target, guest)
        leased = lease.query() if lease is not None else None
        if lease is not None:
            yield Check(f"target {target.name}: lease", "warn" if leased else "ok", f"leased by {describe(leased)}" if leased else "not leased")
        yield from guest_state_checks(state, target.test_machine)
        yield from driver_store_checks(ctx, guest)
    except PipelineError as exc:
        yield Check(f"target {target.name}: state", "missing", exc.message, exc.hint or "")
    finally:
        guest.close()


def guest_state_checks(state: Any, test_machine: bool) -> Iterable[Check]:
    """Turn a deploy.GuestState into checks; attribute names follow deploy.GuestState."""
    prep = "invoke deploy prepares it (test_machine = true)" if test_machine else "set test_machine = true for this target, or fix by hand"

    def get(name: str) -> Any:
        return getattr(state, name, None)

    def row(name: str, good: bool | None, detail: str, fix: str) -> Check:
        if good is None:
            return Check(name, "warn", detail or "unknown", fix)
        return Check(name, "ok" if good else "missing", detail, "" if good else fix)

    yield row("guest: administrator", get("elevated"), "", "use an administrator account (and LocalAccountTokenFilterPolicy=1 for local accounts)")
    secure_boot = get("secure_boot")
    yield row(
        "guest: Secure Boot off",
        None if secure_boot is None else not secure_boot,
        "BIOS firmware" if secure_boot is None else ("on" if secure_boot else "off"),
        "Hyper-V: Set-VMFirmware -VMName VM -EnableSecureBoot Off; QEMU: non-secure OVMF",
    )
    hvci = get("hvci")
    yield row("guest: HVCI off", None if hvci is None else not hvci, "", "turn off Memory integrity (Core isolation) and reboot")
    yield row("guest: TESTSIGNING on", get("testsigning"), "", f"bcdedit /set testsigning on + reboot ({prep})")
    yield row("guest: Debug Print Filter", get("debug_filter_ok"), str(get("debug_filter") or ""), f"DEFAULT=0xF under Debug Print Filter + reboot ({prep})")
    yield row("guest: DebugView present", get("debugview_present"), "", "set debugview.source in pyproject; deploy installs it")


def driver_store_checks(ctx: RunContext, guest: Any) -> Iterable[Check]:
    """This driver's packages in the guest's driver store (`pnputil /enum-drivers`) signed by anything but the test certificate."""
    try:
        answer = guest.run_script("Get-DriverStore.ps1", {}, timeout=float(ctx.config.project.deploy.script_timeout))
    except PipelineError as exc:
        yield Check("guest: driver store", "warn", f"not listed: {exc.message}")
        return
    raw = answer.get("driver_packages") if isinstance(answer, dict) else None
    if not isinstance(raw, dict) or raw.get("rc") != 0:
        return  # an older pnputil without /enum-drivers, or a dry/fake state
    from .image.package import package_name
    from .parse.text import native_text
    from .parse.tools import foreign_signed, parse_pnputil_enum
    from .signing.certs import common_name

    try:
        inf = f"{package_name(ctx)}.inf"
    except PipelineError:
        return  # no crate here: nothing to name
    signer = common_name(str(ctx.config.project.sign.cert_subject))
    others = foreign_signed(parse_pnputil_enum(native_text(raw)), inf, signer)
    detail = ", ".join(f"{p.published} signed by {p.signer or 'nobody Windows could name'}" for p in others)
    yield Check(
        f"guest: driver store signer of {inf}",
        "warn" if others else "ok",
        detail or f"every package signed by {signer}",
        f"pnputil /delete-driver <oemNN.inf> /uninstall on the guest, then `invoke deploy` (expected signer: {signer})" if others else "",
    )


def _render(checks: list[Check]) -> str:
    widths = [max(len(c.name) for c in checks), 7, max(len(c.detail) for c in checks)]
    widths[2] = min(widths[2], 60)
    lines = [f"{'check'.ljust(widths[0])}  {'status'.ljust(widths[1])}  {'detail'.ljust(widths[2])}  how to fix"]
    lines.append("-" * len(lines[0]))
    for c in checks:
        detail = c.detail
        lines.append(f"{c.name.ljust(widths[0])}  {c.status.ljust(widths[1])}  {detail.ljust(widths[2])}  {c.fix}".rstrip())
    return "\n".join(lines)


def collect(ctx: RunContext, *, target: str | None, tasks: list[str]) -> list[Check]:
    wanted = set(tasks or MAIN_JOB)
    unknown = wanted - set(ALL_TASKS)
    if unknown:
        from .core.errors import ConfigError

        raise ConfigError(f"doctor --tasks: unknown task(s) {', '.join(sorted(unknown))}", f"choose from {', '.join(ALL_TASKS)}")
    from .image.build import choose_model

    model, why = choose_model(ctx)
    wdm = "build" in wanted and model == "wdm"
    local_build = "build" in wanted and model == "kmdf" and _is_windows()
    from .core.config import BUILTIN_WINE_TARGET

    sections: list[Callable[[], Iterable[Check]]] = [
        check_python_deps,
        lambda: check_config(ctx),
        lambda: [Check("driver model", "ok", f"{model}: {why}")] if "build" in wanted else [],
        lambda: check_rust(ctx, local_build or wdm),
    ]
    if not wdm:
        sections += [lambda: check_llvm(ctx, local_build), lambda: check_wdk(ctx, local_build)]
    if "build" in wanted and model == "kmdf" and not _is_windows():
        sections.append(lambda: check_build_host(ctx))
    if wanted & {"sign", "package"}:
        sections.append(lambda: check_signing(ctx))
    default = ctx.config.target_name(None) or (BUILTIN_WINE_TARGET if not ctx.config.user.targets and sys.platform.startswith("linux") else "")
    if target or (wanted & {"deploy", "verify", "regress"} and default):
        sections.append(lambda: check_target(ctx, target or default))
    checks: list[Check] = []
    for section in sections:
        checks.extend(section())
    return checks


def run(ctx: RunContext, *, target: str | None, tasks: list[str]) -> int:
    checks = collect(ctx, target=target, tasks=tasks)
    ctx.say(_render(checks))
    missing = [c for c in checks if c.status == "missing"]
    if missing:
        ctx.say(f"\n{len(missing)} needed item(s) missing: {', '.join(c.name for c in missing)}")
        return ExitCode.ENVIRONMENT
    ctx.say("\neverything the selected tasks need is here")
    return ExitCode.OK
