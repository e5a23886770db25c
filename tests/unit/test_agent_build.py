"""Where the Wine agent is built: the user's cache, one folder per digest of its sources (targets/wine/agent.py).

The real build runs in the Wine integration tests; here: the crate ships inside the package, an
existing build of the same sources is used without cargo, a changed source means another folder,
and a missing cargo or crate is one line (exit 3).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from driverpipe.core.errors import EnvironmentProblem
from driverpipe.targets.wine import agent


@pytest.fixture
def crate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    copy = tmp_path / "site-packages" / "driverpipe" / "agent"
    shutil.copytree(agent.AGENT_CRATE, copy, ignore=shutil.ignore_patterns("target"))
    return copy


def test_the_crate_ships_in_the_package_with_its_link_settings() -> None:
    assert agent.AGENT_CRATE.parent.name == "driverpipe" and agent.AGENT_CRATE.name == "agent"
    names = {p.relative_to(agent.AGENT_CRATE).as_posix() for p in agent.agent_sources()}
    assert {"Cargo.toml", "Cargo.lock", ".cargo/config.toml", "src/main.rs"} <= names


def test_a_build_of_the_same_sources_is_used_without_cargo_and_nothing_is_written_beside_the_crate(
    crate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = agent.agent_exe(crate)
    assert exe.is_relative_to(tmp_path / "cache" / "driverpipe" / "agent") and exe.name == agent.AGENT_NAME
    exe.parent.mkdir(parents=True)
    exe.write_bytes(b"MZ")
    monkeypatch.setattr(shutil, "which", lambda _name: None)  # cargo would be needed for a build
    before = sorted(p.relative_to(crate) for p in crate.rglob("*"))
    assert agent.build_agent(crate=crate) == exe
    assert sorted(p.relative_to(crate) for p in crate.rglob("*")) == before


def test_a_changed_source_is_another_build_and_without_cargo_one_line(crate: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = agent.agent_exe(crate)
    main = crate / "src" / "main.rs"
    main.write_text(main.read_text(encoding="utf-8") + "\n// edited\n", encoding="utf-8")
    assert agent.agent_exe(crate) != old
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(EnvironmentProblem) as missing:
        agent.build_agent(crate=crate)
    assert missing.value.exit_code == 3 and "cargo is not installed" in missing.value.message


def test_a_missing_crate_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentProblem) as missing:
        agent.build_agent(crate=tmp_path / "nowhere")
    assert "the Wine agent's crate" in missing.value.message and "reinstall driverpipe" in missing.value.hint
