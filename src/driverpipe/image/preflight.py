"""Check the driver crate before spending minutes in cargo (tomlkit, no cargo needed).

Each problem is a ConfigError naming the file and the fix: missing
[package.metadata.wdk.driver-model] ("links but won't load"), a profile without
panic = "abort", crate-type not cdylib, no build.rs calling wdk-build, no
+crt-static in the cargo config, no Cargo.lock (we build with --locked), and a
missing or unreadable .inx. All problems are listed; the first one is raised.

The package and lib names become file and folder names (<name>_package/<name>.sys),
so they are checked as names first, like target names: cargo's own rules (a package
name of letters, digits, '_' and '-'; a lib name an identifier), no separators, no '..'.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError

WDK_KEYS = {"driver-type", "kmdf-version-major", "target-kmdf-version-minor", "minimum-kmdf-version-minor"}
METADATA_FIX = 'add to Cargo.toml: [package.metadata.wdk.driver-model] driver-type = "KMDF", kmdf-version-major = 1, target-kmdf-version-minor = 33'
CRT_FIX = 'add to <crate>/.cargo/config.toml: [build] rustflags = ["-C", "target-feature=+crt-static"]'
BUILD_RS_FIX = "create build.rs: fn main() -> Result<(), wdk_build::ConfigError> { wdk_build::configure_wdk_binary_build() }"
PROFILES = ("dev", "release")
PACKAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
LIB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass
class CrateInfo:
    dir: Path
    manifest: Path
    name: str  # [package].name
    lib_name: str  # artifact stem: [lib].name or the package name with - -> _
    version: str
    driver_type: str
    kmdf: tuple[int, int] | None
    workspace_root: Path  # where Cargo.lock and the effective [profile] tables live

    @property
    def package_name(self) -> str:
        """Name of the files in the package (<name>.sys/.inf/.cat), as cargo-wdk names them."""
        return self.name.replace("-", "_")


@dataclass
class Report:
    info: CrateInfo | None
    problems: list[ConfigError] = field(default_factory=list)


def _load(path: Path) -> Any:
    from ..core.config import read_toml

    doc = read_toml(path)
    return doc.unwrap() if hasattr(doc, "unwrap") else doc


def _table(data: Any, *keys: str) -> dict[str, Any] | None:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data if isinstance(data, dict) else None


def _workspace_root(crate_dir: Path, stop: Path | None) -> tuple[Path, Any | None]:
    """The nearest ancestor Cargo.toml with [workspace] (cargo's profiles and lock live there)."""
    here = crate_dir.resolve()
    for folder in here.parents:
        manifest = folder / "Cargo.toml"
        if manifest.is_file():
            data = _load(manifest)
            if isinstance(data, dict) and "workspace" in data:
                return folder, data
        if stop is not None and folder == stop.resolve():
            break
    return crate_dir, None


def read_crate(crate_dir: Path, *, stop: Path | None = None) -> CrateInfo:
    """Name, version and WDK metadata of the crate (raises on the first missing piece)."""
    report = inspect(crate_dir, None, env={}, stop=stop, full=False)
    if report.problems:
        raise report.problems[0]
    assert report.info is not None
    return report.info


def _metadata(data: dict[str, Any], ws: Any | None, manifest: Path, add: Callable[[str, str], None]) -> tuple[str, tuple[int, int] | None]:
    model = _table(data, "package", "metadata", "wdk", "driver-model")
    if model is None and ws is not None:
        model = _table(ws, "workspace", "metadata", "wdk", "driver-model")
    if model is None:
        add(f"{manifest}: no [package.metadata.wdk.driver-model]: the driver links but won't load (no /DRIVER, KMDF imports or entry point)", METADATA_FIX)
        return "", None
    unknown = sorted(set(model) - WDK_KEYS)
    if unknown:
        add(f"{manifest}: [package.metadata.wdk.driver-model] has unknown key(s) {', '.join(unknown)} (wdk-build rejects them)", METADATA_FIX)
    driver_type = str(model.get("driver-type", ""))
    if driver_type == "WDM":  # no framework version to read: DriverEntry is the image's own entry
        return driver_type, None
    if driver_type != "KMDF":
        add(f"{manifest}: driver-type = {driver_type or '(missing)'!r}; this pipeline builds KMDF and WDM drivers", 'set driver-type = "KMDF" or "WDM"')
        return driver_type, None
    major, minor = model.get("kmdf-version-major"), model.get("target-kmdf-version-minor")
    if not isinstance(major, int) or not isinstance(minor, int) or isinstance(major, bool) or isinstance(minor, bool):
        add(f"{manifest}: kmdf-version-major and target-kmdf-version-minor must be integers (got {major!r}, {minor!r})", METADATA_FIX)
        return driver_type, None
    return driver_type, (major, minor)


def inspect(
    crate_dir: Path,
    inx: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    stop: Path | None = None,
    cargo_home: Path | None = None,
    full: bool = True,
) -> Report:
    """All problems with the crate (full=False: only what packaging needs).

    `env` is the environment cargo will run with ({} for a remote build host);
    `stop` bounds the upward search for a workspace and .cargo/config.toml (the
    project root when the sources are shipped to a build host).
    """
    env = os.environ if env is None else env
    problems: list[ConfigError] = []

    def add(message: str, hint: str) -> None:
        problems.append(ConfigError(message, hint))

    manifest = crate_dir / "Cargo.toml"
    if not manifest.is_file():
        add(
            f"{manifest}: no Cargo.toml (driver_crate = {str(crate_dir)!r})",
            "set driver_crate in [tool.driverpipe] to the folder holding the driver's Cargo.toml",
        )
        return Report(None, problems)
    data = _load(manifest)
    package = _table(data, "package")
    if package is None or not isinstance(package.get("name"), str):
        add(f"{manifest}: no [package] name", 'add [package] name = "WazabiEDR_Driver"')
        return Report(None, problems)
    name = package["name"]
    if not PACKAGE_NAME.fullmatch(name):
        add(f"{manifest}: [package] name {name!r} is not a crate name", "use letters, digits, '_' and '-' (no separators, no '..'), starting with a letter")
        return Report(None, problems)
    version = package.get("version", "0.0.0")
    if not isinstance(version, str):  # version.workspace = true
        version = "0.0.0"
    ws_root, ws = _workspace_root(crate_dir, stop)
    if ws is not None and isinstance(package.get("version"), dict):
        version = str((_table(ws, "workspace", "package") or {}).get("version", "0.0.0"))
    lib = _table(data, "lib") or {}
    if "name" in lib and not (isinstance(lib["name"], str) and LIB_NAME.fullmatch(lib["name"])):
        add(
            f"{manifest}: [lib] name {lib['name']!r} is not an identifier",
            "use letters, digits and '_', starting with a letter (or drop it: the package name is used)",
        )
        return Report(None, problems)
    lib_name = str(lib.get("name") or name).replace("-", "_")
    crate_types = lib.get("crate-type", lib.get("crate_type"))
    if not isinstance(crate_types, list) or "cdylib" not in crate_types:
        add(f'{manifest}: [lib] crate-type is {crate_types!r}, not ["cdylib"]: cargo would not link a driver image', '[lib] crate-type = ["cdylib"]')
    driver_type, kmdf = _metadata(data, ws, manifest, add)
    info = CrateInfo(crate_dir, manifest, name, lib_name, version, driver_type, kmdf, ws_root)
    if not full:
        return Report(info, problems)

    profile_source = ws if ws is not None else data
    profile_manifest = ws_root / "Cargo.toml" if ws is not None else manifest
    configs = cargo_configs(crate_dir, stop=stop, cargo_home=cargo_home)
    for profile in PROFILES:
        panic = (_table(profile_source, "profile", profile) or {}).get("panic")
        for _, cfg in configs:
            if panic is None:
                panic = (_table(cfg, "profile", profile) or {}).get("panic")
        panic = env.get(f"CARGO_PROFILE_{profile.upper()}_PANIC", panic)
        if panic != "abort":
            add(
                f'{profile_manifest}: [profile.{profile}] panic is {panic or "unwind (default)"!r}, not "abort": wdk-panic has no unwinder',
                f'add to {profile_manifest.name}: [profile.{profile}] panic = "abort"',
            )

    build = package.get("build")
    build_rs = crate_dir / (build if isinstance(build, str) else "build.rs")
    if build is False or not build_rs.is_file():
        add(f"{crate_dir}: no build script ({build_rs.name}) calling wdk-build", BUILD_RS_FIX)
    elif "configure_wdk_binary_build" not in build_rs.read_text(encoding="utf-8", errors="replace"):
        add(f"{build_rs}: does not call wdk_build::configure_wdk_binary_build()", BUILD_RS_FIX)
    if "wdk-build" not in (_table(data, "build-dependencies") or {}):
        add(f"{manifest}: wdk-build is not in [build-dependencies]", '[build-dependencies] wdk-build = "0.5.1"')

    if not has_crt_static(configs, env):
        where = "RUSTFLAGS (set in the environment, which overrides .cargo/config.toml)" if _env_rustflags(env) is not None else ".cargo/config.toml"
        add(f"{crate_dir}: +crt-static is not enabled in {where}: wdk-build stops with StaticCrtNotEnabled", CRT_FIX)

    if not (ws_root / "Cargo.lock").is_file():
        add(
            f"{ws_root}: no Cargo.lock, but builds use --locked for reproducibility",
            "run `cargo generate-lockfile` on a machine with crates.io access and commit Cargo.lock",
        )

    if inx is not None:
        check_inx(inx, add)
    return Report(info, problems)


def check_inx(inx: Path, add: Callable[[str, str], None]) -> None:
    from . import inf

    if not inx.is_file():
        add(f"{inx}: INF template (.inx) not found", "create it (UTF-16LE with BOM, CRLF) or set inx in [tool.driverpipe]")
        return
    try:
        text = inf.decode(inx.read_bytes(), str(inx)).text
    except ConfigError as exc:
        add(exc.message, exc.hint or "")
        return
    if inf.parse(text).section("Version") is None:
        add(f"{inx}: no [Version] section", "start the .inx with [Version] (Signature, Class, ClassGuid, Provider)")


def cargo_configs(crate_dir: Path, *, stop: Path | None = None, cargo_home: Path | None = None) -> list[tuple[Path, Any]]:
    """Cargo config files cargo would read when run in crate_dir, nearest first (not above `stop`)."""
    found: list[tuple[Path, Any]] = []
    here = crate_dir.resolve()
    for folder in (here, *here.parents):
        for name in ("config.toml", "config"):
            path = folder / ".cargo" / name
            if path.is_file():
                found.append((path, _load(path)))
                break
        if stop is not None and folder == stop.resolve():
            break
    if cargo_home is not None:
        for name in ("config.toml", "config"):
            path = cargo_home / name
            if path.is_file() and all(p != path for p, _ in found):
                found.append((path, _load(path)))
                break
    return found


def _flags(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _env_rustflags(env: Mapping[str, str]) -> list[str] | None:
    if "CARGO_ENCODED_RUSTFLAGS" in env:
        return [f for f in env["CARGO_ENCODED_RUSTFLAGS"].split("\x1f") if f]
    if "RUSTFLAGS" in env:
        return env["RUSTFLAGS"].split()
    return None


def _crt_static_in(flags: list[str]) -> bool:
    return re.search(r"target-feature=\S*\+crt-static", " ".join(flags)) is not None


def has_crt_static(configs: list[tuple[Path, Any]], env: Mapping[str, str]) -> bool:
    """Whether cargo's rustflags (env first: it overrides config files) enable +crt-static."""
    from_env = _env_rustflags(env)
    if from_env is not None:
        return _crt_static_in(from_env)
    for _, cfg in configs:
        candidates = [(_table(cfg, "build") or {}).get("rustflags")]
        for target_table in (_table(cfg, "target") or {}).values():
            if isinstance(target_table, dict):
                candidates.append(target_table.get("rustflags"))
        if any(_crt_static_in(_flags(c)) for c in candidates):
            return True
    return False
