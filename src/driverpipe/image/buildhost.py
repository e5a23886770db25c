"""Build on a Windows build host (SSH or WinRM) from a host that cannot run wdk-build.

One archive (the crate without target/ and .git, the .inx, project-level
.cargo/config.toml) is pushed to <work_dir>\\driverpipe-src.zip; the zip is
deterministic (sorted, fixed timestamps) so an unchanged tree is not re-sent
(Guest.push skips equal hashes). Invoke-RemoteCargoBuild.ps1 unpacks it into
<work_dir>\\src, runs the same cargo command as a local build with
CARGO_TARGET_DIR=<work_dir>\\target (kept between builds: incremental), and
returns the cdylib's files from cargo's compiler-artifact messages with their
SHA-256. Each file is pulled, its hash checked, then moved into place.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ..core.config import Section
from ..core.context import RunContext
from ..core.errors import ConfigError, StepFailed
from ..core.files import safe_basename, sha256_file
from .artifact import BuildResult, _record, _show_errors, cargo_argv, classify_failure, error_blocks, features, profile_dir
from .preflight import CrateInfo

SCRIPT = "Invoke-RemoteCargoBuild.ps1"
ARCHIVE_NAME = "driverpipe-src.zip"
#: A first build of wdk-sys (bindgen over the WDK headers) takes many minutes.
REMOTE_TIMEOUT = 3600.0
EXCLUDED_DIRS = {".git", ".hg", ".svn"}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _rel(path: Path, root: Path, fallback: PurePosixPath) -> PurePosixPath:
    try:
        return PurePosixPath(path.resolve().relative_to(root.resolve()).as_posix())
    except ValueError:
        return fallback


def archive_members(root: Path, info: CrateInfo, inx: Path) -> tuple[list[tuple[Path, str]], str]:
    """(local file, name in the zip) pairs, and the crate's folder inside the zip."""
    if info.workspace_root.resolve() != info.dir.resolve():
        raise ConfigError(
            f"{info.dir} is a member of the workspace at {info.workspace_root}; remote builds send the driver crate alone",
            "give the driver crate its own Cargo.lock (remove it from the workspace) or build on Windows",
        )
    crate_rel = _rel(info.dir, root, PurePosixPath(info.dir.name))
    members: list[tuple[Path, str]] = []
    for walked, dirs, files in os.walk(info.dir):
        here = Path(walked)
        rel_here = here.relative_to(info.dir)
        # target/ at the crate root is cargo's output; VCS folders anywhere are noise.
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not (rel_here == Path(".") and d == "target"))
        for name in sorted(files):
            members.append((here / name, (crate_rel / rel_here.as_posix() / name).as_posix()))
    # .cargo/config.toml between the project root and the crate (e.g. +crt-static set project-wide).
    for folder in info.dir.resolve().parents:
        try:
            folder.relative_to(root.resolve())
        except ValueError:
            break
        for name in ("config.toml", "config"):
            cfg = folder / ".cargo" / name
            if cfg.is_file():
                members.append((cfg, str(_rel(cfg, root, PurePosixPath(".cargo") / name))))
                break
    if inx.is_file():
        members.append((inx, str(_rel(inx, root, PurePosixPath("inf") / inx.name))))
    return sorted(set(members), key=lambda m: m[1]), str(crate_rel)


def write_archive(dest: Path, members: list[tuple[Path, str]]) -> str:
    """A deterministic zip (same tree -> same bytes); returns its SHA-256."""
    tmp = dest.with_name(dest.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for local, name in members:
            entry = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, local.read_bytes())
    os.replace(tmp, dest)
    return sha256_file(dest)


def _win_join(base: str, *parts: str) -> str:
    out = base.rstrip("\\/")
    for part in parts:
        out += "\\" + part.replace("/", "\\").strip("\\")
    return out


