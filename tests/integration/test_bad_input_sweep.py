"""Bad input through the real CLI, as a careless or hostile user types it.

Each case runs `invoke ...` in a subprocess on an isolated copy of the project and
asserts: the documented exit code, exactly one `error:` line that names the
problem, no traceback, and no file in the project or the user config changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# (id, argv, extra environment, user config text (None: empty), expected exit code, a substring of the error line)
CASES: list[tuple[str, list[str], dict[str, str], str | None, int, str]] = [
    ("sign-backend", ["--dry", "sign", "--backend", "bogus"], {}, None, 2, "--backend (sign.backend): 'bogus' is not allowed"),
    ("build-profile", ["--dry", "build", "--profile", "bogus"], {}, None, 2, "--profile (build.profile): 'bogus' is not allowed"),
    ("build-model", ["--dry", "build", "--model", "windows"], {}, None, 2, "--model (build.model): 'windows' is not allowed"),
    ("build-feature", ["--dry", "build", "--features", "bad!feature"], {}, None, 2, "not a cargo feature name"),
    ("cycles-0", ["--dry", "regress", "--cycles", "0"], {}, None, 2, "--cycles (regress.cycles): 0 is below 1"),
    ("cycles-neg", ["--dry", "regress", "--cycles", "-1"], {}, None, 2, "is below 1"),
    ("cycles-text", ["--dry", "regress", "--cycles", "ten"], {}, None, 2, "'ten' is not an integer"),
    ("add-port-text", ["target-add", "--name", "x", "--host", "h", "--port", "abc"], {}, None, 2, "--port: 'abc' is not an integer"),
    ("add-port-big", ["target-add", "--name", "x", "--host", "h", "--port", "70000"], {}, None, 2, "70000 is not a TCP port"),
    ("add-port-neg", ["target-add", "--name", "x", "--host", "h", "--port", "-1"], {}, None, 2, "-1 is not a TCP port"),
    ("add-name-dots", ["target-add", "--name", "../evil", "--host", "h"], {}, None, 2, "'../evil' is not a plain name"),
    ("add-name-slash", ["target-add", "--name", "a/b", "--host", "h"], {}, None, 2, "'a/b' is not a plain name"),
    ("add-transport", ["target-add", "--name", "x", "--host", "h", "--transport", "telnet"], {}, None, 2, "--transport: 'telnet' is not allowed"),
    ("stop-timeout-text", ["vm.stop", "--timeout", "abc"], {}, None, 2, "--timeout: 'abc' is not a number"),
    ("stop-timeout-nan", ["vm.stop", "--timeout", "nan"], {}, None, 2, "nan is not a finite number"),
    ("stop-timeout-inf", ["vm.stop", "--timeout", "inf"], {}, None, 2, "inf is not a finite number"),
    ("stop-timeout-neg", ["vm.stop", "--timeout", "-5"], {}, None, 2, "must be above 0"),
    ("snapshot-dots", ["vm.snapshot", "--name", "../x"], {}, None, 2, "'../x' is not a plain name"),
    ("snapshot-backslash", ["vm.snapshot", "--name", "a\\b"], {}, None, 2, "is not a plain name"),
    ("revert-dotdot", ["vm.revert", "--name", ".."], {}, None, 2, "'..' is not a plain name"),
    ("verify-phase", ["verify", "--log", "LOGFILE", "--phase", "bogus"], {}, None, 2, "bogus"),
    ("verify-log-missing", ["verify", "--log", "/nonexistent/dbgview.log"], {}, None, 2, "/nonexistent/dbgview.log"),
    ("verify-log-dir", ["verify", "--log", "ADIR"], {}, None, 2, "ADIR"),
    ("from-missing", ["build", "--from", "/nonexistent/x.sys"], {}, None, 2, "--from /nonexistent/x.sys: no such file"),
    ("from-dir", ["build", "--from", "ADIR.sys"], {}, None, 2, "not a regular file"),
    ("from-device", ["build", "--from", "/dev/null"], {}, None, 2, "not a regular file"),
    ("from-text", ["build", "--from", "TEXT.sys"], {}, None, 2, "is not a PE image"),
    ("from-ext", ["build", "--from", "NOTES.txt"], {}, None, 2, "expected a .dll or .sys"),
    ("from-relative", ["build", "--from", "./not-here.sys"], {}, None, 2, "no such file"),
    ("deploy-unknown", ["deploy", "--target", "nosuch"], {}, "[targets.a]\nhost = 'h'\n", 2, "targets.nosuch: no such target"),
    ("unload-unknown", ["unload", "--target", "nosuch"], {}, "[targets.a]\nhost = 'h'\n", 2, "targets.nosuch: no such target"),
    ("env-profile", ["doctor"], {"DRIVERPIPE_BUILD_PROFILE": "bogus"}, None, 2, "DRIVERPIPE_BUILD_PROFILE: 'bogus' is not allowed"),
    ("env-timeout-nan", ["doctor"], {"DRIVERPIPE_DEPLOY_SCRIPT_TIMEOUT": "nan"}, None, 2, "nan is not a finite number"),
    ("env-timeout-neg", ["doctor"], {"DRIVERPIPE_DEPLOY_SCRIPT_TIMEOUT": "-1"}, None, 2, "must be above 0"),
    ("env-cycles", ["doctor"], {"DRIVERPIPE_REGRESS_CYCLES": "ten"}, None, 2, "'ten' is not an integer"),
    ("env-poll-0", ["doctor"], {"DRIVERPIPE_DEBUGVIEW_POLL_INTERVAL": "0"}, None, 2, "must be above 0"),
    ("env-config-missing", ["doctor"], {"DRIVERPIPE_CONFIG": "/nonexistent/config.toml"}, None, 2, "DRIVERPIPE_CONFIG=/nonexistent/config.toml: no such file"),
    ("env-config-dir", ["doctor"], {"DRIVERPIPE_CONFIG": "ADIR"}, None, 2, "not a regular file"),
    ("cfg-toml", ["doctor"], {}, "[targets.a\nhost=", 2, "invalid TOML"),
    ("cfg-unknown-key", ["doctor"], {}, "[targets.a]\nhots = 'h'\n", 2, "targets.a.hots: unknown key"),
    ("cfg-port-big", ["doctor"], {}, "[targets.a]\nhost = 'h'\nport = 70000\n", 2, "targets.a.port: 70000 is not a TCP port"),
    ("cfg-port-text", ["doctor"], {}, "[targets.a]\nhost = 'h'\nport = '22'\n", 2, "targets.a.port: expected an integer"),
    ("cfg-target-name", ["doctor"], {}, "[targets.'../x']\nhost = 'h'\n", 2, "is not a plain name"),
    ("cfg-forward", ["doctor"], {}, "[vm_hosts.q]\nkind = 'qemu'\nforward_winrm = 99999\n", 2, "forward_winrm: 99999 is not a TCP port"),
    ("cfg-secret", ["doctor"], {}, "[targets.a]\nhost = 'h'\npassword = 'hunter2'\n", 2, "password_env"),
    (
        "cfg-basic-unverified",
        ["doctor"],
        {},
        "[targets.a]\nhost = 'h'\n[targets.a.winrm]\nauth = 'basic'\ncert_validation = false\n",
        2,
        "allow_unverified_basic",
    ),
    ("cfg-basic-http", ["doctor"], {}, "[targets.a]\nhost = 'h'\n[targets.a.winrm]\nauth = 'basic'\nssl = false\n", 2, "allow_basic_http"),
    ("cfg-clean-state", ["doctor"], {}, "[targets.a]\nhost = 'h'\nclean_state = '../x'\n", 2, "clean_state: '../x' is not a plain name"),
    ("cfg-vm-host", ["doctor"], {}, "[targets.a]\nhost = 'h'\nvm_host = 'missing'\n", 2, "no vm_hosts.missing"),
    ("cfg-no-host", ["doctor"], {}, "[targets.a]\ntransport = 'ssh'\n", 2, "host: required"),
    ("cfg-memory", ["doctor"], {}, "[vm_hosts.q]\nkind = 'qemu'\nmemory_mb = 1\n", 2, "memory_mb: 1 is below 16"),
    ("cfg-kind", ["doctor"], {}, "[vm_hosts.q]\nkind = 'vmware'\n", 2, "unknown kind"),
    ("cfg-wine-prefix", ["deploy", "--target", "w"], {}, "[targets.w]\ntransport = 'wine'\n[targets.w.wine]\nprefix = 'inside'\n", 2, "is inside the project"),
    ("cfg-start-timeout", ["doctor"], {}, "[targets.w]\ntransport = 'wine'\n[targets.w.wine]\nstart_timeout = 0\n", 2, "must be above 0"),
    (
        "vm-stop-not-test",
        ["vm.stop", "--target", "a"],
        {},
        "[targets.a]\ntransport = 'local'\nvm_host = 'q'\n[vm_hosts.q]\nkind = 'qemu'\n",
        2,
        "test_machine is not true",
    ),
    (
        "vm-revert-not-test",
        ["vm.revert", "--target", "a"],
        {},
        "[targets.a]\ntransport = 'local'\nvm_host = 'q'\n[vm_hosts.q]\nkind = 'qemu'\n",
        2,
        "test_machine is not true",
    ),
    ("provision-not-test", ["provision", "--target", "a"], {}, "[targets.a]\nhost = 'h'\npassword_env = 'P'\n", 2, "test_machine is false"),
    ("regress-not-test", ["regress", "--target", "a"], {}, "[targets.a]\nhost = 'h'\npassword_env = 'P'\n", 2, "test_machine is false"),
    (
        "ssh-key-missing",
        ["unload", "--target", "s"],
        {},
        "[targets.s]\ntransport = 'ssh'\nhost = '127.0.0.1'\nuser = 'u'\n[targets.s.ssh]\nkey_file = '/nonexistent/id'\n",
        2,
        "ssh.key_file /nonexistent/id: no such file",
    ),
    (
        "ssh-key-garbage",
        ["unload", "--target", "s"],
        {},
        "[targets.s]\ntransport = 'ssh'\nhost = '127.0.0.1'\nuser = 'u'\n[targets.s.ssh]\nkey_file = 'TEXT.sys'\n",
        2,
        "not what it should be",
    ),
    (
        "ssh-known-hosts",
        ["unload", "--target", "s"],
        {},
        "[targets.s]\ntransport = 'ssh'\nhost = '127.0.0.1'\nuser = 'u'\n[targets.s.ssh]\nknown_hosts = 'LATIN1'\n",
        2,
        "not UTF-8 text",
    ),
    (
        "ca-missing",
        ["unload", "--target", "w"],
        {"WPW": "x"},
        "[targets.w]\nhost = '127.0.0.1'\npassword_env = 'WPW'\nuser = 'u'\n[targets.w.winrm]\nca_bundle = '/nonexistent/ca.pem'\n",
        2,
        "winrm.ca_bundle /nonexistent/ca.pem: no such file",
    ),
    (
        "ca-garbage",
        ["unload", "--target", "w"],
        {"WPW": "x"},
        "[targets.w]\nhost = '127.0.0.1'\npassword_env = 'WPW'\nuser = 'u'\n[targets.w.winrm]\nca_bundle = 'TEXT.sys'\n",
        2,
        "no '-----BEGIN CERTIFICATE-----' block",
    ),
    (
        "pyproject-poll",
        ["doctor"],
        {"PYPROJECT_EXTRA": "[tool.driverpipe.debugview]\npoll_interval = -1\n"},
        None,
        2,
        "debugview.poll_interval: -1 must be above 0",
    ),
    ("pyproject-unknown", ["doctor"], {"PYPROJECT_EXTRA": "[tool.driverpipe.debugview]\npol_interval = 1\n"}, None, 2, "debugview.pol_interval: unknown key"),
]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sweep_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    shutil.copy(REPO / "pyproject.toml", root)
    shutil.copytree(REPO / "driver", root / "driver", ignore=shutil.ignore_patterns("target"))
    shutil.copytree(REPO / "inf", root / "inf")
    shutil.copytree(REPO / "tests" / "vm", root / "tests" / "vm", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "ADIR").mkdir()
    (root / "ADIR.sys").mkdir()
    (root / "TEXT.sys").write_text("just text\n", encoding="utf-8")
    (root / "NOTES.txt").write_text("notes\n", encoding="utf-8")
    (root / "LATIN1").write_bytes(b"h\xe9llo ssh-ed25519 AAAA\n")
    (root / "LOGFILE").write_text("00000001\t0.0\t[WazabiEDR] DriverEntry called\n", encoding="utf-8")
    return root


@pytest.mark.parametrize(("argv", "env", "user", "code", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_the_documented_code_and_changes_nothing(
    sweep_project: Path, argv: list[str], env: dict[str, str], user: str | None, code: int, says: str
) -> None:
    root = sweep_project
    user_file = root / "user-config.toml"
    user_file.write_text(user or "", encoding="utf-8")
    pyproject = root / "pyproject.toml"
    original = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    pyproject.write_text(original + "\n" + env.get("PYPROJECT_EXTRA", ""), encoding="utf-8")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DRIVERPIPE_")}
    full_env.update(DRIVERPIPE_CONFIG=str(user_file), XDG_STATE_HOME=str(root.parent / "sweep-state"), XDG_DATA_HOME=str(root.parent / "sweep-data"))
    for key, value in env.items():
        if key != "PYPROJECT_EXTRA":
            full_env[key] = str(root / value) if value in ("ADIR",) else value
    args = [str(root / a) if a in ("ADIR", "ADIR.sys", "TEXT.sys", "NOTES.txt", "LOGFILE") else a for a in argv]
    user = (user or "").replace("'TEXT.sys'", f"'{root / 'TEXT.sys'}'").replace("'LATIN1'", f"'{root / 'LATIN1'}'")
    user_file.write_text(user, encoding="utf-8")
    before = _snapshot(root)
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), *args], cwd=root, env=full_env, capture_output=True, text=True, timeout=120, check=False
    )
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, f"expected one error line, got:\n{done.stderr}"
    assert says in errors[0], errors[0]
    assert done.returncode == code, errors[0]
    assert _snapshot(root) == before, "bad input must change nothing"


def test_the_sweep_has_at_least_60_cases() -> None:
    assert len(CASES) >= 60
