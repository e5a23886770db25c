"""Render the configuration reference (markdown) from the schema.

`python -m driverpipe.schema_doc` prints it; the README embeds the same text
between markers and a test keeps the two identical.
"""

from __future__ import annotations

from .config import ENV_PREFIX
from .schema import PROJECT, USER, Key, NamedTables, Table, TableList


def _default(key: Key) -> str:
    if key.required:
        return "(required)"
    if key.default is None:
        return "(none)"
    value = key.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if value else '""'
    return repr(value)


def _rows(table: Table, prefix: str, env: bool) -> list[str]:
    rows: list[str] = []
    for name, spec in table.keys.items():
        dotted = prefix + name
        if isinstance(spec, Key):
            doc = spec.doc + (f" (one of: {', '.join(spec.choices)})" if spec.choices else "")
            env_name = ""
            if env and spec.env and spec.type not in (list, dict):
                env_name = f"`{ENV_PREFIX}{dotted.replace('.', '_').upper()}`"
            rows.append(f"| `{dotted}` | `{_default(spec)}` | {doc} | {env_name} |")
        elif isinstance(spec, Table):
            rows.extend(_rows(spec, dotted + ".", env and not spec.optional))
        elif isinstance(spec, TableList):
            rows.append(f"| `[[{dotted}]]` | `[]` | {spec.doc} |  |")
            rows.extend(_rows(spec.entry, f"{dotted}[].", False))
        elif isinstance(spec, NamedTables):
            rows.extend(_rows(spec.entry, f"{dotted}.NAME.", False))
            for kind, extra in spec.by_kind.items():
                rows.extend(r.replace("| `", f"| ({kind}) `", 1) for r in _rows(extra, f"{dotted}.NAME.", False))
    return rows


def render() -> str:
    head = "| key | default | meaning | environment |\n|---|---|---|---|"
    project = "\n".join(_rows(PROJECT, "", True))
    user = "\n".join(_rows(USER, "", False))
    return f"#### `[tool.driverpipe]` in pyproject.toml\n\n{head}\n{project}\n\n#### User file (targets, VM hosts, build hosts)\n\n{head}\n{user}\n"


if __name__ == "__main__":
    print(render(), end="")
