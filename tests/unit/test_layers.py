"""The house shows the pipeline: subpackages in layers, no import circles, no module over 600 lines.

Every import in src/driverpipe is read (module level and inside functions, relative and
absolute); a lower layer never imports a higher one (each subpackage's __init__.py says
what it may import), and no module reaches itself through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "driverpipe"
ALLOWED = {
    "core": set(),
    "parse": {"core"},
    "transports": {"core", "parse"},
    "vmhosts": {"core", "parse", "transports"},
    "image": {"core", "parse", "transports"},
    "signing": {"core", "parse", "image"},
    "targets": {"core", "parse", "transports", "vmhosts", "image", "signing"},
    "checks": {"core", "parse", "transports", "vmhosts", "image", "signing", "targets"},
}
TOP = {"commands", "doctor", "vmcontrol", "__init__"}
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Modules of driverpipe that `path` imports (as dotted names)."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("driverpipe"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if (SRC.parent / (sub.replace(".", "/") + ".py")).is_file() or (SRC.parent / sub.replace(".", "/")).is_dir() else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("driverpipe"))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
            found.add(str(node.args[0].value))
    found.discard(mod)
    return found


def layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}
GRAPH = {m: {i for i in imports(p) if i in MODULES} for m, p in MODULES.items()}


def test_lower_layers_never_import_higher_ones() -> None:
    bad = []
    for mod, deps in GRAPH.items():
        here = layer(mod)
        if here in TOP:
            continue
        for dep in deps:
            there = layer(dep)
            if there != here and there not in ALLOWED[here]:
                bad.append(f"{mod} -> {dep}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_every_subpackage_says_what_it_owns_and_may_import() -> None:
    for name in ALLOWED:
        doc = ast.get_docstring(ast.parse((SRC / name / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert "May import" in doc, f"{name}/__init__.py must say what it may import"


def test_no_import_circles() -> None:
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(mod: str, stack: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(GRAPH[mod]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[mod] = 2

    for mod in sorted(GRAPH):
        if mod not in state:
            visit(mod, [mod])
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_over_600_lines() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_only_a_few_top_level_modules() -> None:
    top = {p.stem for p in SRC.glob("*.py")}
    assert top <= TOP, top - TOP
