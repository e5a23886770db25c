"""The Invoke task surface as a user meets it: list, help, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_invoke

REPO = Path(__file__).resolve().parents[2]
TASKS = [
    "build",
    "package",
    "sign",
    "deploy",
    "unload",
    "verify",
    "logs",
    "regress",
    "doctor",
    "provision",
    "target-add",
    "vm.status",
    "vm.start",
    "vm.stop",
    "vm.revert",
    "vm.snapshot",
]


def invoke(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_invoke(project, *args)


def test_list_shows_every_task_with_help(project: Path) -> None:
    done = invoke(project, "--list")
    assert done.returncode == 0, done.stderr
    for name in TASKS:
        line = next((ln for ln in done.stdout.splitlines() if ln.strip().startswith(name + " ")), None)
        assert line is not None, f"{name} missing from invoke --list"
        assert len(line.split(None, 1)) == 2, f"{name} has no help text"


def test_every_task_option_has_help() -> None:
    sys.path.insert(0, str(REPO))
    try:
        from tasks import ns  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(REPO))
    for name in ns.task_names:
        task = ns[name]
        assert task.__doc__, f"{name} has no docstring"
        for arg in task.get_arguments():
            assert arg.help, f"{name} --{arg.name} has no help"


def test_malformed_user_config_is_one_line_exit_2(project: Path) -> None:
    (project / "user-config.toml").write_text("[targets.a]\nhost = 'h'\nbogus_key = 1\n")
    done = invoke(project, "doctor")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "targets.a.bogus_key: unknown key" in lines[0]


def test_missing_target_is_exit_2(project: Path) -> None:
    (project / "user-config.toml").write_text("[targets.a]\nhost = 'h'\n")
    done = invoke(project, "deploy", "--target", "nope")
    assert done.returncode == 2, done.stderr
    assert "targets.nope: no such target" in done.stderr
    assert "Traceback" not in done.stderr


def test_target_add_keeps_comments_and_dry_writes_nothing(project: Path) -> None:
    user = project / "user-config.toml"
    user.write_text("# lab machines\n")
    done = invoke(project, "--dry", "target-add", "--name", "win11", "--host", "127.0.0.1", "--password-env", "WIN11_PW")
    assert done.returncode == 0, done.stderr
    assert "[dry]" in done.stdout and user.read_text() == "# lab machines\n"
    done = invoke(project, "target-add", "--name", "win11", "--host", "127.0.0.1", "--password-env", "WIN11_PW", "--test-machine")
    assert done.returncode == 0, done.stderr
    text = user.read_text()
    assert text.startswith("# lab machines") and "[targets.win11]" in text and "test_machine = true" in text


def test_no_project_is_one_line_exit_2(tmp_path: Path) -> None:
    done = invoke(tmp_path, "doctor")
    assert done.returncode == 2 and "no pyproject.toml with a [tool.driverpipe] table" in done.stderr


@pytest.mark.parametrize("module", ["paramiko", "pypsrp", "lief", "cryptography", "asn1crypto", "qemu.qmp", "tomlkit"])
def test_list_imports_no_heavy_library(module: str) -> None:
    code = (
        f"import sys; sys.argv=['invoke','--search-root',{str(REPO)!r},'--list'];"
        "from invoke.main import program\n"
        "try:\n program.run(exit=False)\nexcept SystemExit: pass\n"
        f"print('LOADED' if {module!r} in sys.modules else 'CLEAN')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip().endswith("CLEAN"), f"`invoke --list` imported {module}"
