"""Every `invoke X` a message or fix names is a real task (a fix that names a missing task is a dead end)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "driverpipe"
NAMED = re.compile(r"(?<![\w-])invoke ([a-z][a-z0-9_.-]*[a-z0-9_])")


def _tasks() -> set[str]:
    sys.path.insert(0, str(REPO))
    try:
        import tasks
    finally:
        sys.path.remove(str(REPO))
    return set(tasks.ns.task_names)


def _message_strings(path: Path) -> list[tuple[int, str]]:
    """String literals (f-string parts included) that are not docstrings: what reaches a user."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_every_invoke_named_in_a_message_is_a_real_task() -> None:
    known = _tasks()
    assert {"build", "sign", "deploy", "vm.revert", "vm.status"} <= known
    named: list[tuple[str, int, str]] = []
    for path in [*sorted(SRC.rglob("*.py")), REPO / "tasks.py"]:
        for line, text in _message_strings(path):
            named += [(str(path.relative_to(REPO)), line, m.group(1)) for m in NAMED.finditer(text)]
    assert len(named) > 50, "the walk found too few fix texts to be looking at the right files"
    unknown = [f"{file}:{line}: invoke {task}" for file, line, task in named if task not in known]
    assert not unknown, "fix texts name tasks that do not exist:\n" + "\n".join(unknown)
