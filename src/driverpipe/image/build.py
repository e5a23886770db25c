"""`invoke build`: the driver crate -> a driver image (.dll from cargo, or --from a built one).

Two driver models from the same sources (driver/src), four ways, one result (a
manifest the package step reads):
- kmdf, Windows with the WDK: `cargo build --release --locked --message-format=json-render-diagnostics`
  run here with wdk-build; the cdylib is found in cargo's own compiler-artifact messages.
- kmdf, other hosts: the same build on a configured Windows build host (buildhost.py).
- wdm, any host: cargo in a crate derived from the driver's own Cargo.toml
  (wdm_crate.py: its wdk-* dependencies replaced by the bindings generated from
  mingw-w64's DDK headers), linked by the toolchain's rust-lld; no WDK.
- `--from PATH`: an already-built .dll/.sys (e.g. a CI artifact), on any host.

After every build the image is checked (imagecheck.py). The manifest
`<crate>/target/<profile>/driverpipe-build.json` records the model, the
artifact, optional .pdb/.map, their SHA-256, the source and the features.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..core.context import RunContext
from ..core.errors import ConfigError, EnvironmentProblem, PipelineError, StepFailed
from ..core.files import copy_atomic, sha256_file, write_atomic
from . import imagecheck, inputs, wdk
from .artifact import (
    CARGO_LOG_NAME,
    BuildResult,
    _check_image,
    _record,
    _show_errors,
    _write_manifest,
    cargo_argv,
    check_pe,
    classify_failure,
    crate_dir,
    error_blocks,
    features,
    find_map,
    inx_path,
    load_manifest,
    manifest_path,
    parse_cargo_output,
    profile_dir,
)
from .preflight import CrateInfo
from .wdm_crate import KMDF_HINT

MAX_IMAGE_BYTES = 64 << 20  # drivers are KBs to a few MBs: refuse a "driver" of gigabytes before copying it


def choose_model(ctx: RunContext) -> tuple[str, str]:
    """(model, why): the route `invoke build` takes; `invoke doctor` prints the same."""
    wanted = str(ctx.config.project.build.model)
    host = str(ctx.config.project.build.build_host or "")
    if wanted == "wdm":
        return "wdm", "build.model = wdm: rust-lld here, no WDK"
    if wanted == "kmdf":
        return "kmdf", "build.model = kmdf: cargo + wdk-build " + ("here" if wdk.host_is_windows() else f"on build host {host or '(none configured)'}")
    if wdk.host_is_windows():
        return "kmdf", "Windows host: cargo + wdk-build (the article's)"
    if host:
        return "kmdf", f"build host {host}: cargo + wdk-build there"
    return "wdm", "no Windows, no build host: rust-lld here, no WDK"


def run(ctx: RunContext, *, from_path: Path | None) -> BuildResult:
    """Task entry: build (or take --from), check the image, record the manifest."""
    from . import preflight

    crate = crate_dir(ctx)
    if from_path is not None:
        info = preflight.read_crate(crate, stop=ctx.config.root)
        return _from_artifact(ctx, info, from_path)
    model, why = choose_model(ctx)
    ctx.say(f"driver model {model}: {why}")
    if model == "wdm":
        info = preflight.read_crate(crate, stop=ctx.config.root)
        return _wdm_cargo(ctx, info)
    if wdk.host_is_windows():
        cargo_home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
        info = _preflight(ctx, preflight.inspect(crate, inx_path(ctx), env=os.environ, cargo_home=cargo_home))
        return _local_cargo(ctx, info)
    host = str(ctx.config.project.build.build_host or "")
    if not host:
        raise EnvironmentProblem(
            "build.model = kmdf, but cargo + wdk-build cannot build a KMDF driver on this host (it needs Windows and the WDK)",
            "configure a Windows build host ([build_hosts.NAME] in the user config + build.build_host = NAME, or --build-host NAME), "
            "or build the WDM image here (--model wdm), or pass --from PATH with an already-built .dll/.sys",
        )
    section = ctx.config.named("build_hosts", host, "build.build_host")
    # The sources travel without the local environment: only the shipped files count.
    info = _preflight(ctx, preflight.inspect(crate, inx_path(ctx), env={}, stop=ctx.config.root))
    from . import buildhost

    return buildhost.run(ctx, info, section)


def _preflight(ctx: RunContext, report: Any) -> CrateInfo:
    problems = report.problems
    if problems:
        for extra in problems[1:]:
            ctx.say(f"also: {extra.message}" + (f" (fix: {extra.hint})" if extra.hint else ""))
        first = problems[0]
        if len(problems) > 1:
            first.message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''} listed above)"
        raise first
    assert report.info is not None
    return report.info  # type: ignore[no-any-return]


def check_from_path(ctx: RunContext, source: Path) -> Path:
    """`--from PATH` checked (read only) before anything is locked or written: the absolute path."""
    source = Path(os.path.abspath(source.expanduser()))  # relative to where the task was started
    if not source.exists():
        raise ConfigError(f"--from {source}: no such file", "pass the path of a built .dll or .sys")
    if not source.is_file():
        raise ConfigError(f"--from {source}: not a regular file (a directory or a device)", "pass the path of a built .dll or .sys")
    size = source.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ConfigError(f"--from {source}: {size >> 20} MiB is not a driver image (limit {MAX_IMAGE_BYTES >> 20} MiB)", "pass the driver's .dll/.sys")
    if source.suffix.lower() not in (".dll", ".sys"):
        raise ConfigError(f"--from {source}: expected a .dll or .sys", "pass the driver image, not the package folder or an archive")
    check_pe(source, str(ctx.config.project.build.arch), what="--from")
    if not ctx.dry:
        _check_image(ctx, source, imagecheck.read_facts(source).model_guess, given=True)
    return source


def _from_artifact(ctx: RunContext, info: CrateInfo, source: Path) -> BuildResult:
    source = check_from_path(ctx, source)
    dest_dir = profile_dir(ctx) / "from"
    extras = {
        "pdb": source.with_suffix(".pdb"),
        "map": next((p for p in (source.with_suffix(".map"), source.parent / "deps" / f"{source.stem}.map") if p.is_file()), None),
    }
    if ctx.dry:
        ctx.say(f"[dry] would copy {source} (and its .pdb/.map if present) to {dest_dir} and write {manifest_path(ctx)}")
        return BuildResult(
            artifact=dest_dir / source.name, sha256={}, source="from", features=features(ctx), profile=str(ctx.config.project.build.profile), dry=True
        )
    model = imagecheck.read_facts(source).model_guess
    facts = _check_image(ctx, source, model, given=True)
    # A private copy: the manifest stays valid when the CI download folder is cleaned up.
    artifact = dest_dir / source.name
    copy_atomic(source, artifact)
    result = BuildResult(
        artifact=artifact,
        sha256={"artifact": sha256_file(artifact)},
        source="from",
        features=features(ctx),
        profile=str(ctx.config.project.build.profile),
        model=model,
        image=facts.summary(),
    )
    for key, extra in extras.items():
        if extra is not None and extra.is_file():
            dest = dest_dir / f"{source.stem}{extra.suffix}"
            copy_atomic(extra, dest)
            setattr(result, key, dest)
            result.sha256[key] = sha256_file(dest)
    return _write_manifest(ctx, result)


def _local_cargo(ctx: RunContext, info: CrateInfo) -> BuildResult:
    profile = str(ctx.config.project.build.profile)
    feats = features(ctx)
    argv = cargo_argv(profile, feats)
    ctx.step(f"cargo build ({profile}{', features ' + ','.join(feats) if feats else ''}) in {info.dir}")
    done = ctx.runner.run(argv, cwd=info.dir, check=False, what="cargo build")
    if done.dry:
        ctx.say(f"[dry] would record the cdylib from cargo's compiler-artifact message in {manifest_path(ctx)}")
        return BuildResult(artifact=profile_dir(ctx) / f"{info.lib_name}.dll", sha256={}, source="cargo", features=feats, profile=profile, dry=True)
    log = profile_dir(ctx) / CARGO_LOG_NAME
    write_atomic(log, done.stderr.encode("utf-8"))
    outcome = parse_cargo_output(done.stdout, info.lib_name)
    if done.returncode != 0 or outcome.success is False or outcome.dll is None:
        errors = outcome.errors or error_blocks(done.stderr)
        _show_errors(ctx, errors)
        if done.returncode == 0 and not errors:
            raise StepFailed(f"cargo build succeeded but reported no cdylib named {info.lib_name}", '[lib] crate-type = ["cdylib"] in Cargo.toml')
        raise classify_failure(done.stderr + "\n" + "\n".join(outcome.errors), errors, log=log)
    return _record(ctx, "cargo", outcome.dll, outcome.pdb, find_map(outcome.dll), feats)


def _wdm_cargo(ctx: RunContext, info: CrateInfo) -> BuildResult:
    """The WDM route: cargo in the crate derived from the driver's Cargo.toml, linked by rust-lld."""
    from . import wdm_crate

    profile = str(ctx.config.project.build.profile)
    feats = features(ctx)
    if info.driver_type == "KMDF":
        ctx.say("driver-type KMDF: built here as a WDM image (entry DriverEntry), which holds while the driver makes no WDF call")
    wdm = wdm_crate.out_dir(info.dir)
    if not ctx.dry:
        wdm = wdm_crate.derive(info.dir, info.workspace_root, info.driver_type)
    # No --locked: the derived crate's lock starts as the driver's own and drops the replaced wdk crates.
    argv = [a for a in cargo_argv(profile, feats) if a != "--locked"]
    triple = str(ctx.config.project.build.target_triple)
    # The derived crate (under target/, which the digest skips) follows from the manifests; what it
    # links against is the driver's tree, its path dependencies and the generated kernel crates.
    sources = None if ctx.dry else inputs.digest(ctx, [info.workspace_root, info.dir, *wdm_crate.path_dependencies(wdm)], [profile, triple, "wdm", *feats])
    recorded = inputs.trusted(ctx, sources, model="wdm", feats=feats) if sources else None
    if recorded is not None:
        return recorded
    ctx.step(f"cargo build ({profile}, WDM image via rust-lld{', features ' + ','.join(feats) if feats else ''}) in {wdm}")
    warm = None if ctx.dry else imagecheck.prewarm()
    try:
        done = ctx.runner.run(argv, cwd=wdm, check=False, what="cargo build")
    finally:
        if warm is not None:
            warm.join()
    if done.dry:
        ctx.say(f"[dry] would derive {wdm / 'Cargo.toml'} from {info.manifest}, check the linked image and record it in {manifest_path(ctx)}")
        artifact = wdm / "target" / triple / profile / f"{info.lib_name}.dll"
        return BuildResult(artifact=artifact, sha256={}, source="rust-lld", features=feats, profile=profile, dry=True, model="wdm")
    log = profile_dir(ctx) / CARGO_LOG_NAME
    write_atomic(log, done.stderr.encode("utf-8"))
    outcome = parse_cargo_output(done.stdout, info.lib_name)
    if done.returncode != 0 or outcome.success is False or outcome.dll is None:
        errors = outcome.errors or error_blocks(done.stderr)
        text = done.stderr + "\n" + "\n".join(outcome.errors)
        if not target_std_installed(triple):
            raise EnvironmentProblem(f"the Rust standard library for {triple} is not installed", f"rustup target add {triple}")
        known = classify_wdm_failure(text, triple, log=log)
        if known is not None:
            raise known
        _show_errors(ctx, errors)
        if done.returncode == 0 and not errors:
            raise StepFailed(f"cargo build succeeded but reported no cdylib named {info.lib_name}", f'[lib] crate-type = ["cdylib"] in {info.manifest}')
        raise classify_failure(text, errors, log=log)
    result = _unchanged(ctx, outcome.dll, feats, "wdm") or _record(ctx, "rust-lld", outcome.dll, outcome.pdb, None, feats, model="wdm")
    if sources:
        inputs.remember(ctx, sources)
    return result


