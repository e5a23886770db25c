"""One test per hardening class that the CLI sweep (test_bad_input_sweep.py) cannot express as a single bad value."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_invoke
from fakes_build.pe import make_pe
from sshd_server import free_port

REPO = Path(__file__).resolve().parents[2]


def _checkout(project: Path) -> None:
    shutil.copytree(REPO / "driver", project / "driver", ignore=shutil.ignore_patterns("target"))
    shutil.copytree(REPO / "inf", project / "inf")


def _errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in done.stderr, done.stderr
    return [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]


def test_an_os_error_while_writing_is_one_line_exit_3(project: Path, tmp_path: Path) -> None:
    """driver/target is a file, so the build manifest cannot be written: one line, no traceback."""
    _checkout(project)
    (project / "driver" / "target").write_text("not a folder\n", encoding="utf-8")
    image = tmp_path / "WazabiEDR_Driver.sys"
    image.write_bytes(make_pe())
    done = run_invoke(project, "build", "--from", str(image))
    errors = _errors(done)
    assert done.returncode == 3 and len(errors) == 1, done.stderr
    assert "driver/target" in errors[0] and "(fix:" in errors[0]


def test_a_world_writable_cert_dir_is_refused_and_never_chmodded(project: Path, tmp_path: Path) -> None:
    _checkout(project)
    shared = tmp_path / "shared-keys"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    image = tmp_path / "WazabiEDR_Driver.sys"
    image.write_bytes(make_pe())
    assert run_invoke(project, "build", "--from", str(image)).returncode == 0
    env = dict(os.environ, DRIVERPIPE_SIGN_CERT_DIR=str(shared), DRIVERPIPE_PFX_PASSWORD="pfx-Secret-42")
    done = run_invoke(project, "sign", env=env)
    errors = _errors(done)
    assert done.returncode == 2 and len(errors) == 1 and "writable by group or others" in errors[0], done.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777, "the folder's mode must be left alone"
    assert not any(shared.iterdir())


def test_regress_against_an_unreachable_guest_is_one_line_exit_3_quickly(project: Path) -> None:
    shutil.copytree(REPO / "tests" / "vm", project / "tests" / "vm", ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    (project / "user-config.toml").write_text(
        f"[targets.w]\nhost = '127.0.0.1'\nport = {port}\nuser = 'u'\npassword_env = 'WPW'\ntest_machine = true\n[targets.w.winrm]\nconnection_timeout = 3\n",
        encoding="utf-8",
    )
    start = time.monotonic()
    done = run_invoke(project, "regress", "--target", "w", env=dict(os.environ, WPW="x"))
    took = time.monotonic() - start
    errors = _errors(done)
    assert done.returncode == 3 and len(errors) == 1, done.stderr + done.stdout
    assert "connection refused" in errors[0]
    assert took < 30, f"took {took:.0f} s"
    assert "test_" not in done.stdout, "no phase output when the guest never answered"


def test_values_starting_with_a_dash_never_become_powershell_parameter_names() -> None:
    from driverpipe.core.errors import ConfigError
    from driverpipe.core.scripts import file_argv

    argv = file_argv("powershell", "s.ps1", {"Name": "vm1", "Rotate": True, "Skip": False, "Gone": None})
    assert argv[-3:] == ["-Name", "vm1", "-Rotate"]
    with pytest.raises(ConfigError, match="starts with '-'"):
        file_argv("powershell", "s.ps1", {"VMName": "-Force"})


def test_remote_file_names_are_reduced_to_safe_base_names() -> None:
    from driverpipe.core.errors import StepFailed
    from driverpipe.core.files import safe_basename

    assert safe_basename("C:\\Windows\\Minidump\\120526-01.dmp", "dump") == "120526-01.dmp"
    assert safe_basename("/var/log/x.log", "log") == "x.log"
    for bad in ("", ".", "..", "C:", "C:\\x\\", "a/..", "x\\C:evil", "a\0b"):
        with pytest.raises(StepFailed):
            safe_basename(bad, "dump")


def test_a_config_file_saved_with_a_bom_loads(project: Path) -> None:
    (project / "user-config.toml").write_bytes(b"\xef\xbb\xbf[targets.a]\nhost = 'h'\n")
    done = run_invoke(project, "doctor", "--tasks", "sign")
    assert "error:" not in done.stderr, done.stderr
    assert done.returncode in (0, 3)


def test_doctor_shows_whole_details(project: Path) -> None:
    done = run_invoke(project, "doctor", "--tasks", "build")
    assert "..." not in done.stdout.replace("...]", ""), done.stdout


def test_target_add_default_sets_default_target(project: Path) -> None:
    done = run_invoke(project, "target-add", "--name", "win11", "--host", "127.0.0.1", "--password-env", "WPW", "--user", "u", "--default")
    assert done.returncode == 0, done.stderr
    text = (project / "user-config.toml").read_text(encoding="utf-8")
    assert 'default_target = "win11"' in text and "[targets.win11]" in text


def test_dry_main_job_previews_the_whole_chain_on_linux(project: Path) -> None:
    _checkout(project)
    done = run_invoke(project, "--dry", "build", "sign", "deploy", env=dict(os.environ, XDG_STATE_HOME=str(project.parent / "dry-state")))
    assert done.returncode == 0, done.stderr
    text = done.stdout + done.stderr
    for step in ("cargo build --release", "would sign", "would write the unsigned catalog", "wazabi-wine-client.exe start WazabiEDR"):
        assert step in text, step
    assert not (project / "driver" / "target").exists()
