"""Rebuild surface.json: the command surface of Windows PowerShell 5.1 and the modules the scripts use.

Facts only (cmdlet -> parameters: type switch or value, aliases, parameter sets and
whether each is mandatory there, position, pipeline input; the built-in aliases each
page lists), read from the platyPS markdown of Microsoft's references:
  MicrosoftDocs/PowerShell-Docs          reference/5.1/<module>/<Cmdlet>.md
  MicrosoftDocs/windows-powershell-docs  docset/winserver2022-ps/<module>/<Cmdlet>.md

    python3 tests/ps51/build_surface.py --powershell-docs DIR --windows-docs DIR [--out FILE]

Each DIR is a checkout of that repository (or an extracted `git archive`: then name
the commit with --powershell-docs-commit / --windows-docs-commit).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

CORE_MODULES = [
    "CimCmdlets",
    "Microsoft.PowerShell.Archive",
    "Microsoft.PowerShell.Core",
    "Microsoft.PowerShell.Diagnostics",
    "Microsoft.PowerShell.Management",
    "Microsoft.PowerShell.Security",
    "Microsoft.PowerShell.Utility",
    "Microsoft.WSMan.Management",
]
WINDOWS_DOCSET = "docset/winserver2022-ps"
WINDOWS_MODULES = ["Hyper-V", "ScheduledTasks", "NetSecurity", "NetTCPIP", "NetConnection", "DISM", "SecureBoot", "pki"]

SECTION = re.compile(r"^## (\w[\w ]*)$", re.M)
PARAM = re.compile(r"^### -(\w+)\s*$", re.M)
YAML = re.compile(r"```yaml\n(.*?)```", re.S)


def _sections(text: str) -> dict[str, str]:
    marks = list(SECTION.finditer(text))
    return {m.group(1).strip().upper(): text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)] for i, m in enumerate(marks)}


def _fields(block: str) -> dict[str, str]:
    out = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


SET_HEADER = re.compile(r"^### (.+?)(?: \(Default\))?(?: - [^\n]* providers?)?\s*$", re.M)
FENCE = re.compile(r"```\w*\n(.*?)```", re.S)


def _syntax_sets(syntax: str) -> dict[str, dict[str, bool]]:
    """Parameter set -> {parameter: mandatory}, read from the SYNTAX blocks.

    `-Name <T>` and `[-Name] <T>` outside any other bracket are mandatory; a set shown
    once per provider is mandatory only where every variant makes it so (so a
    provider's dynamic parameter never looks mandatory for the FileSystem).
    """
    heads = list(SET_HEADER.finditer(syntax))
    chunks = [(h.group(1).strip(), syntax[h.end() : heads[i + 1].start() if i + 1 < len(heads) else len(syntax)]) for i, h in enumerate(heads)]
    if not chunks:
        chunks = [("__AllParameterSets", syntax)]
    sets: dict[str, dict[str, bool]] = {}
    for name, chunk in chunks:
        fence = FENCE.search(chunk)
        if not fence:
            continue
        line = " ".join(fence.group(1).split())
        line = re.sub(r"\[-(\w+)\](?= <)", r"-\1", line)  # `[-Path] <T>`: a positional marker, not an optional bracket
        line = re.sub(r"<[^>]*>", "", line)
        depth = 0
        seen: dict[str, bool] = {}
        for token in re.finditer(r"\[|\]|(?<![\w-])-(\w+)", line.split(" ", 1)[-1]):
            if token.group(0) == "[":
                depth += 1
            elif token.group(0) == "]":
                depth -= 1
            else:
                seen[token.group(1)] = depth == 0
        if name in sets:
            old = sets[name]
            sets[name] = {p: old.get(p, False) and seen.get(p, False) for p in {*old, *seen}}
        else:
            sets[name] = seen
    return sets


ALIAS_INTRO = re.compile(r"includes the following aliases for `([\w-]+)`:\s*\n")
ALIAS_ITEM = re.compile(r"^\s*- `([^`\s]+)`\s*$")


def parse_aliases(text: str) -> dict[str, str]:
    """alias -> cmdlet, from the page's "Windows PowerShell includes the following aliases" list."""
    found: dict[str, str] = {}
    for intro in ALIAS_INTRO.finditer(text):
        for line in text[intro.end() :].splitlines():
            item = ALIAS_ITEM.match(line)
            if item:
                found[item.group(1)] = intro.group(1)
            elif line.strip() or found:
                break
    return found


def parse_cmdlet(text: str) -> tuple[str, dict]:
    title = re.search(r"^title:\s*(\S+)", text, re.M) or re.search(r"^# (\S+)", text, re.M)
    assert title, "no title"
    sections = _sections(text)
    syntax = _syntax_sets(sections.get("SYNTAX", ""))
    params: dict[str, dict] = {}
    body = sections.get("PARAMETERS", "")
    marks = list(PARAM.finditer(body))
    for i, mark in enumerate(marks):
        chunk = body[mark.end() : marks[i + 1].start() if i + 1 < len(marks) else len(body)]
        name = mark.group(1)
        entry = {"switch": False, "aliases": [], "sets": {s: m[name] for s, m in syntax.items() if name in m}, "position": None, "pipeline": False}
        for block in YAML.findall(chunk):
            f = _fields(block)
            entry["switch"] = f.get("Type", "").endswith("SwitchParameter")
            entry["aliases"] = sorted({*entry["aliases"], *(a.strip() for a in f.get("Aliases", "").split(",") if a.strip())})
            pos = f.get("Position", "Named")
            if pos.isdigit() and entry["position"] is None:
                entry["position"] = int(pos)
            entry["pipeline"] = entry["pipeline"] or f.get("Accept pipeline input", "False").startswith("True")
            # Syntax blocks leave out provider parameters (Get-ChildItem -File with -LiteralPath):
            # the parameter's own "Parameter Sets" line adds them, never as mandatory.
            listed = f.get("Parameter Sets", "(All)")
            for s in syntax if listed in ("(All)", "") else [x.strip() for x in listed.split(",")]:
                if s in syntax:
                    entry["sets"].setdefault(s, False)
        if not entry["sets"]:  # documented but in no syntax block and no known set: every set
            entry["sets"] = {s: False for s in syntax}
        params[name] = entry
    return title.group(1), {"sets": list(syntax), "params": params}


def _commit(repo: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build(ps_docs: Path, win_docs: Path, ps_commit: str | None = None, win_commit: str | None = None) -> dict:
    cmdlets: dict[str, dict] = {}
    aliases: dict[str, str] = {}
    roots = [(ps_docs / "reference/5.1" / m, m) for m in CORE_MODULES] + [(win_docs / WINDOWS_DOCSET / m, m) for m in WINDOWS_MODULES]
    for folder, module in roots:
        if not folder.is_dir():
            raise SystemExit(f"missing {folder}: pass checkouts of both reference repositories")
        for md in sorted(folder.glob("*-*.md")):
            text = md.read_text(encoding="utf-8")
            name, facts = parse_cmdlet(text)
            cmdlets[name] = {"module": module, **facts}
            aliases.update(parse_aliases(text))
    return {
        "sources": {
            "MicrosoftDocs/PowerShell-Docs": {"commit": ps_commit or _commit(ps_docs), "read": "reference/5.1", "modules": CORE_MODULES},
            "MicrosoftDocs/windows-powershell-docs": {"commit": win_commit or _commit(win_docs), "read": WINDOWS_DOCSET, "modules": WINDOWS_MODULES},
        },
        "aliases": dict(sorted(aliases.items())),
        "cmdlets": dict(sorted(cmdlets.items())),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--powershell-docs", type=Path, required=True)
    ap.add_argument("--windows-docs", type=Path, required=True)
    ap.add_argument("--powershell-docs-commit", help="the commit read, when DIR is an extracted archive")
    ap.add_argument("--windows-docs-commit", help="the commit read, when DIR is an extracted archive")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("surface.json"))
    args = ap.parse_args()
    data = build(args.powershell_docs, args.windows_docs, args.powershell_docs_commit, args.windows_docs_commit)
    # One cmdlet per line: small diffs when the references change.
    lines = [json.dumps(name) + ": " + json.dumps(facts, separators=(",", ":")) for name, facts in data["cmdlets"].items()]
    text = '{"sources": ' + json.dumps(data["sources"]) + ',\n"aliases": ' + json.dumps(data["aliases"])
    text += ',\n"cmdlets": {\n' + ",\n".join(lines) + "\n}}\n"
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {len(data['cmdlets'])} cmdlets")


if __name__ == "__main__":
    main()
