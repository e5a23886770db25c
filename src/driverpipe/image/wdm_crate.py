"""The WDM route's crate, derived from the driver crate's own Cargo.toml.

The driver crate is never edited and no second manifest is kept by hand: the
build writes `<crate>/target/driverpipe-wdm/Cargo.toml` (and the link settings
in `.cargo/config.toml` beside it) from the crate's manifest, with
- its `[lib]` (name, path, cdylib) and `[features]` kept as they are;
- its wdk, wdk-sys, wdk-alloc and wdk-panic dependencies (crates.io or a path)
  replaced by the generated crates shipped with the pipeline (driverpipe/kernel);
- every other dependency kept, a relative `path` made absolute, a
  `workspace = true` one resolved from the crate's workspace;
- no build script (wdk-build needs Windows and the WDK) and its own [workspace].
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.files import write_atomic

DIR_NAME = "driverpipe-wdm"
KEY_NAME = ".driverpipe-inputs"
KERNEL = Path(__file__).resolve().parents[1] / "kernel"
# The crates.io names a driver depends on -> the folder of the generated crate.
REPLACED = {"wdk": "wdk", "wdk-sys": "wdk-sys", "wdk-alloc": "wdk-alloc", "wdk-panic": "wdk-panic"}
DROPPED = {"wdk-build"}  # build-dependency only: no build script runs on this route
DEP_TABLES = ("dependencies", "build-dependencies")
# A source that uses KMDF: wdk-sys's wdf module, the WDF call macro, or a WDF handle type.
KMDF_USE = re.compile(r"\bwdk_sys::wdf\b|\bcall_unsafe_wdf_function_binding\b|\bWDFDRIVER\b|\bWDF_DRIVER_CONFIG\b|\bWdf[A-Z]\w+\(")
KMDF_HINT = 'build it on Windows with the WDK (or a build host: build.build_host), or port it to WDM (driver-type = "WDM", entry DriverEntry)'

CARGO_CONFIG = """\
# Written by driverpipe: a kernel-mode PE32+ linked by the toolchain's rust-lld.
[build]
target = "x86_64-pc-windows-msvc"

