"""Shared test plumbing.

Real components (QEMU, sshd, osslsigncode, cargo) are used for real. When one is
missing, a test that needs it SKIPS on a developer machine but FAILS under CI
(CI=true), so a broken install step can never turn into a green run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DRIVERPIPE_SHARED_DIR") or REPO.parent / "shared")  # a worktree elsewhere names it
CORPUS = SHARED / "corpus"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Require a real component: skip locally, fail in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required real component missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def need_tool(*names: str) -> Path:
    """Require an executable on PATH (first name found wins)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
    need(False, f"{' or '.join(names)} not on PATH")
    raise AssertionError("unreachable")


@pytest.fixture
def corpus() -> Path:
    need(CORPUS.is_dir(), f"shared corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated copy of the project's pyproject.toml in tmp_path, with an empty user config.

    Tests that exercise config/CLI run here so they never touch the real user's files.
    """
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
    user = tmp_path / "user-config.toml"
    user.write_text("", encoding="utf-8")  # an explicit DRIVERPIPE_CONFIG must name an existing file
    monkeypatch.setenv("DRIVERPIPE_CONFIG", str(user))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path.parent / f"{tmp_path.name}-state"))  # locks and Wine prefixes, outside the project
    for var in list(os.environ):
        if var.startswith("DRIVERPIPE_") and var not in ("DRIVERPIPE_CONFIG",):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def fake_powershell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `powershell` first on PATH (tests/sshd_server.py) and the guest scripts it knows; returns its bin dir."""
    import driverpipe.core.scripts as guest_base
    from sshd_server import install_fake_powershell

    bin_dir = install_fake_powershell(tmp_path / "fake")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(guest_base, "SCRIPTS_DIR", bin_dir.parent / "ps")
    return bin_dir


def run_invoke(cwd: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m invoke ARGS` on this repository's tasks.py, run from cwd (a test project)."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), *args],
        cwd=cwd,
        env=dict(env) if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
