"""Every PowerShell script the pipeline can send parses with the real grammar."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from driverpipe.parse.psgrammar import parse_script

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
    from driverpipe.core.scripts import INCLUDE, SCRIPTS_DIR, load_script

    using = [p for p in SCRIPTS_DIR.glob("*.ps1") if INCLUDE.search(p.read_text(encoding="utf-8-sig"))]
    assert using, "no script uses a shared helper"
    for script in using:
        sent = load_script(script)
        assert "#include" not in sent
        for name in INCLUDE.findall(script.read_text(encoding="utf-8-sig")):
            assert sent.count(f"function {name.removesuffix('.ps1')}") == 1, f"{script.name}: {name} spliced once"
        expanded = tmp_path / script.name
        expanded.write_text(sent, encoding="utf-8")
        info = parse_script(expanded)
        assert not info.errors, f"{script.name} (expanded): syntax errors at {info.errors}"
        assert info.params == parse_script(script).params


def _sent_text(script: Path) -> str:
    """What is really sent: the script with its #include lines expanded."""
    from driverpipe.core.scripts import load_script

    return load_script(script) if "guest" in script.parts else script.read_text(encoding="utf-8-sig")


def _code_lines(text: str) -> list[tuple[int, str]]:
    """Numbered lines without comments (a rule must not fire on the comment that explains it)."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        out.append((number, code))
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_script_scope_variables(script: Path) -> None:
    """Scripts run through [scriptblock]::Create + & (Invoke-Batch, the SSH/local wrapper, Invoke-InVm)
    have no script scope: `$script:x` lands in the global scope and a function never updates the script's value."""
    bad = [f"{script.name}:{n}" for n, code in _code_lines(_sent_text(script)) if "$script:" in code.lower()]
    assert not bad, f"$script: variables in {bad}: collect results in an object or return them"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_start_process_never_waits_for_descendants(script: Path) -> None:
    """`Start-Process -Wait` also waits for every process the child started (mspdbsrv, sccache): use -PassThru + WaitForExit()."""
    text = _sent_text(script)
    joined = text.replace("`\n", " ").replace("`\r\n", " ")
    bad = [line.strip() for line in joined.splitlines() if "start-process" in line.lower() and " -wait" in line.lower().split("#")[0]]
    assert not bad, bad


def test_a_downloaded_zip_keeps_the_zip_extension() -> None:
    """Expand-Archive in Windows PowerShell 5.1 refuses any other extension."""
    text = (REPO / "src" / "driverpipe" / "scripts" / "guest" / "Install-DebugView.ps1").read_text(encoding="utf-8-sig")
    assert "'.download.zip'" in text


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_native_stderr_is_never_redirected_under_stop(script: Path) -> None:
    """Under $ErrorActionPreference = 'Stop', `native.exe 2>&1` in Windows PowerShell 5.1 turns the first
    stderr line into a terminating error: run native programs through Invoke-Native (or lower the preference)."""
    text = _sent_text(script)
    lines = text.splitlines()
    bad = []
    for number, code in _code_lines(text):
        if "2>&1" in code and re.search(r"&\s*['\"$]?[\w.$]*\.exe\b", code, re.I):
            window = "\n".join(lines[max(0, number - 8) : number])
            if "ErrorActionPreference = 'Continue'" not in window:
                bad.append(f"{script.name}:{number}")
    assert not bad, f"native stderr redirected under 'Stop' at {bad}: use Invoke-Native"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_hyperv_integration_services_are_chosen_by_id_not_by_localized_name(script: Path) -> None:
    text = _sent_text(script)
    assert "PrimaryStatusDescription" not in text, f"{script.name}: the status description is localized; read PrimaryOperationalStatus"
    for name in ("'Heartbeat'", "'Guest Service Interface'", "'Time Synchronization'", "'Key-Value Pair Exchange'", "'Shutdown'"):
        assert f"-Name {name}" not in text or "IntegrationService" not in text, f"{script.name}: select integration services by their Id GUID"


def test_the_bootstrap_reuses_a_certificate_only_when_its_ip_sans_match() -> None:
    text = (REPO / "vm" / "guest" / "Bootstrap-TestGuest.ps1").read_text(encoding="utf-8-sig")
    assert "'2.5.29.17'" in text and "$missingIp.Count -eq 0" in text