[target.x86_64-pc-windows-msvc]
linker = "rust-lld"
rustflags = [
    # A driver cannot depend on the user-mode CRT DLLs.
    "-C", "target-feature=+crt-static",
    "-C", "link-arg=/SUBSYSTEM:NATIVE",
    "-C", "link-arg=/DRIVER",
    "-C", "link-arg=/ENTRY:DriverEntry",
    # No user-mode libraries: every import comes from ntoskrnl.exe (raw-dylib).
    "-C", "link-arg=/NODEFAULTLIB",
    # lld-link writes the PE checksum Windows requires of a driver.
    "-C", "link-arg=/RELEASE",
]
"""


def out_dir(crate: Path) -> Path:
    return crate / "target" / DIR_NAME


def _toml(path: Path) -> dict[str, Any]:
    from ..core.config import read_toml

    doc = read_toml(path)
    data = doc.unwrap() if hasattr(doc, "unwrap") else doc
    return data if isinstance(data, dict) else {}


def _dep(name: str, spec: Any, crate: Path, workspace: tuple[Path, dict[str, Any]] | None) -> tuple[str, Any] | None:
    """(key, spec) for the derived manifest; None: dropped."""
    package = spec.get("package", name) if isinstance(spec, dict) else name
    if package in DROPPED:
        return None
    if isinstance(spec, dict) and spec.get("workspace") is True:
        if workspace is None:
            raise ConfigError(
                f"{crate / 'Cargo.toml'}: dependency {name} says workspace = true, but no workspace is above the crate", "give it a version or path"
            )
        root, data = workspace
        inherited = ((data.get("workspace") or {}).get("dependencies") or {}).get(name)
        if inherited is None:
            raise ConfigError(f"{root / 'Cargo.toml'}: [workspace.dependencies] has no {name}", f"add {name} there or give it a version in the crate")
        merged = dict(inherited) if isinstance(inherited, dict) else {"version": inherited}
        merged.update({k: v for k, v in spec.items() if k not in ("workspace",)})
        return _dep(name, merged, root, None)
    if package in REPLACED:
        new: dict[str, Any] = {"path": str(KERNEL / REPLACED[package])}
        if package != name:
            new["package"] = package
        if isinstance(spec, dict) and spec.get("optional"):
            new["optional"] = True
        return name, new
    if isinstance(spec, dict) and isinstance(spec.get("path"), str):
        spec = dict(spec, path=str((crate / spec["path"]).resolve()))
    return name, spec


def path_dependencies(derived: Path) -> list[Path]:
    """Every folder the derived crate depends on by path (the generated kernel crates among them);
    the kernel crates' whole folder when the derived manifest cannot be read (before a first derive)."""
    import tomllib

    try:
        data = tomllib.loads((derived / "Cargo.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [KERNEL]
    found = {KERNEL}
    tables = [data.get("dependencies") or {}, *((t or {}).get("dependencies") or {} for t in (data.get("target") or {}).values())]
    for table in tables:
        for spec in table.values() if isinstance(table, dict) else ():
            if isinstance(spec, dict) and isinstance(spec.get("path"), str):
                found.add(Path(spec["path"]))
    return sorted(found)


def uses_kmdf(crate: Path, lib_path: Path) -> str | None:
    """The first source line that uses KMDF (file:line: text), or None."""
    src = lib_path.parent
    if not src.is_dir():
        return None
    for path in sorted(src.rglob("*.rs")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if KMDF_USE.search(line.split("//")[0]):
                return f"{path.relative_to(crate) if path.is_relative_to(crate) else path}:{number}: {line.strip()[:80]}"
    return None


def _inputs_key(crate: Path, workspace_root: Path, driver_type: str) -> str:
    """What the derived crate depends on: both manifests, the model, where the kernel crates are, the link settings."""
    import hashlib

    digest = hashlib.sha256(f"{driver_type}\0{KERNEL}\0{CARGO_CONFIG}\0{crate.resolve()}\0".encode())
    for manifest in (crate / "Cargo.toml", workspace_root / "Cargo.toml"):
        digest.update(manifest.read_bytes() if manifest.is_file() else b"-")
    return digest.hexdigest()


def derive(crate: Path, workspace_root: Path, driver_type: str) -> Path:
    """Writes the derived crate (manifest + link settings) and returns its folder.

    Unchanged inputs (both manifests, the model) leave it as it is: an unchanged
    build stays as cheap as cargo's own no-op. The KMDF source scan runs every time.
    """
    manifest = crate / "Cargo.toml"
    out = out_dir(crate)
    key = _inputs_key(crate, workspace_root, driver_type)
    if driver_type == "KMDF":
        import tomllib  # read only: faster than the config reader, and the manifest parsed before

        data_lib = tomllib.loads(manifest.read_text(encoding="utf-8")).get("lib") or {}
        used = uses_kmdf(crate, (crate / str(data_lib.get("path") or "src/lib.rs")).resolve())
        if used:
            raise ConfigError(f"{manifest}: a KMDF driver (WDF calls, e.g. {used}): KMDF needs Windows and the WDK, and Wine has no WDF", KMDF_HINT)
    stamp = out / KEY_NAME
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == key and (out / "Cargo.toml").is_file():
        return out
    _write(crate, workspace_root, out)
    write_atomic(stamp, key.encode("utf-8"))
    return out


def _write(crate: Path, workspace_root: Path, out: Path) -> None:
    import tomlkit

    manifest = crate / "Cargo.toml"
    data = _toml(manifest)
    package = dict(data.get("package") or {})
    lib = dict(data.get("lib") or {})
    lib_path = (crate / str(lib.get("path") or "src/lib.rs")).resolve()
    workspace = None
    if workspace_root.resolve() != crate.resolve():
        workspace = (workspace_root, _toml(workspace_root / "Cargo.toml"))
    elif "workspace" in data:
        workspace = (crate, data)

    def inherit(key: str, default: Any) -> Any:
        value = package.get(key, default)
        if isinstance(value, dict) and value.get("workspace") is True:
            return ((workspace[1].get("workspace") or {}).get("package") or {}).get(key, default) if workspace else default
        return value

    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Written by driverpipe from {manifest} for the WDM route (rust-lld, no WDK): do not edit, it is rewritten on every build."))
    doc["package"] = {
        "name": str(package.get("name")),
        "version": str(inherit("version", "0.0.0")),
        "edition": str(inherit("edition", "2021")),
        "publish": False,
        "build": False,
        "autobins": False,
        "autoexamples": False,
        "autotests": False,
        "autobenches": False,
    }
    doc["lib"] = {
        "name": str(lib.get("name") or str(package.get("name")).replace("-", "_")),
        "path": str(lib_path),
        "crate-type": ["cdylib"],
        "test": False,
        "doctest": False,
    }
    if isinstance(data.get("features"), dict):
        doc["features"] = data["features"]
    deps = tomlkit.table()
    for table in DEP_TABLES[:1]:
        for name, spec in (data.get(table) or {}).items():
            kept = _dep(name, spec, crate, workspace)
            if kept is not None:
                deps[kept[0]] = kept[1]
    doc["dependencies"] = deps
    profiles = (workspace[1] if workspace else data).get("profile") or {}
    profile = tomlkit.table()
    for name in ("dev", "release"):
        settings = dict(profiles.get(name) or {})
        settings["panic"] = "abort"  # no unwinder in a kernel image
        profile[name] = settings
    doc["profile"] = profile
    doc["workspace"] = tomlkit.table()  # its own root: never a member of the crate's workspace

    write_if_changed(out / "Cargo.toml", tomlkit.dumps(doc))
    write_if_changed(out / ".cargo" / "config.toml", CARGO_CONFIG)
    lock = workspace_root / "Cargo.lock"
    if lock.is_file() and not (out / "Cargo.lock").is_file():
        # The crate's own pins for every dependency it keeps; cargo drops the replaced ones.
        write_atomic(out / "Cargo.lock", lock.read_bytes())


def write_if_changed(path: Path, text: str) -> None:
    """Unchanged files keep their mtime, so cargo's no-op rebuild stays a no-op."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    write_atomic(path, data)
