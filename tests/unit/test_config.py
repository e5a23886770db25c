"""Layered configuration: validation errors are one clear line with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverpipe.core import config
from driverpipe.core.errors import ConfigError, ExitCode


def write_user(project: Path, text: str) -> Path:
    path = project / "user-config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_come_from_pyproject(project: Path) -> None:
    cfg = config.load()
    assert cfg.project.service_name == "WazabiEDR"
    assert cfg.project.build.profile == "release"
    assert cfg.project.expect.load.sequence[0] == "[WazabiEDR] DriverEntry called"
    assert cfg.project.regress.fault_steps == ["IoCreateDevice", "IoCreateSymbolicLink"]
    assert dict(cfg.user.targets) == {}


def test_user_targets_are_validated_and_defaulted(project: Path) -> None:
    write_user(project, '[targets.win11]\nhost = "127.0.0.1"\nport = 55986\nuser = "Administrator"\npassword_env = "WIN11_PW"\n')
    target = config.load().target("win11")
    assert target.transport == "winrm" and target.port == 55986
    assert target.winrm["ssl"] is True and target.winrm["auth"] == "negotiate"
    assert target.test_machine is False


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[targets.a]\nhost = "h"\nprot = 1\n', "targets.a.prot: unknown key (fix: did you mean 'port'?)"),
        ('[targets.a]\nhost = "h"\nport = "22"\n', "targets.a.port: expected an integer"),
        ('[targets.a]\nhost = "h"\ntransport = "telnet"\n', "use one of: winrm, ssh, local"),
        ('[targets.a]\nhost = "h"\npassword = "hunter2"\n', "secrets are never read from files"),
        ('[targets.a]\ntransport = "ssh"\n', "targets.a.host: required for transport ssh"),
        ('[vm_hosts.q]\nbinary = "x"\n', "vm_hosts.q.kind: missing or unknown kind"),
        ('[targets.a]\nhost = "h"\nvm_host = "nope"\n', "targets.a.vm_host: no vm_hosts.nope"),
        ('[targets.a]\nhost = "h"\n[targets.a.winrm]\nssl = false\nauth = "basic"\n', "Basic auth over plain HTTP"),
        ("[targets.a\nhost = 1\n", "invalid TOML at line 1"),
    ],
)
def test_bad_user_config_is_one_line_naming_file_and_key(project: Path, text: str, needle: str) -> None:
    path = write_user(project, text)
    with pytest.raises(ConfigError) as info:
        config.load()
    line = info.value.one_line()
    assert needle in line
    assert str(path) in line
    assert "\n" not in line
    assert info.value.exit_code == ExitCode.BAD_INPUT


def test_unknown_target_names_the_known_ones(project: Path) -> None:
    write_user(project, '[targets.win11]\nhost = "h"\n[targets.win10]\nhost = "h"\n')
    with pytest.raises(ConfigError) as info:
        config.load().target("win12")
    assert "targets.win12: no such target" in info.value.one_line()
    assert "did you mean" in info.value.one_line()


def test_no_target_at_all_says_how_to_add_one(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.sys, "platform", "win32")
    with pytest.raises(ConfigError, match="no target given"):
        config.load().target(None)


def test_no_target_on_linux_is_the_builtin_wine_target(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.sys, "platform", "linux")
    target = config.load().target(None)
    assert target.name == "wine" and target.transport == "wine" and target.get("builtin")
    assert target.wine["prefix"] == ""  # resolved to the per-user state dir, never the repository
    assert config.load().target("wine").transport == "wine"


def test_a_configured_wine_target_wins_over_the_builtin(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.sys, "platform", "linux")
    (project / "user-config.toml").write_text('[targets.wine]\ntransport = "wine"\n[targets.wine.wine]\nprefix = "/srv/p"\n', encoding="utf-8")
    target = config.load().target("wine")
    assert target.wine["prefix"] == "/srv/p" and not target.get("builtin")
    with pytest.raises(ConfigError, match="no target given"):  # targets configured, none chosen: no silent fallback
        config.load().target(None)


def test_bad_pyproject_key_is_reported(project: Path) -> None:
    path = project / "pyproject.toml"
    path.write_text(path.read_text() + "\n[tool.driverpipe.sign.extra]\nx = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"pyproject.toml \[tool.driverpipe\]: sign.extra: unknown key"):
        config.load()


def test_environment_overrides_file_and_flags_override_environment(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIVERPIPE_SIGN_BACKEND", "osslsigncode")
    monkeypatch.setenv("DRIVERPIPE_DEPLOY_REBOOT_TIMEOUT", "42")
    cfg = config.load()
    assert cfg.project.sign.backend == "osslsigncode"
    assert cfg.project.deploy.reboot_timeout == 42.0
    assert cfg.sources["sign.backend"] == "DRIVERPIPE_SIGN_BACKEND"
    cfg = config.load(flags={"sign.backend": "signtool"})
    assert cfg.project.sign.backend == "signtool"
    assert cfg.sources["sign.backend"] == "flag"


def test_bad_environment_value_is_one_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIVERPIPE_REGRESS_CYCLES", "ten")
    with pytest.raises(ConfigError, match="environment DRIVERPIPE_REGRESS_CYCLES: 'ten' is not an integer"):
        config.load()


def test_env_override_names_are_unique_and_derived_from_schema() -> None:
    names = config.env_overrides()
    assert "DRIVERPIPE_BUILD_PROFILE" in names
    assert "DRIVERPIPE_SIGN_PFX_PASSWORD_ENV" in names
    assert len(names) == len(set(names))


def test_default_target_from_environment(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_user(project, '[targets.win11]\nhost = "h"\n')
    monkeypatch.setenv("DRIVERPIPE_TARGET", "win11")
    assert config.load().target(None).name == "win11"


def test_add_named_entry_keeps_comments_and_is_validated(project: Path) -> None:
    path = write_user(project, '# my lab\ndefault_target = "old"  # keep me\n\n[targets.old]\nhost = "10.0.0.1" # the old box\n')
    config.add_named_entry(path, "targets", "new", {"host": "127.0.0.1", "port": 55986, "winrm.ssl": False})
    text = path.read_text()
    assert "# my lab" in text and "# keep me" in text and "# the old box" in text
    cfg = config.load()
    assert cfg.user.targets["new"]["winrm"]["ssl"] is False
    before = path.read_text()
    with pytest.raises(ConfigError):
        config.add_named_entry(path, "targets", "bad", {"transport": "telnet", "host": "h"})
    assert path.read_text() == before, "a rejected change must leave the file untouched"
