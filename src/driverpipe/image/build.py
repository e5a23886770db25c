"""`invoke build`: the driver crate -> a driver image (.dll from cargo, or --from a built one).

Two driver models from the same sources (driver/src), four ways, one result (a
manifest the package step reads):
- kmdf, Windows with the WDK: `cargo build --release --locked --message-format=json-render-diagnostics`
  run here with wdk-build; the cdylib is found in cargo's own compiler-artifact messages.
- kmdf, other hosts: the same build on a configured Windows build host (buildhost.py).
- wdm, any host: the same cargo command in the WDM image crate (driver/wdm), linked
  by the toolchain's rust-lld against the project's kernel bindings; no WDK.
- `--from PATH`: an already-built .dll/.sys (e.g. a CI artifact), on any host.

After every build the image is checked (imagecheck.py). The manifest
`<crate>/target/<profile>/driverpipe-build.json` records the model, the
artifact, optional .pdb/.map, their SHA-256, the source and the features.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.context import RunContext
from ..core.errors import CheckFailed, ConfigError, EnvironmentProblem, PipelineError, StepFailed
from ..core.files import copy_atomic, sha256_file, write_atomic
from . import imagecheck, wdk
from .preflight import CrateInfo

MANIFEST_NAME = "driverpipe-build.json"
CARGO_LOG_NAME = "driverpipe-cargo-stderr.log"
FEATURE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_+./-]*$")
MACHINES = {"amd64": 0x8664, "arm64": 0xAA64}
SUBSYSTEMS = {1: "NATIVE", 2: "WINDOWS_GUI", 3: "WINDOWS_CUI"}
ERROR_LINES_SHOWN = 40
MAX_IMAGE_BYTES = 64 << 20  # drivers are KBs to a few MBs: refuse a "driver" of gigabytes before copying it


@dataclass
class BuildResult:
    artifact: Path  # the .dll (cargo) or .sys/.dll (--from)
    sha256: dict[str, str]  # "artifact" / "pdb" / "map" -> hex digest
    source: str  # "cargo" | "from" | "build-host:<name>"
    features: list[str] = field(default_factory=list)
    profile: str = "release"
    pdb: Path | None = None
    map: Path | None = None
    timestamp: str = ""
    manifest: Path | None = None
    dry: bool = False
    model: str = "kmdf"  # "kmdf" (wdk-build, KMDF stub) | "wdm" (rust-lld, entry DriverEntry)
    image: dict[str, Any] = field(default_factory=dict)  # imagecheck summary

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "artifact": str(self.artifact),
            "pdb": str(self.pdb) if self.pdb else None,
            "map": str(self.map) if self.map else None,
            "sha256": self.sha256,
            "source": self.source,
            "features": self.features,
            "profile": self.profile,
            "timestamp": self.timestamp,
            "model": self.model,
            "image": self.image,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], manifest: Path) -> BuildResult:
        return cls(
            artifact=Path(data["artifact"]),
            sha256=dict(data["sha256"]),
            source=str(data["source"]),
            features=list(data.get("features") or []),
            profile=str(data.get("profile") or "release"),
            pdb=Path(data["pdb"]) if data.get("pdb") else None,
            map=Path(data["map"]) if data.get("map") else None,
            timestamp=str(data.get("timestamp") or ""),
            manifest=manifest,
            model=str(data.get("model") or "kmdf"),
            image=dict(data.get("image") or {}),
        )


# ----------------------------------------------------------------------------- helpers


def crate_dir(ctx: RunContext) -> Path:
    return ctx.config.path(ctx.config.project.driver_crate)


def wdm_dir(ctx: RunContext) -> Path:
    return ctx.config.path(ctx.config.project.wdm_crate)


def inx_path(ctx: RunContext) -> Path:
    return ctx.config.path(ctx.config.project.inx)


def profile_dir(ctx: RunContext) -> Path:
    """<crate>/target/<profile>: where our manifest and the package live (cargo's default layout)."""
    return crate_dir(ctx) / "target" / str(ctx.config.project.build.profile)


def manifest_path(ctx: RunContext) -> Path:
    return profile_dir(ctx) / MANIFEST_NAME


def features(ctx: RunContext) -> list[str]:
    wanted = [str(f) for f in ctx.config.project.build.features]
    for feature in wanted:
        if not FEATURE_RE.match(feature):
            raise ConfigError(f"build.features: {feature!r} is not a cargo feature name", "use names like fault-injection")
    return wanted


def cargo_argv(profile: str, feature_list: Iterable[str]) -> list[str]:
    """The cargo command line (same locally and on a build host)."""
    argv = ["cargo", "build"]
    if profile == "release":
        argv.append("--release")
    argv += ["--locked", "--message-format=json-render-diagnostics"]
    joined = ",".join(feature_list)
    if joined:
        argv += ["--features", joined]
    return argv


def load_manifest(ctx: RunContext) -> BuildResult:
    """The last build's result; verifies the recorded artifacts are unchanged."""
    path = manifest_path(ctx)
    if not path.is_file():
        raise EnvironmentProblem(
            f"no build output for profile {ctx.config.project.build.profile} ({path} is missing)",
            "run `invoke build` (or `invoke build --from PATH` with a built .dll/.sys)",
        )
    try:
        result = BuildResult.from_json(json.loads(path.read_text(encoding="utf-8")), path)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable build manifest ({exc.__class__.__name__})", "re-run `invoke build`") from None
    for key, file in (("artifact", result.artifact), ("pdb", result.pdb), ("map", result.map)):
        if file is None:
            continue
        if not file.is_file():
            raise EnvironmentProblem(f"{file} recorded by the last build is gone", "re-run `invoke build`")
        if sha256_file(file) != result.sha256.get(key):
            raise EnvironmentProblem(f"{file} changed since `invoke build` recorded it", "re-run `invoke build`")
    return result


def _write_manifest(ctx: RunContext, result: BuildResult) -> BuildResult:
    result.timestamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    path = manifest_path(ctx)
    write_atomic(path, (json.dumps(result.to_json(), indent=2) + "\n").encode("utf-8"))
    result.manifest = path
    ctx.say(f"built {result.artifact.name} ({result.model}, {result.source}) sha256 {result.sha256['artifact'][:16]}…; recorded in {path}")
    return result


# ----------------------------------------------------------------------------- PE check


def check_pe(path: Path, arch: str, *, what: str) -> None:
    """Fail clearly unless `path` is a kernel-mode PE image for `arch` (subsystem NATIVE)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path} ({exc.strerror})") from None
    if len(head) < 0x40 or head[:2] != b"MZ":
        raise ConfigError(f"{what}: {path} is not a PE image (.dll/.sys)", "pass the driver built by cargo (<crate>.dll) or its .sys")
    (pe_offset,) = struct.unpack_from("<I", head, 0x3C)
    if pe_offset + 24 + 70 > len(head) or head[pe_offset : pe_offset + 4] != b"PE\0\0":
        raise ConfigError(f"{what}: {path} has no valid PE header", "pass the driver built by cargo (<crate>.dll) or its .sys")
    (machine,) = struct.unpack_from("<H", head, pe_offset + 4)
    (subsystem,) = struct.unpack_from("<H", head, pe_offset + 24 + 68)
    want = MACHINES.get(arch)
    if want is not None and machine != want:
        raise ConfigError(f"{what}: {path} is built for machine 0x{machine:04x}, not {arch}", f"build for {arch} (or set build.arch)")
    if subsystem != 1:
        raise ConfigError(
            f"{what}: {path} has subsystem {SUBSYSTEMS.get(subsystem, subsystem)}, not NATIVE: it links but won't load as a driver",
            "build with [package.metadata.wdk.driver-model] and wdk-build's build.rs (they set /DRIVER /SUBSYSTEM:NATIVE)",
        )


# ----------------------------------------------------------------------------- cargo output


@dataclass
class CargoOutcome:
    dll: Path | None = None
    pdb: Path | None = None
    errors: list[str] = field(default_factory=list)  # rendered compiler errors (when cargo put them in JSON)
    success: bool | None = None  # build-finished


def parse_cargo_output(stdout: str, lib_name: str) -> CargoOutcome:
    """Read cargo's JSON messages: the cdylib's files, rendered errors, the final verdict."""
    out = CargoOutcome()
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        reason = msg.get("reason")
        if reason == "compiler-artifact":
            target = msg.get("target") or {}
            if "cdylib" not in (target.get("crate_types") or []) or str(target.get("name", "")).replace("-", "_") != lib_name:
                continue
            for name in msg.get("filenames") or []:
                low = name.lower()
                if low.endswith(".dll"):
                    out.dll = Path(name)
                elif low.endswith(".pdb"):
                    out.pdb = Path(name)
        elif reason == "compiler-message":
            message = msg.get("message") or {}
            if message.get("level") in ("error", "error: internal compiler error") and message.get("rendered"):
                out.errors.append(str(message["rendered"]).rstrip())
        elif reason == "build-finished":
            out.success = bool(msg.get("success"))
    return out


def find_map(dll: Path) -> Path | None:
    """wdk-build links with /MAP; cargo does not report it: it lands in deps/ (cargo-wdk reads it there)."""
    for candidate in (dll.parent / "deps" / f"{dll.stem}.map", dll.with_suffix(".map")):
        if candidate.is_file():
            return candidate
    return None


def error_blocks(text: str) -> list[str]:
    """Rendered `error...` blocks from cargo's stderr (warnings and progress lines dropped)."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if re.match(r"^error(\[E\d+\])?:", line):
            if current:
                blocks.append("\n".join(current).rstrip())
            current = [line]
        elif re.match(r"^(warning|\s*Compiling|\s*Finished|\s*Building)\b", line):
            if current:
                blocks.append("\n".join(current).rstrip())
            current = None
        elif current is not None:
            current.append(line)
    if current:
        blocks.append("\n".join(current).rstrip())
    return blocks


def _first_line(block: str) -> str:
    return block.splitlines()[0].strip() if block.strip() else ""


def classify_failure(text: str, errors: list[str], *, where: str = "cargo build", log: Path | None = None) -> PipelineError:
    """Known failures (note 01, wdk-build's ConfigError texts) -> one line with the fix."""
    see = f" (full output: {log})" if log else ""
    if "Unable to find libclang" in text or ("couldn't find any valid shared libraries" in text and "clang" in text):
        return EnvironmentProblem(
            f"{where}: bindgen cannot find libclang (needed by wdk-sys)",
            "install LLVM 17.0.6 (winget install -i LLVM.LLVM --version 17.0.6) and set LIBCLANG_PATH to its bin folder",
        )
    if "WdkContentRootDetectionError" in text or "WDKContentRoot should be able to be detected" in text:
        return EnvironmentProblem(
            f"{where}: wdk-build cannot find the WDK (WDKContentRoot not detected)",
            "install the WDK (winget install Microsoft.WindowsWDK.10.0.26100) or build from an eWDK prompt; `invoke doctor` shows what was found",
        )
    if re.search(r"cannot find directory: .*(Windows Kits|Include|Lib|km|wdf)", text, re.I) or "Windows SDK Directory in" in text:
        match = re.search(r"cannot find directory: ([^\r\n]+)", text)
        return EnvironmentProblem(
            f"{where}: the WDK is incomplete: cannot find {match.group(1).strip() if match else 'a WDK directory'}",
            "install the WDK matching the Windows SDK version (or set Version_Number); `invoke doctor` shows the kit found",
        )
    if "StaticCrtNotEnabled" in text or "C runtime is not properly configured to be statically linked" in text:
        return ConfigError(
            f"{where}: the C runtime is not statically linked (wdk-build: StaticCrtNotEnabled)",
            'add to <crate>/.cargo/config.toml: [build] rustflags = ["-C", "target-feature=+crt-static"]',
        )
    if "no WDK configuration metadata is detected" in text:
        return ConfigError(f"{where}: no WDK metadata in Cargo.toml (wdk-build)", 'add [package.metadata.wdk.driver-model] driver-type = "KMDF" ...')
    if "failed to deserialize metadata::Wdk" in text:
        return ConfigError(
            f"{where}: wdk-build rejects [package.metadata.wdk.driver-model]", "use only driver-type, kmdf-version-major, target-kmdf-version-minor"
        )
    if "--locked was passed" in text or ("lock file" in text and "needs to be updated" in text):
        return ConfigError(f"{where}: Cargo.lock is out of date with Cargo.toml (builds use --locked)", "run `cargo update -w` and commit Cargo.lock")
    if re.search(r"linker `link(\.exe)?` not found", text):
        return EnvironmentProblem(f"{where}: the MSVC linker link.exe was not found", "install Visual Studio Build Tools with 'Desktop development with C++'")
    if "LNK1169" in text or "LNK2005" in text:
        sym = re.search(r"LNK2005:\s*(\S+)", text)
        return StepFailed(
            f"{where}: link failed: symbol defined twice{f' ({sym.group(1)})' if sym else ''} (LNK2005/LNK1169){see}",
            "a second #[panic_handler]/#[global_allocator] or a std-using dependency: keep wdk-panic/wdk-alloc as the only ones, stay #![no_std]",
        )
    if "LNK2019" in text or "LNK1120" in text or "LNK2001" in text:
        sym = re.search(r"LNK20(?:19|01): unresolved external symbol (\S+)", text)
        return StepFailed(
            f"{where}: link failed: unresolved external symbol{f' {sym.group(1)}' if sym else 's'} (LNK2019/LNK1120){see}",
            "the WDK libraries don't provide it: stay #![no_std] without CRT/std calls, keep +crt-static, check the KMDF version in Cargo.toml",
        )
    compile_errors = [e for e in errors if not _first_line(e).startswith("error: could not compile")]
    if compile_errors:
        count = len(compile_errors)
        return StepFailed(
            f"{where}: {count} compiler error{'s' if count != 1 else ''}; first: {_first_line(compile_errors[0])}{see}",
            "fix the errors shown above",
        )
    tail = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    return StepFailed(f"{where} failed{': ' + tail if tail else ''}{see}", "read the cargo output above")


# ----------------------------------------------------------------------------- flows


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
    """The WDM route: the same cargo command in driver/wdm, linked by rust-lld."""
    profile = str(ctx.config.project.build.profile)
    feats = features(ctx)
    wdm = wdm_dir(ctx)
    _wdm_preflight(ctx, wdm, info)
    argv = cargo_argv(profile, feats)
    ctx.step(f"cargo build ({profile}, WDM image via rust-lld{', features ' + ','.join(feats) if feats else ''}) in {wdm}")
    done = ctx.runner.run(argv, cwd=wdm, check=False, what="cargo build")
    triple = str(ctx.config.project.build.target_triple)
    if done.dry:
        ctx.say(f"[dry] would check the linked image and record it in {manifest_path(ctx)}")
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
            raise StepFailed(f"cargo build succeeded but reported no cdylib named {info.lib_name}", f'[lib] crate-type = ["cdylib"] in {wdm / "Cargo.toml"}')
        raise classify_failure(text, errors, log=log)
    unchanged = _unchanged(ctx, outcome.dll, feats, "wdm")
    if unchanged is not None:
        return unchanged
    return _record(ctx, "rust-lld", outcome.dll, outcome.pdb, None, feats, model="wdm")


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


def _wdm_preflight(ctx: RunContext, wdm: Path, info: CrateInfo) -> None:
    """The WDM crate exists, builds the driver's own lib.rs under the same artifact name, and the target std is installed."""
    manifest = wdm / "Cargo.toml"
    if not manifest.is_file():
        raise ConfigError(f"wdm_crate: {manifest} is missing", "restore driver/wdm from the repository or set wdm_crate")
    import tomlkit

    try:
        data = tomlkit.parse(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise ConfigError(f"{manifest}: unreadable ({exc})", "restore it from the repository") from None
    lib = data.get("lib") or {}
    if str(lib.get("name", "")) != info.lib_name:
        raise ConfigError(f"{manifest}: [lib] name is {lib.get('name')!r}, the driver's is {info.lib_name!r}", f'set name = "{info.lib_name}" under [lib]')
    lib_path = (wdm / str(lib.get("path", ""))).resolve()
    if lib_path != (info.dir / "src" / "lib.rs").resolve():
        raise ConfigError(
            f"{manifest}: [lib] path is not the driver's src/lib.rs", 'the WDM image must build the driver\'s own sources (path = "../src/lib.rs")'
        )
    # The target's std is checked only when cargo fails (classify_wdm_failure): an
    # unchanged build stays as cheap as cargo's own no-op.


def target_std_installed(triple: str) -> bool:
    """True when rustc's sysroot has the target's prebuilt core/alloc (rustup target add)."""
    import subprocess

    try:
        done = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        raise EnvironmentProblem("rustc was not found", "install Rust with rustup (https://rustup.rs)") from None
    sysroot = Path(done.stdout.strip())
    return done.returncode == 0 and any((sysroot / "lib" / "rustlib" / triple / "lib").glob("libcore-*.rlib"))


def classify_wdm_failure(text: str, triple: str, *, log: Path | None = None) -> PipelineError | None:
    """rust-lld and missing-target failures of the WDM route, one line each (None: not one of these)."""
    see = f" (full output: {log})" if log else ""
    if re.search(r"can't find crate for `(core|compiler_builtins)`", text) or "target may not be installed" in text:
        return EnvironmentProblem(f"the Rust standard library for {triple} is not installed", f"rustup target add {triple}")
    missing = re.search(
        r"(?:unresolved import|cannot find \w+) `(wdk_sys::[\w:]+|[\w]+)` in (?:module|crate) `(wdk_sys[\w:]*)`|unresolved import `(wdk_sys::[\w:]+)`", text
    )
    if missing:
        name = next(g for g in missing.groups() if g)
        return StepFailed(
            f"the kernel bindings have no {name}: the driver uses a kernel item driver/wdm/kernel/wdk-sys does not declare{see}",
            "add it to driver/wdm/kernel/wdk-sys/src/lib.rs with the real signature/layout (and to its layout table if it is a struct)",
        )
    undefined = re.findall(r"undefined symbol: ([^\s]+)", text)
    if undefined:
        names = sorted(set(undefined))
        return StepFailed(
            f"rust-lld: undefined symbol{'s' if len(names) > 1 else ''} {', '.join(names[:5])}{see}",
            "declare it in the kernel bindings (driver/wdm/kernel/wdk-sys, raw-dylib from ntoskrnl.exe) or stop using it",
        )
    if re.search(r"linker `rust-lld` not found|could not exec the linker `rust-lld`", text):
        return EnvironmentProblem("rust-lld, the toolchain's linker, was not found", "use a rustup toolchain (rustup ships rust-lld) or reinstall it")
    return None


def _check_image(ctx: RunContext, path: Path, model: str, *, given: bool = False) -> imagecheck.ImageFacts:
    """The image rules; an image given with --from that breaks one is bad input (exit 2), one we built a failed check (exit 1)."""
    return imagecheck.check(
        path,
        model=model,
        arch=str(ctx.config.project.build.arch),
        texts=imagecheck.expected_texts(ctx.config.project.get("expect") or {}),
        error=ConfigError if given else CheckFailed,
    )


def _record(ctx: RunContext, source: str, dll: Path, pdb: Path | None, map_file: Path | None, feats: list[str], *, model: str = "kmdf") -> BuildResult:
    if not dll.is_file():
        raise StepFailed(f"{source}: the reported artifact {dll} does not exist", "re-run `invoke build`")
    check_pe(dll, str(ctx.config.project.build.arch), what=source)
    facts = _check_image(ctx, dll, model)
    result = BuildResult(
        artifact=dll,
        sha256={"artifact": sha256_file(dll)},
        source=source,
        features=feats,
        profile=str(ctx.config.project.build.profile),
        model=model,
        image=facts.summary(),
    )
    if pdb is not None and pdb.is_file():
        result.pdb, result.sha256["pdb"] = pdb, sha256_file(pdb)
    if map_file is not None and map_file.is_file():
        result.map, result.sha256["map"] = map_file, sha256_file(map_file)
    return _write_manifest(ctx, result)


def _show_errors(ctx: RunContext, errors: list[str]) -> None:
    lines = "\n\n".join(errors).splitlines()
    for line in lines[:ERROR_LINES_SHOWN]:
        ctx.say(line)
    if len(lines) > ERROR_LINES_SHOWN:
        ctx.say(f"... {len(lines) - ERROR_LINES_SHOWN} more lines")
