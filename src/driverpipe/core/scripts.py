"""The PowerShell scripts driverpipe ships, as they are sent.

Scripts live in driverpipe/scripts/ (guest/, lib/, hyperv/, host/...). Two ways to
run one: a guest transport sends its text (load_script, with `#include` lines
spliced in), and a local PowerShell runs a file with bound parameters (file_argv).
Kept in core so every layer (signing on the build host, VM hosts, --dry output)
can use them without importing a transport.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts" / "guest"
LIB_DIR = SCRIPTS_DIR.parent / "lib"
INCLUDE = re.compile(r"^#include\s+([A-Za-z0-9_.-]+\.ps1)\s*$", re.M)


def script_path(name: str) -> Path:
    """Path of a shipped guest script by file name (e.g. 'Get-GuestState.ps1')."""
    path = SCRIPTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no shipped guest script {name}")
    return path


def load_script(path: Path) -> str:
    """A script's text as sent: each `#include NAME.ps1` line replaced by scripts/lib/NAME.ps1.

    Scripts cannot import modules on the guest, so shared helpers are spliced in
    here, after the param() block where the include line stands.
    """
    text = path.read_text(encoding="utf-8-sig")

    def splice(match: re.Match[str]) -> str:
        lib = LIB_DIR / match.group(1)
        if not lib.is_file():
            raise FileNotFoundError(f"{path.name} includes {match.group(1)}, which is not in {LIB_DIR}")
        return lib.read_text(encoding="utf-8-sig").rstrip("\n")

    return INCLUDE.sub(splice, text)


def script_text(name: str) -> str:
    return load_script(script_path(name))


def file_argv(powershell: str, script: str, params: Mapping[str, Any]) -> list[str]:
    """`powershell.exe -File script -Name value ...` with each parameter bound by name (never script text).

    True is a switch (`-Name`), None/False leave the parameter out. A value starting
    with '-' is refused: -File would bind it as a parameter NAME, not a value.
    """
    argv = [powershell, "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File", script]
    for name, value in params.items():
        if value is True:
            argv.append(f"-{name}")
        elif value is not None and value is not False:
            text = str(value)
            if text.startswith("-"):
                raise ConfigError(f"the value {text!r} for -{name} starts with '-': PowerShell would read it as a parameter name", "rename it")
            argv += [f"-{name}", text]
    return argv


def unwrap_51_arrays(value: Any) -> Any:
    """Lists as lists, whichever PowerShell wrote them.

    Windows PowerShell 5.1 serializes an array that went through the pipeline or a
    PSObject wrapper as `{"value": [...], "Count": n}` (its extended type data adds
    Count); PowerShell 7 writes the bare array. Accept both.
    """
    if isinstance(value, dict):
        if set(value) == {"value", "Count"} and isinstance(value["value"], list) and value["Count"] == len(value["value"]):
            return [unwrap_51_arrays(v) for v in value["value"]]
        return {k: unwrap_51_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_51_arrays(v) for v in value]
    return value
