"""Every script as sent is checked against Windows PowerShell 5.1's command surface.

The surface (tests/ps51/surface.json) is read from Microsoft's references by
tests/ps51/build_surface.py; the check (tests/ps51/check.py) must find each planted
mistake below and nothing in the shipped scripts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driverpipe.core.scripts import load_script
from ps51.build_surface import parse_aliases, parse_cmdlet
from ps51.check import SURFACE, check_text, surface

REPO = Path(__file__).resolve().parents[2]
SENT = sorted(
    p
    for p in [*REPO.joinpath("src", "driverpipe", "scripts").rglob("*.ps1"), *REPO.joinpath("vm").rglob("*.ps1")]
    if p.parent.name != "lib"  # library pieces are checked inside the scripts that include them
)


@pytest.mark.parametrize("script", SENT, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_script_uses_only_the_51_surface(script: Path) -> None:
    assert check_text(script.name, load_script(script)) == []


def test_the_surface_names_its_sources_and_covers_the_modules_used() -> None:
    data = json.loads(SURFACE.read_text(encoding="utf-8"))
    for source in data["sources"].values():
        assert len(source["commit"]) == 40
    for cmdlet in ("ConvertTo-Json", "Get-VM", "Register-ScheduledTask", "New-NetFirewallRule", "New-SelfSignedCertificate", "Get-CimInstance"):
        assert cmdlet.lower() in surface()
    assert "Test-Json".lower() not in surface()  # PowerShell 6.1+
    assert "AsHashtable" not in surface()["convertfrom-json"]["params"]  # PowerShell 6+
    assert data["aliases"]["gci"] == "Get-ChildItem" and data["aliases"]["%"] == "ForEach-Object"


PLANTED = [
    ("unknown-command", "Test-Json -Json '{}'"),
    ("unknown-command", "Get-Uptime"),
    ("alias", "gci -LiteralPath C:\\ | % { $_.Name }"),
    ("alias", "sleep -Seconds 1"),
    ("unknown-parameter", "ConvertFrom-Json -InputObject $t -AsHashtable"),
    ("unknown-parameter", "1..3 | ForEach-Object -Parallel { $_ }"),
    ("unknown-parameter", "Get-Content -LiteralPath x -AsByteStream"),
    ("ambiguous-parameter", "Get-ChildItem -LiteralPath x -Fi y"),
    ("switch-value", "Remove-Item -LiteralPath x -Force $true"),
    ("missing-value", "Get-Item -LiteralPath -Force"),
    ("parameter-sets", "Test-Path -Path a -LiteralPath b"),
    ("parameter-sets", "Get-VM -Name a -Id ([guid]::Empty)"),
    ("mandatory", "New-Item -ItemType Directory"),
    ("mandatory", "Register-ScheduledTask -Action $a"),
    ("ps7-syntax", "Get-Item -LiteralPath a && Get-Item -LiteralPath b"),
    ("ps7-syntax", "$x = $a ?? 1"),
    ("json-depth", "ConvertTo-Json -InputObject $o -Compress"),
    ("native-direct", "sc.exe query WazabiEDR"),
]


@pytest.mark.parametrize(("rule", "text"), PLANTED, ids=[f"{r}:{t[:30]}" for r, t in PLANTED])
def test_each_rule_finds_its_planted_mistake(rule: str, text: str) -> None:
    found = check_text("planted.ps1", text + "\n")
    assert any(f": {rule}: " in f for f in found), found
    assert all(f.startswith("planted.ps1:1: ") for f in found)


@pytest.mark.parametrize(
    "text",
    [
        "Join-Path $a 'b'",  # mandatory parameters given by position
        "Get-ChildItem -LiteralPath x -File -Filter *.log",  # a provider parameter the syntax block leaves out
        "New-Item -Path x -ItemType Directory -Force | Out-Null",
        "Get-Service | Where-Object { $_.Status -eq 'Running' }",  # piped: mandatory comes from the pipeline
        "Remove-Item -LiteralPath x -Force:$true -ErrorAction SilentlyContinue",
        "Copy-Item @splat",
        "function Get-Mine { 1 }\nGet-Mine",
        "ConvertTo-Json -InputObject $o -Compress -Depth 4",
    ],
)
def test_correct_51_calls_pass(text: str) -> None:
    assert check_text("ok.ps1", text + "\n") == []


PAGE = """---
title: Set-Thing
---
# Set-Thing
## SYNTAX

### pathSet (Default) - FileSystem provider

```
Set-Thing [-Path] <string[]> [-Force] [-Depth <int>] [<CommonParameters>]
```

### pathSet (Default) - Registry provider

```
Set-Thing [-Path] <string[]> -Key <string> [<CommonParameters>]
```

### nameSet - All providers

```
Set-Thing [[-Path] <string[]>] -Name <string> [<CommonParameters>]
```

## PARAMETERS

### -Path

```yaml
Type: System.String[]
Parameter Sets: pathSet, nameSet
Aliases: PSPath

Required: True (pathSet), False (nameSet)
Position: 0
Accept pipeline input: True (ByPropertyName)
```

### -Force

```yaml
Type: System.Management.Automation.SwitchParameter
Parameter Sets: (All)
Aliases:

Required: False
Position: Named
Accept pipeline input: False
```

### -Key

```yaml
Type: System.String
Parameter Sets: pathSet
Aliases:

Required: True
Position: Named
Accept pipeline input: False
```
"""


def test_the_builder_reads_a_pages_alias_list() -> None:
    page = "Windows PowerShell includes the following aliases for `Start-Sleep`:\n\n- `sleep`\n\n- `Ctrl+C` breaks out.\n"
    assert parse_aliases(page) == {"sleep": "Start-Sleep"}
    page = "includes the following aliases for `ForEach-Object`:\n\n  - `%`\n  - `foreach`\n\nThe cmdlet...\n"
    assert parse_aliases(page) == {"%": "ForEach-Object", "foreach": "ForEach-Object"}


def test_the_builder_reads_sets_mandatory_positions_and_switches_from_a_reference_page() -> None:
    name, facts = parse_cmdlet(PAGE)
    assert name == "Set-Thing"
    assert facts["sets"] == ["pathSet", "nameSet"]
    params = facts["params"]
    assert params["Path"]["sets"] == {"pathSet": True, "nameSet": False}
    assert params["Path"]["position"] == 0 and params["Path"]["aliases"] == ["PSPath"]
    assert params["Force"]["switch"] and params["Force"]["sets"] == {"pathSet": False, "nameSet": False}
    # -Key is mandatory only for the Registry provider, not in every variant of pathSet
    assert params["Key"]["sets"] == {"pathSet": False}
