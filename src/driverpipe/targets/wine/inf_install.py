"""The service from the package's INF, installed by Wine's setupapi.

A primitive INF's [DefaultInstall] and a PnP INF's DDInstall section (reached
through [Manufacturer] and its models section) both go through
`rundll32 setupapi.dll,InstallHinfSection <section> 128 <inf>`: Wine's
InstallHinfSection installs the section and then its `.Services` companion,
which holds the AddService line. No device node is created: Wine has no PnP
manager for root-enumerated devices, so the service is started with sc like a
primitive driver's (on Windows, pnputil installs a PnP INF).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...image.inf import decode, install_section_name

DEFAULT = "DefaultInstall"


def section_for(inf: Path) -> str:
    """The section to install: DefaultInstall (Setup picks its decorated form) or the PnP DDInstall section."""
    try:
        text = decode(inf.read_bytes(), str(inf)).text
    except OSError:
        return DEFAULT  # the install then fails and the registry check names the INF
    name = install_section_name(text)
    if name is None or name.lower().startswith(DEFAULT.lower()):
        return DEFAULT
    return name


def install(wine: Callable[..., Any], inf: Path, remote_inf: str) -> None:
    """Runs InstallHinfSection on the INF's install section (rundll32 always exits 0: the caller checks the registry)."""
    wine(["rundll32", "setupapi.dll,InstallHinfSection", section_for(inf), "128", remote_inf], during="the INF install")
