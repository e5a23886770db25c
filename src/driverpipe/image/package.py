"""`invoke package`: the build output -> target/<profile>/<name>_package/ (cargo-wdk's layout).

Contents: <name>.sys (the cdylib renamed), <name>.pdb/.map when built, <name>.inf
(stamped from the .inx) and <name>.cat. On Windows the WDK tools do the work
(stampinf, inf2cat /os:10_X64 /uselocaltime, infverif /v /w); elsewhere
driverpipe.inf stamps the INF (same substitutions and DriverVer format),
driverpipe.inf.lint stands in for infverif, and driverpipe.catalog writes the
catalog. The package is assembled in a staging folder and swapped in whole.

The catalog made here is UNSIGNED and lists the unsigned .sys: the package is
not deployable until `invoke sign`, which embeds the signature in the .sys,
re-creates the catalog (the .sys hash changed) and signs it.

A stamp file (.driverpipe-package.json, in the package) records the input
hashes and settings; when nothing changed the step is skipped. It is also the
package's mark: a <name>_package folder without it (or a staging folder without
.driverpipe-staging) is not ours and is never replaced or deleted.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.context import RunContext
from ..core.errors import ConfigError, EnvironmentProblem, NotImplementedYet, StepFailed
from ..core.files import copy_atomic, sha256_file, write_atomic
from ..core.owned import is_sha256, is_text, mapping_of, one_of, read_record, remove_owned, table
from . import wdk
from .artifact import BuildResult, crate_dir, inx_path, load_manifest, manifest_path, profile_dir
from .preflight import CrateInfo

STAMP_NAME = ".driverpipe-package.json"
STAGING_MARK = ".driverpipe-staging"
STAMP_SHAPE = table({"format": one_of(1), "settings": mapping_of(is_text, lambda v: True), "inputs": mapping_of(is_text, is_sha256)}, optional=("inputs",))
INF2CAT_OS = {"amd64": "10_X64", "arm64": "Server10_arm64"}
CATALOG_OS = {"amd64": ("2:10.0", "_v100_X64"), "arm64": ("2:10.0", "_v100_ARM64")}  # arm64 pair unverified
INFVERIF_HINTS = {
    "1297": "a [Manufacturer] INF that matches no device: make it a primitive driver INF ([DefaultInstall.NT$ARCH$] + .Services, no [Manufacturer])",
    "1212": "[DefaultInstall] cannot be combined with [Manufacturer]: drop [Manufacturer] for a primitive driver INF",
    "1233": "add CatalogFile to [Version] (stampinf -c writes it; check the .inx [Version] section)",
}


@dataclass
class PackageResult:
    dir: Path
    name: str
    sys: Path
    inf: Path
    cat: Path
    pdb: Path | None = None
    map: Path | None = None
    members: list[Path] = field(default_factory=list)  # catalog members (the sign step re-catalogs these)
    flow: str = "builtin"  # "wdk" | "builtin"
    skipped: bool = False
    dry: bool = False


def _crate(ctx: RunContext) -> CrateInfo:
    from .preflight import read_crate

    return read_crate(crate_dir(ctx), stop=ctx.config.root)


def package_name(ctx: RunContext) -> str:
    """<name> of the package files: the driver binary the INF names in [SourceDisksFiles]
    (its stem), else the crate's [package].name with - replaced by _."""
    return _package_name(ctx, _crate(ctx))


def _package_name(ctx: RunContext, info: CrateInfo) -> str:
    from .inf import driver_binary

    inx = inx_path(ctx)
    try:
        binary = driver_binary(_read_inf_text(inx)) if inx.is_file() else None
    except (ConfigError, OSError):
        binary = None  # the package step reports an unreadable .inx with its own line
    return Path(binary).stem if binary else info.package_name


def package_dir(ctx: RunContext) -> Path:
    """<crate>/target/<profile>/<name>_package/."""
    return profile_dir(ctx) / f"{package_name(ctx)}_package"


def driver_version(ctx: RunContext, info: CrateInfo) -> str:
    """DriverVer's a.b.c.d: build.driver_version, else the crate version + .0 (pre-release tags dropped)."""
    from .inf import check_version

    configured = str(ctx.config.project.build.driver_version or "")
    if configured:
        return check_version(configured)
    core = re.split(r"[-+]", info.version, maxsplit=1)[0]
    parts = [*core.split("."), "0", "0", "0"][:3]
    return check_version(".".join([*parts, "0"]))


