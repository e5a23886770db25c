"""Check PowerShell text against Windows PowerShell 5.1's command surface (surface.json).

Each finding is `file:line: rule: message`. Rules:
  unknown-command     not a 5.1 cmdlet, a named module's cmdlet or a function the script defines
  alias               a built-in alias (listed by the references): full names read the same everywhere
  unknown-parameter   not a parameter, alias or common parameter of the cmdlet (7-only ones land here)
  ambiguous-parameter a prefix that matches several parameters
  switch-value        a switch followed by $true/$false without ':' (binds positionally, not to the switch)
  missing-value       a value parameter followed by another parameter or nothing
  parameter-sets      parameters that share no parameter set
  mandatory           a mandatory parameter never given (and no pipeline input, no splatting)
  ps7-syntax          `&&` / `||` pipeline chains, `??`, `?.`, ternaries (PowerShell 7 only)
  json-depth          ConvertTo-Json without -Depth (5.1 cuts at depth 2, silently)
  native-direct       a native command (*.exe) called directly instead of through Invoke-Native
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from driverpipe.parse.psgrammar import ps_parser

SURFACE = Path(__file__).with_name("surface.json")

COMMON = {
    "verbose": "vb", "debug": "db", "erroraction": "ea", "warningaction": "wa", "informationaction": "infa",
    "errorvariable": "ev", "warningvariable": "wv", "informationvariable": "iv", "outvariable": "ov",
    "outbuffer": "ob", "pipelinevariable": "pv", "whatif": "wi", "confirm": "cf",
}  # fmt: skip
COMMON_SWITCHES = {"verbose", "debug", "whatif", "confirm"}


@cache
def _data() -> dict:
    return json.loads(SURFACE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@cache
def surface() -> dict[str, dict]:
    return {name.lower(): facts for name, facts in _data()["cmdlets"].items()}


@cache
def aliases() -> dict[str, str]:
    """Windows PowerShell 5.1's built-in command aliases, as the references list them."""
    return {alias.lower(): cmdlet for alias, cmdlet in _data()["aliases"].items()}


def _walk(node):  # type: ignore[no-untyped-def]
    yield node
    for child in node.children:
        yield from _walk(child)


def _resolve(facts: dict, given: str) -> tuple[str | None, str | None]:
    """(parameter name, problem) for `-given`: exact name or alias first, then a unique prefix."""
    low = given.lower()
    names = {n.lower(): n for n in facts["params"]}
    for n, p in facts["params"].items():
        for a in p["aliases"]:
            names.setdefault(a.lower(), n)
    for c, a in COMMON.items():
        names.setdefault(c, c)
        names.setdefault(a, c)
    if low in names:
        return names[low], None
    hits = sorted({v for k, v in names.items() if k.startswith(low)})
    if len(hits) == 1:
        return hits[0], None
    if hits:
        return None, f"-{given} is ambiguous ({', '.join(hits)})"
    return None, f"-{given} is not a parameter of this cmdlet in Windows PowerShell 5.1"


def check_text(name: str, text: str) -> list[str]:
    source = text.encode("utf-8")
    tree = ps_parser().parse(source)
    found: list[str] = []
    nodes = list(_walk(tree.root_node))
    functions = set()
    for node in nodes:
        if node.type == "function_statement":
            for child in node.children:
                if child.type == "function_name":
                    functions.add(child.text.decode().lower())

    def report(node, rule: str, message: str) -> None:  # type: ignore[no-untyped-def]
        found.append(f"{name}:{node.start_point[0] + 1}: {rule}: {message}")

    for node in nodes:
        if node.type == "pipeline_chain_tail":
            report(node, "ps7-syntax", "`&&`/`||` pipeline chains need PowerShell 7")
        elif node.type == "ERROR" and any(t in node.text for t in (b"??", b"?.")):
            report(node, "ps7-syntax", "`??` / `?.` need PowerShell 7")
        elif node.type == "command":
            _check_command(node, functions, report)
    return found


def _check_command(node, functions: set[str], report) -> None:  # type: ignore[no-untyped-def]
    name_node = next((c for c in node.children if c.type == "command_name"), None)
    if name_node is None:
        return  # `& $script` / `& { }`: nothing to check by name
    command = name_node.text.decode()
    low = command.lower()
    if low in functions:
        return
    if low in aliases():
        report(node, "alias", f"{command} is an alias of {aliases()[low]}: use the full name")
        return
    if low.endswith((".exe", ".com", ".cmd", ".bat")):
        report(node, "native-direct", f"{command} is a native command: call it through Invoke-Native (exit code, stderr, OEM output)")
        return
    facts = surface().get(low)
    if facts is None:
        report(node, "unknown-command", f"{command} is not a Windows PowerShell 5.1 cmdlet or one of the modules' in surface.json")
        return
    elements = next((c for c in node.children if c.type == "command_elements"), None)
    items = [c for c in elements.children if c.type not in ("command_argument_sep", "redirection", "comment")] if elements else []
    seps = [c for c in elements.children if c.type == "command_argument_sep"] if elements else []
    given: list[str] = []
    positional = 0
    splat = False
    i = 0
    while i < len(items):
        item = items[i]
        if item.type == "command_parameter":
            raw = item.text.decode()[1:].rstrip(":")
            colon = item.text.decode().endswith(":") or any(s.start_byte == item.end_byte and b":" in s.text for s in seps)
            param, problem = _resolve(facts, raw)
            if problem:
                report(item, "unknown-parameter" if "not a parameter" in problem else "ambiguous-parameter", f"{command} {problem}")
                i += 1
                continue
            assert param is not None
            given.append(param)
            is_switch = param in COMMON_SWITCHES or (param in facts["params"] and facts["params"][param]["switch"])
            nxt = items[i + 1] if i + 1 < len(items) else None
            if colon:
                i += 2
                continue
            if is_switch:
                if nxt is not None and nxt.type != "command_parameter" and nxt.text.decode().lower() in ("$true", "$false"):
                    report(item, "switch-value", f"{command} -{raw} is a switch: write -{raw}:{nxt.text.decode()}")
                i += 1
                continue
            if nxt is None or nxt.type == "command_parameter":
                report(item, "missing-value", f"{command} -{raw} needs a value")
                i += 1
                continue
            i += 2
            continue
        if item.text.startswith(b"@") and not item.text.startswith((b"@(", b"@{", b"@'", b'@"')):
            splat = True
        else:
            positional += 1
        i += 1
    if low == "convertto-json" and "Depth" not in given:
        report(node, "json-depth", "ConvertTo-Json without -Depth: Windows PowerShell 5.1 cuts nested objects at depth 2")
    if splat:
        return
    named = [g for g in given if g in facts["params"]]
    sets = set(facts["sets"])
    for g in named:
        sets &= set(facts["params"][g]["sets"])
    if named and not sets:
        report(node, "parameter-sets", f"{command}: {', '.join('-' + g for g in named)} are in no common parameter set")
        return
    piped = node.prev_sibling is not None and node.prev_sibling.type == "|"
    if piped:
        return
    for s in sorted(sets) or facts["sets"]:
        slots = sorted((p["position"], n) for n, p in facts["params"].items() if s in p["sets"] and p["position"] is not None and n not in named)
        bound = set(named) | {n for _, n in slots[:positional]}
        missing = [n for n, p in facts["params"].items() if p["sets"].get(s) and n not in bound]
        if not missing:
            return
    report(node, "mandatory", f"{command}: no parameter set has all its mandatory parameters given")
