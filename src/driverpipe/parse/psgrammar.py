"""Read PowerShell scripts with a real grammar (tree-sitter-powershell).

Used by the tests (every shipped .ps1 must parse, and the parameters Python binds
must be ones the script declares) and by `--dry` output. Imported lazily: the
grammar is a test extra, not a runtime dependency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path


@dataclass
class ScriptInfo:
    path: Path
    errors: list[tuple[int, int]]  # (line, column) of ERROR / MISSING nodes, 1-based
    params: dict[str, bool]  # declared parameter name -> mandatory
    types: dict[str, str] = field(default_factory=dict)  # declared parameter name -> its type, lower case ("string[]", "int64"); "" when untyped


@cache
def ps_parser():  # type: ignore[no-untyped-def]
    """A tree-sitter parser for PowerShell (one per process: building the language is not free)."""
    import tree_sitter as ts
    import tree_sitter_powershell as tsp

    return ts.Parser(ts.Language(tsp.language()))


def parse_script(path: Path) -> ScriptInfo:
    source = path.read_bytes()
    if source.startswith(b"\xef\xbb\xbf"):
        source = source[3:]
    tree = ps_parser().parse(source)
    errors: list[tuple[int, int]] = []
    params: dict[str, bool] = {}
    types: dict[str, str] = {}

    def walk(node, in_top_param_block: bool) -> None:  # type: ignore[no-untyped-def]
        if node.type == "ERROR" or node.is_missing:
            errors.append((node.start_point[0] + 1, node.start_point[1] + 1))
        if node.type == "script_parameter" and in_top_param_block:
            name = ""
            mandatory = False
            declared_type = ""
            for child in node.children:
                if child.type == "variable":
                    name = source[child.start_byte + 1 : child.end_byte].decode()
                elif child.type == "attribute_list":
                    text = source[child.start_byte : child.end_byte].decode().lower()
                    mandatory = "mandatory" in text and "mandatory=$false" not in text.replace(" ", "")
                    for attribute in child.children:
                        literal = next((c for c in attribute.children if c.type == "type_literal"), None)
                        if literal is not None:
                            declared_type = source[literal.start_byte + 1 : literal.end_byte - 1].decode().strip().lower()
            if name:
                params[name] = mandatory
                types[name] = declared_type
        for child in node.children:
            # Only the script's own param() block, not those of nested functions/script blocks.
            top = in_top_param_block or (node.type == "program" and child.type == "param_block")
            if node.type in ("function_statement", "script_block_expression"):
                top = False
            walk(child, top and node.type not in ("function_statement", "script_block_expression"))

    walk(tree.root_node, False)
    return ScriptInfo(path=path, errors=errors, params=params, types=types)


def check_bound_params(path: Path, bound: dict[str, object]) -> list[str]:
    """Problems with binding `bound` to the script at `path` (empty list: fine)."""
    info = parse_script(path)
    problems = [f"{path.name}: syntax error at line {line}, column {col}" for line, col in info.errors]
    declared = {name.lower(): name for name in info.params}
    for name in bound:
        if name.lower() not in declared:
            problems.append(f"{path.name}: binds -{name}, which the script does not declare")
    for name, mandatory in info.params.items():
        if mandatory and name.lower() not in {b.lower() for b in bound}:
            problems.append(f"{path.name}: mandatory -{name} is not bound")
    return problems