def stamp_date() -> _dt.date:
    """Today (local time, as inf2cat /uselocaltime expects), or STAMPINF_DATE like stampinf."""
    from .inf import parse_stampinf_date

    explicit = os.environ.get("STAMPINF_DATE", "").strip()
    return parse_stampinf_date(explicit) if explicit else _dt.date.today()


def catalog_members(pkg: Path, name: str, inf_text: str) -> list[Path]:
    """What the catalog lists: the INF, the driver and every [SourceDisksFiles] file (all must be in the package)."""
    from .inf import catalog_files

    members = {f"{name}.inf".lower(): pkg / f"{name}.inf", f"{name}.sys".lower(): pkg / f"{name}.sys"}
    for file in catalog_files(inf_text):
        path = pkg / file
        if not path.is_file():
            raise ConfigError(
                f"the INF lists {file} in [SourceDisksFiles], but the package has no such file (it has {name}.sys)",
                f"name the driver {name}.sys in the .inx ([SourceDisksFiles], CopyFiles, ServiceBinary)",
            )
        members.setdefault(file.lower(), path)
    return sorted(members.values(), key=lambda p: p.name.lower())


def _read_inf_text(path: Path) -> str:
    from .inf import decode

    return decode(path.read_bytes(), str(path)).text


def run(ctx: RunContext) -> PackageResult:
    """Task entry: assemble, stamp, catalog (unsigned) and check the package; skip if inputs are unchanged."""
    info = _crate(ctx)
    name = _package_name(ctx, info)
    pkg = profile_dir(ctx) / f"{name}_package"
    if pkg.parent != profile_dir(ctx):  # names are checked in preflight; never write beside the profile's folder
        raise ConfigError(f"{info.manifest}: package name {name!r} leads outside {profile_dir(ctx)}", "use a plain crate name")
    arch = str(ctx.config.project.build.arch)
    version = driver_version(ctx, info)
    windows = wdk.host_is_windows()
    inx = inx_path(ctx)
    if not inx.is_file():
        raise ConfigError(f"{inx}: INF template (.inx) not found", "create it or set inx in [tool.driverpipe]")
    _check_service(ctx, inx)
    result = PackageResult(dir=pkg, name=name, sys=pkg / f"{name}.sys", inf=pkg / f"{name}.inf", cat=pkg / f"{name}.cat", flow="wdk" if windows else "builtin")

    if ctx.dry and not manifest_path(ctx).is_file():
        ctx.say(f"[dry] no build output yet ({manifest_path(ctx)}): showing the plan for the artifact `invoke build` would record")
        build: BuildResult | None = None
    else:
        build = load_manifest(ctx)
    settings = {
        "name": name,
        "arch": arch,
        "kmdf": list(info.kmdf) if info.kmdf else None,
        "driver_version": version,
        "flow": result.flow,
        "model": build.model if build else "?",
    }
    stamp: dict[str, Any] = {"format": 1, "settings": settings}
    if build is not None:
        stamp["inputs"] = {**{k: v for k, v in sorted(build.sha256.items())}, "inx": sha256_file(inx)}
        result.pdb = pkg / f"{name}.pdb" if build.pdb else None
        result.map = pkg / f"{name}.map" if build.map else None
        if _up_to_date(pkg, stamp, result):
            ctx.say(f"package up to date (inputs unchanged): {pkg}")
            result.skipped = True
            result.members = _members_if_readable(pkg, name, result.inf)
            return result

    staging = pkg.with_name(f".{pkg.name}.staging")
    ctx.step(f"package {name} ({'WDK tools' if windows else 'built-in stamping and catalog'}) -> {pkg}")
    if ctx.dry:
        source = build.artifact if build else profile_dir(ctx) / f"{info.lib_name}.dll"
        ctx.say(f"[dry] would copy {source} -> {name}.sys, the .pdb/.map if built, and {inx} -> {name}.inf into {staging}")
        if windows:
            _wdk_steps(ctx, staging, name, arch, info.kmdf, version)
        else:
            kmdf = f"KMDF {info.kmdf[0]}.{info.kmdf[1]}" if info.kmdf else "WDM"
            ctx.say(f"[dry] would stamp {name}.inf ($ARCH$={arch}, {kmdf}, DriverVer {version}, CatalogFile {name}.cat), lint it")
            ctx.say(f"[dry] would write the unsigned catalog {name}.cat (OS {CATALOG_OS.get(arch, CATALOG_OS['amd64'])[1]})")
        ctx.say(f"[dry] would replace {pkg} with the staged package and record {STAMP_NAME}")
        result.dry = True
        return result

    assert build is not None
    remove_owned(staging, STAGING_MARK, STAMP_NAME)
    if pkg.exists():  # refuse before any work: a folder of that name we did not make stays as it is
        remove_owned(pkg.with_name(f".{pkg.name}.old"), STAMP_NAME, STAGING_MARK)
        if not (pkg / STAMP_NAME).is_file():
            remove_owned(pkg, STAMP_NAME)  # refuses (it is not empty) or removes an empty folder
    staging.mkdir(parents=True)
    (staging / STAGING_MARK).touch()
    try:
        copy_atomic(build.artifact, staging / f"{name}.sys")
        if build.pdb:
            copy_atomic(build.pdb, staging / f"{name}.pdb")
        if build.map:
            copy_atomic(build.map, staging / f"{name}.map")
        copy_atomic(inx, staging / f"{name}.inf")
        if windows:
            _wdk_steps(ctx, staging, name, arch, info.kmdf, version)
            members = catalog_members(staging, name, _read_inf_text(staging / f"{name}.inf"))
        else:
            members = _builtin_steps(ctx, staging, name, arch, info.kmdf, version)
        if not (staging / f"{name}.cat").is_file():
            raise StepFailed(f"no catalog {name}.cat was produced in {staging}")
        write_atomic(staging / STAMP_NAME, (json.dumps(stamp, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        (staging / STAGING_MARK).unlink()
        _swap(staging, pkg)
    finally:
        if staging.exists():
            remove_owned(staging, STAGING_MARK, STAMP_NAME)
    result.members = [pkg / m.name for m in members]
    listing = ", ".join(sorted(p.name for p in pkg.iterdir() if not p.name.startswith(".")))
    ctx.say(f"packaged {pkg} [{settings['model']} model] ({listing}); unsigned: run `invoke sign` before deploying")
    return result


def _check_service(ctx: RunContext, inx: Path) -> None:
    """service_name must be a service the INF adds: that is the service the targets start."""
    from .inf import service_names

    services = service_names(_read_inf_text(inx))
    wanted = str(ctx.config.project.service_name)
    if services and wanted.lower() not in (s.lower() for s in services):
        raise ConfigError(
            f"service_name = {wanted!r}, but {inx.name} adds the service {', '.join(services)} (AddService)", f"set service_name = {services[0]!r}"
        )


def _members_if_readable(pkg: Path, name: str, inf_path: Path) -> list[Path]:
    try:
        return catalog_members(pkg, name, _read_inf_text(inf_path))
    except (ConfigError, OSError):
        return []


def _up_to_date(pkg: Path, stamp: dict[str, Any], result: PackageResult) -> bool:
    recorded = read_record(pkg / STAMP_NAME, STAMP_SHAPE)
    if recorded is None:
        return False
    outputs = [result.sys, result.inf, result.cat, *(p for p in (result.pdb, result.map) if p is not None)]
    return bool(recorded == json.loads(json.dumps(stamp)) and all(p.is_file() for p in outputs))


def _swap(staging: Path, pkg: Path) -> None:
    """Replace the package folder as a whole: readers see the old or the new one, never a mix."""
    old = pkg.with_name(f".{pkg.name}.old")
    remove_owned(old, STAMP_NAME, STAGING_MARK)
    if pkg.exists():
        os.replace(pkg, old)
    os.replace(staging, pkg)
    remove_owned(old, STAMP_NAME, STAGING_MARK)


# ----------------------------------------------------------------------------- Windows: WDK tools


def _tool(ctx: RunContext, name: str) -> str:
    from .wdk import find_tool

    try:
        return str(find_tool(name))
    except EnvironmentProblem:
        if ctx.dry:
            return name  # the plan is still worth showing
        raise


def _wdk_steps(ctx: RunContext, pkg: Path, name: str, arch: str, kmdf: tuple[int, int] | None, version: str) -> None:
    inf_path = pkg / f"{name}.inf"
    framework = ["-k", f"{kmdf[0]}.{kmdf[1]}"] if kmdf else []  # a WDM driver binds no framework version
    ctx.runner.run(
        [_tool(ctx, "stampinf"), "-f", str(inf_path), "-d", "*", "-a", arch, "-c", f"{name}.cat", "-v", version, *framework],
        what="stampinf",
    )
    if not ctx.dry:
        for problem in _lint(inf_path):
            ctx.say(f"warning: {inf_path.name} {problem} (infverif decides on Windows)")
    done = ctx.runner.run([_tool(ctx, "inf2cat"), f"/driver:{pkg}", f"/os:{INF2CAT_OS.get(arch, '10_X64')}", "/uselocaltime"], what="inf2cat", check=False)
    if not done.ok:
        raise _inf2cat_error(done.stdout + "\n" + done.stderr, done.returncode)
    done = ctx.runner.run([_tool(ctx, "infverif"), "/v", "/w", str(inf_path)], what="infverif", check=False)
    if not done.ok:
        raise _infverif_error(done.stdout + "\n" + done.stderr, done.returncode, inf_path.name)


def _inf2cat_error(output: str, code: int) -> StepFailed:
    errors: list[str] = []
    collecting = False
    for line in output.splitlines():
        text = line.strip()
        if text.lower().startswith("errors:"):
            collecting = True
            continue
        if collecting:
            if not text or text.lower().startswith("warnings:"):
                collecting = False
            elif text.lower() != "none":
                errors.append(text)
    first = errors[0] if errors else next((ln.strip() for ln in reversed(output.splitlines()) if ln.strip()), "")
    hint = "read inf2cat's error list above"
    if "22.9.7" in output:
        hint = "DriverVer is in the future for inf2cat: check the build machine's clock and time zone (/uselocaltime is passed)"
    elif re.search(r"missing|not found|cannot find", first, re.I):
        hint = "every file named in [SourceDisksFiles] must be in the package under that name"
    return StepFailed(f"inf2cat failed (exit code {code}){': ' + first if first else ''}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""), hint)


def _infverif_error(output: str, code: int, inf_name: str) -> StepFailed:
    # infverif prints e.g. "ERROR(1233) in x.inf, line 5: ..." (format from MS docs; unverified here)
    found = re.findall(r"ERROR\((\d+)\)[^\r\n]*", output)
    lines = [m.group(0).strip() for m in re.finditer(r"ERROR\(\d+\)[^\r\n]*", output)]
    for number in found:
        if number in INFVERIF_HINTS:
            return StepFailed(f"infverif rejected {inf_name}: {lines[found.index(number)]}", INFVERIF_HINTS[number])
    first = lines[0] if lines else next((ln.strip() for ln in reversed(output.splitlines()) if ln.strip()), "")
    return StepFailed(f"infverif rejected {inf_name} (exit code {code}){': ' + first if first else ''}", "fix the .inx; see infverif's output")


# ----------------------------------------------------------------------------- other hosts: built in


def _lint(inf_path: Path) -> list[Any]:
    from .inf import lint

    return lint(_read_inf_text(inf_path))


def _builtin_steps(ctx: RunContext, pkg: Path, name: str, arch: str, kmdf: tuple[int, int] | None, version: str) -> list[Path]:
    from .inf import stamp_file

    inf_path = pkg / f"{name}.inf"
    from .inf import lint

    # Lint the template itself so line numbers point into the .inx; stamping adds DriverVer/CatalogFile.
    problems = lint(_read_inf_text(inf_path), stamped=False)
    if problems:
        for problem in problems[1:]:
            ctx.say(f"also: {inf_path.name} {problem}")
        raise ConfigError(
            f"{inx_name(ctx)}: {problems[0]}" + (f" (and {len(problems) - 1} more listed above)" if len(problems) > 1 else ""),
            "fix the .inx (primitive or root-enumerated PnP driver INF rules); infverif would reject it",
        )
    stamp_file(inf_path, arch=arch, catalog=f"{name}.cat", date=stamp_date(), version=version, kmdf=kmdf)
    members = catalog_members(pkg, name, _read_inf_text(inf_path))
    try:
        from .catalog import write_catalog
    except ModuleNotFoundError as exc:
        if exc.name != "driverpipe.catalog":
            raise
        raise NotImplementedYet("catalog creation (driverpipe.catalog) is not available in this version", "package on Windows with the WDK") from None
    os_attr, os_name = CATALOG_OS.get(arch, CATALOG_OS["amd64"])
    write_catalog(pkg / f"{name}.cat", members, os_attr=os_attr, os_name=os_name)
    return members


def inx_name(ctx: RunContext) -> str:
    return str(ctx.config.project.inx)