def _unchanged(ctx: RunContext, dll: Path, feats: list[str], model: str) -> BuildResult | None:
    """The recorded build when cargo relinked nothing: same image bytes, features and model (already checked)."""
    try:
        recorded = load_manifest(ctx)
    except PipelineError:
        return None
    if recorded.model != model or recorded.features != feats or recorded.artifact != dll or not recorded.image:
        return None
    ctx.say(f"unchanged: {dll.name} ({model}) sha256 {recorded.sha256['artifact'][:16]}…, already checked and recorded")
    return recorded


def target_std_installed(triple: str) -> bool:
    """True when rustc's sysroot has the target's prebuilt core/alloc (rustup target add)."""
    import subprocess

    try:
        done = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        raise EnvironmentProblem("rustc was not found", "install Rust with rustup (https://rustup.rs)") from None
    sysroot = Path(done.stdout.strip())
    return done.returncode == 0 and any((sysroot / "lib" / "rustlib" / triple / "lib").glob("libcore-*.rlib"))


HEADER_SET = "mingw-w64's DDK headers (ddk/wdm.h, ddk/ntddk.h, ddk/ntifs.h)"
KERNEL_ITEM = (
    r"unresolved imports? `(?:wdk_sys|wdk)::(?:\w+::)*(\w+)`",
    r"no `(\w+)` in `(?:wdk_sys|wdk|ntddk|types|constants)(?:::\w+)*`",
    r"cannot find \w+(?: or \w+)? `(\w+)` in (?:module|crate) `(?:wdk_sys|wdk|ntddk)(?:::\w+)*`",
)


