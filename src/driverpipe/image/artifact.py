"""What a build produces and records, shared by every route (local cargo, the WDM route,
a build host, --from): the manifest (BuildResult), cargo's messages and failures, the
checks of the linked image, and the paths of the build output."""

from __future__ import annotations

import datetime as _dt
import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.context import RunContext
from ..core.errors import CheckFailed, ConfigError, EnvironmentProblem, PipelineError, StepFailed
from ..core.files import sha256_file, write_atomic
from ..core.owned import is_sha256, is_text, mapping_of, one_of, or_none, read_record, table
from . import imagecheck

MANIFEST_NAME = "driverpipe-build.json"
CARGO_LOG_NAME = "driverpipe-cargo-stderr.log"
FEATURE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_+./-]*$")
MACHINES = {"amd64": 0x8664, "arm64": 0xAA64}
SUBSYSTEMS = {1: "NATIVE", 2: "WINDOWS_GUI", 3: "WINDOWS_CUI"}
ERROR_LINES_SHOWN = 40


def _output_file(*suffixes: str) -> Any:
    """A recorded output path: absolute, no '..', one of the suffixes the build writes."""
    return lambda v: isinstance(v, str) and Path(v).is_absolute() and ".." not in Path(v).parts and Path(v).suffix.lower() in suffixes


# driverpipe-build.json as _write_manifest writes it; anything else reads as "no build output".
MANIFEST_SHAPE = table(
    {
        "format": one_of(1),
        "artifact": _output_file(".dll", ".sys"),
        "pdb": or_none(_output_file(".pdb")),
        "map": or_none(_output_file(".map")),
        "sha256": mapping_of(one_of("artifact", "pdb", "map"), is_sha256),
        "source": is_text,
        "features": lambda v: isinstance(v, list) and all(isinstance(f, str) and FEATURE_RE.match(f) for f in v),
        "profile": is_text,
        "timestamp": or_none(is_text),
        "model": one_of("kmdf", "wdm"),
        "image": mapping_of(is_text, lambda v: True),
    },
    optional=("pdb", "map", "features", "profile", "timestamp", "model", "image"),
)


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


def crate_dir(ctx: RunContext) -> Path:
    return ctx.config.path(ctx.config.project.driver_crate)


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
    data = read_record(path, MANIFEST_SHAPE)
    if data is None or "artifact" not in data.get("sha256", {}):
        raise EnvironmentProblem(f"{path}: unreadable build record (not what `invoke build` writes): no usable build output", "re-run `invoke build`")
    result = BuildResult.from_json(data, path)
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