def run(ctx: RunContext, info: CrateInfo, host: Section) -> BuildResult:
    from ..transports.connect import open_build_host
    from .artifact import inx_path

    profile = str(ctx.config.project.build.profile)
    feats = features(ctx)
    members, crate_rel = archive_members(ctx.config.root, info, inx_path(ctx))
    work_dir = str(host.work_dir)
    remote_zip = _win_join(work_dir, ARCHIVE_NAME)
    params: dict[str, Any] = {
        "WorkDir": work_dir,
        "ArchivePath": remote_zip,
        "CrateDir": crate_rel.replace("/", "\\"),
        "BuildProfile": profile,
        "Features": ",".join(feats),
        "LibName": info.lib_name,
    }
    source = f"build-host:{host.name}"
    ctx.step(f"building on {host.name}: {' '.join(cargo_argv(profile, feats))} ({len(members)} files sent)")
    guest = open_build_host(ctx, host)
    try:
        with tempfile.TemporaryDirectory(prefix="driverpipe-src-") as tmp:
            if ctx.dry:
                ctx.say(f"[dry] would archive {len(members)} files (crate {crate_rel}, without target/ and .git) to {ARCHIVE_NAME}")
                archive = Path(tmp) / ARCHIVE_NAME
            else:
                archive = Path(tmp) / ARCHIVE_NAME
                write_archive(archive, members)
            guest.push(archive, remote_zip)
        result = guest.run_script(SCRIPT, params, timeout=REMOTE_TIMEOUT)
        if result is None:  # --dry
            ctx.say(f"[dry] would pull the cdylib/.pdb/.map, check their SHA-256 and record them in {profile_dir(ctx)}")
            return BuildResult(
                artifact=profile_dir(ctx) / "build-host" / f"{info.lib_name}.dll", sha256={}, source=source, features=feats, profile=profile, dry=True
            )
        local = _collect(ctx, guest, result, host.name)
    finally:
        guest.close()
    return _record(ctx, source, local.get("dll") or Path(), local.get("pdb"), local.get("map"), feats)


def _artifacts(result: Any) -> Iterator[tuple[str, str, str]]:
    for item in result.get("artifacts") or []:
        if isinstance(item, dict) and item.get("kind") in ("dll", "pdb", "map") and item.get("path") and item.get("sha256"):
            yield str(item["kind"]), str(item["path"]), str(item["sha256"]).lower()


def _collect(ctx: RunContext, guest: Any, result: Any, host: str) -> dict[str, Path]:
    if not isinstance(result, dict):
        raise StepFailed(f"{host}: {SCRIPT} returned {type(result).__name__}, not a result object")
    where = f"cargo build on {host}"
    if result.get("cargoMissing"):
        raise ConfigError(f"{host}: cargo is not installed or not on PATH for the build account", "install Rust (rustup) on the build host for that user")
    tail = str(result.get("stderrTail") or "")
    errors = [str(e) for e in result.get("errors") or []] or error_blocks(tail)
    text = "\n".join(errors) + "\n" + tail
    found = {kind: (path, sha) for kind, path, sha in _artifacts(result)}
    if int(result.get("exitCode", 1)) != 0 or "dll" not in found:
        _show_errors(ctx, errors)
        if int(result.get("exitCode", 1)) == 0 and not errors:
            raise StepFailed(f"{where} succeeded but reported no cdylib named {result.get('libName') or ''}", '[lib] crate-type = ["cdylib"] in Cargo.toml')
        raise classify_failure(text, errors, where=where)
    dest = profile_dir(ctx) / "build-host"
    dest.mkdir(parents=True, exist_ok=True)
    local: dict[str, Path] = {}
    for kind, (remote, sha) in found.items():
        name = safe_basename(remote, f"{host}: build artifact")
        final = dest / name
        partial = dest / f".{name}.partial"
        guest.pull(remote, partial)
        got = _sha256(partial)
        if got != sha:
            partial.unlink(missing_ok=True)
            raise StepFailed(
                f"{host}: {name} arrived with SHA-256 {got[:16]}…, the build host reported {sha[:16]}…", "re-run `invoke build` (the transfer was corrupted)"
            )
        os.replace(partial, final)
        local[kind] = final
    return local


def _sha256(path: Path) -> str:
    if not path.is_file():
        raise StepFailed(f"pull did not produce {path}")
    return sha256_file(path)