def _missing_kernel_item(text: str) -> str | None:
    """The wdk/wdk-sys item rustc could not find, or None."""
    for pattern in KERNEL_ITEM:
        found = re.search(pattern, text)
        if found:
            return found.group(1)
    return None


def missing_target_std(text: str, triple: str) -> EnvironmentProblem | None:
    """cargo's words for a target whose prebuilt standard library rustup has not installed."""
    if re.search(r"can't find crate for `(core|compiler_builtins)`", text) or "target may not be installed" in text:
        return EnvironmentProblem(f"the Rust standard library for {triple} is not installed", f"rustup target add {triple}")
    return None


def classify_wdm_failure(text: str, triple: str, *, log: Path | None = None) -> PipelineError | None:
    """rust-lld and missing-target failures of the WDM route, one line each (None: not one of these)."""
    see = f" (full output: {log})" if log else ""
    missing_std = missing_target_std(text, triple)
    if missing_std is not None:
        return missing_std
    if re.search(r"`wdk_sys::wdf\b|in `wdf`|`wdf` in `wdk_sys`|`wdk_macros`|call_unsafe_wdf_function_binding", text):
        return ConfigError(f"the driver uses KMDF (WDF): KMDF needs Windows and the WDK, and Wine has no WDF{see}", KMDF_HINT)
    missing = _missing_kernel_item(text)
    if missing:
        return StepFailed(
            f"{missing} is not declared by {HEADER_SET}, which the Linux route's wdk-sys is generated from{see}",
            "use a routine those headers declare (and Wine's ntoskrnl exports: `invoke doctor`), or build on Windows with the WDK",
        )
    undefined = re.findall(r"undefined symbol: ([^\s]+)", text)
    if undefined:
        names = sorted(set(undefined))
        return StepFailed(
            f"rust-lld: undefined symbol{'s' if len(names) > 1 else ''} {', '.join(names[:5])}{see}",
            "a C runtime or compiler helper the kernel does not export: stop using it (or declare it raw-dylib from ntoskrnl.exe if ntoskrnl exports it)",
        )
    if re.search(r"linker `rust-lld` not found|could not exec the linker `rust-lld`", text):
        return EnvironmentProblem("rust-lld, the toolchain's linker, was not found", "use a rustup toolchain (rustup ships rust-lld) or reinstall it")
    return None
