"""Find the Windows Driver Kit the way wdk-build does (note 01), as a reusable function.

Order: env WDKContentRoot (eWDK prompt) -> MicrosoftKitRoot + "Windows Kits" +
WDKKitVersion (default 10.0) -> registry HKLM\\SOFTWARE\\Microsoft\\Windows Kits\\
Installed Roots@KitsRoot10 -> the same key under Wow6432Node. SDK version: env
Version_Number, else the highest 10.* folder under <root>\\Lib. Tools live in
<root>\\bin\\<ver>\\<host-arch> (and <root>\\tools\\<ver>\\<host-arch>).

Checked here only with fake directory trees; never against a real WDK install.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import EnvironmentProblem

KITS_KEY = r"SOFTWARE\Microsoft\Windows Kits\Installed Roots"
KITS_KEY_WOW = r"SOFTWARE\Wow6432Node\Microsoft\Windows Kits\Installed Roots"
KITS_VALUE = "KitsRoot10"
TOOL_NAMES = ("stampinf", "inf2cat", "infverif", "signtool", "certmgr", "makecert")
INSTALL_HINT = (
    "install the WDK 10.0.22621 or 10.0.26100 (winget install Microsoft.WindowsWDK.10.0.26100, or NuGet Microsoft.Windows.WDK.x64), "
    "or run from an eWDK prompt (sets WDKContentRoot)"
)

#: Reads HKLM\<key>@<value> as a string (None if absent).
Registry = Callable[[str, str], "str | None"]


def host_is_windows() -> bool:
    """Whether the pipeline runs on Windows (tests monkeypatch this to drive the Windows flow)."""
    return sys.platform == "win32"


@dataclass
class WdkInfo:
    root: Path
    version: str  # SDK/WDK version folder, e.g. 10.0.26100.0
    bin_dir: Path
    tools_dir: Path
    source: str  # which discovery step found the root
    tools: dict[str, Path] = field(default_factory=dict)  # found tools only

    def tool(self, name: str) -> Path:
        """Path of a WDK tool; EnvironmentProblem if this kit lacks it."""
        try:
            return self.tools[name]
        except KeyError:
            raise EnvironmentProblem(
                f"WDK at {self.root} (version {self.version}) has no {name}.exe in {self.bin_dir}",
                "repair the WDK install (the tool ships with the WDK, not the SDK)",
            ) from None


def _registry_reader(key: str, value: str) -> str | None:
    if not host_is_windows():
        return None
    try:
        import winreg  # lazy and Windows-only
    except ImportError:  # a non-Windows Python told it runs on Windows (tests)
        return None
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key) as handle:  # type: ignore[attr-defined]
            data, kind = winreg.QueryValueEx(handle, value)  # type: ignore[attr-defined]
    except OSError:
        return None
    return str(data) if kind in (winreg.REG_SZ, winreg.REG_EXPAND_SZ) else None  # type: ignore[attr-defined]


def host_arch(env: Mapping[str, str]) -> str:
    """The WDK bin folder name for the machine running the tools."""
    arch = (env.get("PROCESSOR_ARCHITEW6432") or env.get("PROCESSOR_ARCHITECTURE") or "AMD64").upper()
    return {"AMD64": "x64", "ARM64": "arm64", "X86": "x86"}.get(arch, "x64")


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in name.split("."))
    except ValueError:
        return ()


def find_root(env: Mapping[str, str], registry: Registry) -> tuple[Path, str, list[str]]:
    """The WDK content root, the step that found it, and why earlier steps did not."""
    tried: list[str] = []
    content_root = env.get("WDKContentRoot")
    if content_root:
        if Path(content_root).is_dir():
            return Path(content_root), "WDKContentRoot", tried
        tried.append(f"WDKContentRoot={content_root} is not a directory")
    kit_root = env.get("MicrosoftKitRoot")
    if kit_root:
        path = Path(kit_root)
        if not (path.is_absolute() or _looks_like_windows_abs(kit_root)):
            tried.append(f"MicrosoftKitRoot={kit_root} is not an absolute path")
        elif not path.is_dir():
            tried.append(f"MicrosoftKitRoot={kit_root} is not a directory")
        else:
            candidate = path / "Windows Kits" / env.get("WDKKitVersion", "10.0")
            if candidate.is_dir():
                return candidate, "MicrosoftKitRoot", tried
            tried.append(f"{candidate} (from MicrosoftKitRoot/WDKKitVersion) is not a directory")
    for key in (KITS_KEY, KITS_KEY_WOW):
        found = registry(key, KITS_VALUE)
        if found:
            if Path(found).is_dir():
                return Path(found), f"registry HKLM\\{key}@{KITS_VALUE}", tried
            tried.append(f"registry {KITS_VALUE}={found} is not a directory")
    if not tried:
        tried.append("WDKContentRoot and MicrosoftKitRoot are unset and the registry has no KitsRoot10")
    raise EnvironmentProblem("Windows Driver Kit not found: " + "; ".join(tried), INSTALL_HINT)


def _looks_like_windows_abs(text: str) -> bool:
    return len(text) > 2 and text[1] == ":" and text[2] in "\\/"


def find_version(root: Path, env: Mapping[str, str]) -> str:
    explicit = (env.get("Version_Number") or "").strip().rstrip("\\/")
    if explicit:
        return explicit
    lib = root / "Lib"
    versions = [p.name for p in lib.iterdir() if p.is_dir() and p.name.startswith("10.") and _version_key(p.name)] if lib.is_dir() else []
    if not versions:
        raise EnvironmentProblem(f"WDK root {root} has no Lib\\10.* version folder", "install the WDK matching your Windows SDK (or set Version_Number)")
    return max(versions, key=_version_key)


def discover(env: Mapping[str, str] | None = None, registry: Registry | None = None) -> WdkInfo:
    """Locate the WDK and its tools; EnvironmentProblem (one line + fix) if it is not usable."""
    env = os.environ if env is None else env
    registry = registry or _registry_reader
    root, source, _ = find_root(env, registry)
    version = find_version(root, env)
    arch = host_arch(env)
    bin_dir = root / "bin" / version / arch
    if not bin_dir.is_dir():
        flat = root / "bin" / arch  # older kits had unversioned bin folders
        if not flat.is_dir():
            raise EnvironmentProblem(
                f"WDK {version} at {root} has no tools folder bin\\{version}\\{arch}",
                f"install the WDK for SDK {version} (the SDK alone lacks the driver tools), or set Version_Number",
            )
        bin_dir = flat
    tools_dir = root / "tools" / version / arch
    tools: dict[str, Path] = {}
    for name in TOOL_NAMES:
        for folder in (bin_dir, tools_dir):
            for candidate in (folder / f"{name}.exe", folder / name):
                if candidate.is_file():
                    tools.setdefault(name, candidate)
    return WdkInfo(root=root, version=version, bin_dir=bin_dir, tools_dir=tools_dir, source=source, tools=tools)


def find_tool(name: str, env: Mapping[str, str] | None = None, registry: Registry | None = None) -> Path:
    """A WDK tool from the discovered kit, else from PATH (eWDK prompts put them there)."""
    from ..core.runner import which

    try:
        info = discover(env, registry)
    except EnvironmentProblem as problem:
        found = which(name)
        if found:
            return found
        raise EnvironmentProblem(f"{name} not found: {problem.message}", problem.hint) from None
    if name in info.tools:
        return info.tools[name]
    found = which(name)
    if found:
        return found
    return info.tool(name)
