"""Every PowerShell script the pipeline can send parses with the real grammar."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverpipe.psgrammar import parse_script

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in [*REPO.joinpath("src", "driverpipe", "scripts").rglob("*.ps1"), *REPO.joinpath("vm").rglob("*.ps1")])


def test_there_are_scripts_to_check() -> None:
    assert SCRIPTS, "no .ps1 scripts found"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_script_parses_with_tree_sitter_powershell(script: Path) -> None:
    info = parse_script(script)
    assert not info.errors, f"{script.name}: syntax errors at {info.errors}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_guest_scripts_declare_params_and_emit_json(script: Path) -> None:
    text = script.read_text(encoding="utf-8-sig")
    if "scripts" in script.parts and "guest" in script.parts:
        assert "ConvertTo-Json" in text, f"{script.name} must return structured JSON"
        assert "$ErrorActionPreference" in text, f"{script.name} must set $ErrorActionPreference"


def test_includes_expand_to_scripts_that_parse(tmp_path: Path) -> None:
    """`#include NAME.ps1` lines are spliced from scripts/lib; the sent text must still parse."""
    from driverpipe.guest.base import INCLUDE, SCRIPTS_DIR, load_script

    using = [p for p in SCRIPTS_DIR.glob("*.ps1") if INCLUDE.search(p.read_text(encoding="utf-8-sig"))]
    assert using, "no script uses a shared helper"
    for script in using:
        sent = load_script(script)
        assert "#include" not in sent
        assert sent.count("function Invoke-Native") == 1
        expanded = tmp_path / script.name
        expanded.write_text(sent, encoding="utf-8")
        info = parse_script(expanded)
        assert not info.errors, f"{script.name} (expanded): syntax errors at {info.errors}"
        assert info.params == parse_script(script).params
