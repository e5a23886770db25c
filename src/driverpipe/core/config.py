"""Layered configuration: pyproject [tool.driverpipe] < user file < environment < flags.

Everything is validated up front: an unknown key, a wrong type, a missing
required value or an unknown target name raises ConfigError with ONE line that
names the file, the key and the fix (exit code 2). Secrets are never read from
these files; they are referenced by environment-variable or keyring name.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .schema import PROJECT, USER, Key, NamedTables, Table, TableList

TOOL_TABLE = "driverpipe"
ENV_PREFIX = "DRIVERPIPE_"
USER_CONFIG_ENV = "DRIVERPIPE_CONFIG"
SECRET_WORDS = ("password", "passwd", "secret", "token")


def user_config_path() -> Path:
    """Per-user config file: $DRIVERPIPE_CONFIG, else the platform's config dir."""
    explicit = os.environ.get(USER_CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "driverpipe" / "config.toml"


def user_data_dir() -> Path:
    """Per-user data dir (test certificates, VM state): outside any repository."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "driverpipe"


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder upwards holding a pyproject.toml with [tool.driverpipe]."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                if f"[tool.{TOOL_TABLE}" in candidate.read_text(encoding="utf-8", errors="replace"):
                    return folder
            except OSError:
                continue
    raise ConfigError(
        f"no pyproject.toml with a [tool.{TOOL_TABLE}] table in {here} or its parents",
        "run the task from the project folder",
    )


class Section(Mapping[str, Any]):
    """Read-only validated settings with attribute access (`cfg.sign.backend`)."""

    def __init__(self, data: Mapping[str, Any], path: str = ""):
        self._data = dict(data)
        self._path = path

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(f"no setting {self._path}{name}") from None
        return value

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Section({self._path or '<root>'}: {sorted(self._data)})"

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.to_dict() if isinstance(v, Section) else v) for k, v in self._data.items()}


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list", dict: "a table"}
    if isinstance(t, tuple):
        return "a number" if set(t) == {int, float} else " or ".join(names.get(x, x.__name__) for x in t)
    return names.get(t, t.__name__)


def _check_type(value: Any, key: Key) -> bool:
    types = key.type if isinstance(key.type, tuple) else (key.type,)
    if isinstance(value, bool) and bool not in types:
        return False  # TOML true is not a number here
    if not isinstance(value, types):
        return False
    if key.item_type is not None and isinstance(value, list):
        return all(isinstance(item, key.item_type) for item in value)
    return True


def _plain(value: Any) -> Any:
    """tomlkit items -> plain Python values."""
    if hasattr(value, "unwrap"):
        return value.unwrap()
    return value


class _Validator:
    def __init__(self, source: str):
        self.source = source

    def fail(self, dotted: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.source}: {dotted}: {problem}", fix)

    def table(self, data: Any, schema: Table, prefix: str, extra: Table | None = None) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(prefix.rstrip(".") or "<root>", f"expected a table, got {type(data).__name__}", "make it a [table]")
        keys: dict[str, Key | Table | NamedTables | TableList] = dict(schema.keys)
        if extra is not None:
            keys.update(extra.keys)
        out: dict[str, Any] = {}
        for name in data:
            if name not in keys:
                near = difflib.get_close_matches(name, list(keys), n=1)
                hint = f"did you mean '{near[0]}'?" if near else f"allowed keys: {', '.join(sorted(keys))}"
                if any(word in name.lower() for word in SECRET_WORDS) and not name.endswith(("_env", "_keyring")):
                    hint = f'secrets are never read from files: set {name}_env = "ENV_VAR_NAME" and export it'
                raise self.fail(prefix + name, "unknown key", hint)
        for name, spec in keys.items():
            dotted = prefix + name
            present = name in data
            value = _plain(data[name]) if present else None
            if isinstance(spec, Table):
                # An optional table's presence means something: absent is None, not a table of defaults.
                out[name] = None if spec.optional and not present else self.table(value if present else {}, spec, dotted + ".")
            elif isinstance(spec, TableList):
                out[name] = self.table_list(value if present else [], spec, dotted)
            elif isinstance(spec, NamedTables):
                entries = value if present else {}
                if not isinstance(entries, Mapping):
                    raise self.fail(dotted, "expected a table of named entries", f"write [{dotted}.NAME] sections")
                out[name] = {}
                for entry_name, entry in entries.items():
                    bad = name_problem(str(entry_name))
                    if bad:
                        raise self.fail(f"{dotted}.{entry_name}", f"{bad} (it becomes part of file names)", "use letters, digits, '.', '_' and '-'")
                    kind_extra = None
                    if spec.by_kind:
                        kind = entry.get("kind") if isinstance(entry, Mapping) else None
                        if kind not in spec.by_kind:
                            raise self.fail(
                                f"{dotted}.{entry_name}.kind",
                                f"missing or unknown kind {kind!r}",
                                f"set kind to one of: {', '.join(spec.by_kind)}",
                            )
                        kind_extra = spec.by_kind[kind]
                    out[name][entry_name] = self.table(entry, spec.entry, f"{dotted}.{entry_name}.", kind_extra)
            else:
                if not present:
                    if spec.required:
                        raise self.fail(dotted, "required value is missing", f"add {name} = ... ({spec.doc})")
                    out[name] = list(spec.default) if isinstance(spec.default, list) else spec.default
                    continue
                if not _check_type(value, spec):
                    want = _type_name(spec.type)
                    if spec.item_type is not None:
                        want += f" of {_type_name(spec.item_type).split(' ', 1)[1]}s"
                    raise self.fail(dotted, f"expected {want}, got {value!r}", f"{spec.doc}" if spec.doc else "fix the value")
                if spec.choices and value not in spec.choices:
                    raise self.fail(dotted, f"{value!r} is not allowed", f"use one of: {', '.join(spec.choices)}")
                problem = value_problem(value, spec)
                if problem:
                    raise self.fail(dotted, problem[0], problem[1])
                out[name] = value
        return out

    def table_list(self, value: Any, spec: TableList, dotted: str) -> list[dict[str, Any]]:
        """[[dotted]] entries, each checked as spec.entry then by spec.rule; errors name dotted[N].key."""
        if not isinstance(value, list):
            raise self.fail(dotted, f"expected an array of tables, got {type(value).__name__}", f"write [[tool.driverpipe.{dotted}]] sections")
        entries: list[dict[str, Any]] = []
        for i, entry in enumerate(value):
            where = f"{dotted}[{i}]"
            if not isinstance(entry, Mapping):
                raise self.fail(where, f"expected a table, got {_plain(entry)!r}", f"write [[tool.driverpipe.{dotted}]] sections")
            entries.append(self.table(entry, spec.entry, where + "."))
        for i, entry in enumerate(entries):
            problem = spec.rule(entry, i, entries) if spec.rule else None
            if problem:
                raise self.fail(f"{dotted}[{i}].{problem[0]}", problem[1], problem[2])
        return entries


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def name_problem(value: str) -> str:
    """'' when `value` can be a file or folder name everywhere (letters, digits, '.', '_', '-'; no '..')."""
    if not NAME_RE.fullmatch(value) or ".." in value:
        return f"{value!r} is not a plain name"
    return ""


HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def host_problem(value: str) -> str:
    """'' when `value` is a host name, an IPv4 or an IPv6 address (brackets allowed); else what it is not."""
    import ipaddress

    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(bare)
        return ""
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    if 0 < len(name) <= 253 and all(HOST_LABEL.fullmatch(label) for label in name.split(".")):
        return ""
    return f"{value!r} is not a host name or IP address"


def value_problem(value: Any, spec: Key) -> tuple[str, str] | None:
    """(problem, fix) when a well-typed value breaks the key's range or name rule; None when it is fine."""
    if isinstance(value, list) and spec.identifiers:
        if not value:
            return "the list is empty", "name at least one step (the driver's DriverEntry step names, in order)"
        for item in value:
            if not isinstance(item, str) or not IDENTIFIER.fullmatch(item):
                return f"{item!r} is not a step name", "use identifiers (letters, digits and '_'), e.g. IoCreateDevice"
        if len(set(value)) != len(value):
            return "a step is named twice", "name each step once"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str):
        if spec.name and value and name_problem(value):
            return f"{name_problem(value)}", "use letters, digits, '.', '_' and '-' (no separators, no '..')"
        if spec.host and value and host_problem(value):
            return host_problem(value), "use a host name (letters, digits, '-', '.') or an IPv4/IPv6 address, nothing else"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number", "use a plain number"
    if spec.positive and value <= 0:
        return f"{value!r} must be above 0", "use a number of seconds above 0"
    if spec.port and not (value == 0 or 1 <= value <= 65535):
        return f"{value!r} is not a TCP port", "use 1-65535 (or 0 for the default)"
    if spec.low is not None and value < spec.low:
        return f"{value!r} is below {spec.low:g}", f"use {spec.low:g} or more"
    if spec.high is not None and value > spec.high:
        return f"{value!r} is above {spec.high:g}", f"use {spec.high:g} or less"
    return None


def read_toml(path: Path, *, for_edit: bool = False) -> Any:
    """Parse a TOML file; a syntax error is one line naming file and position.

    Plain data from the standard library's parser (ten times faster than tomlkit, which every
    task start paid several times); a tomlkit document, which keeps comments and layout, only
    `for_edit`. tomlkit also words the syntax errors, so they read as they always did."""
    import tomllib

    try:
        text = path.read_text(encoding="utf-8-sig")  # editors on Windows save a BOM
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found", "check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a TOML file", "point it at a file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", "save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if not for_edit:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            pass  # tomlkit below: its message (or, where it is more lenient, its data)
    import tomlkit
    import tomlkit.exceptions

    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path}: invalid TOML at line {exc.line}, column {exc.col}: {exc.args[0].split(' at line')[0]}", "fix the TOML syntax") from None


def env_overrides(schema: Table = PROJECT, prefix: str = "") -> dict[str, tuple[str, Key]]:
    """DRIVERPIPE_<SECTION>_<KEY> names for every scalar project key, derived from the schema."""
    names: dict[str, tuple[str, Key]] = {}
    for name, spec in schema.keys.items():
        dotted = prefix + name
        if isinstance(spec, Table):
            names.update(env_overrides(spec, dotted + "."))
        elif isinstance(spec, Key) and spec.env and spec.type is not list and spec.type is not dict:
            names[ENV_PREFIX + dotted.replace(".", "_").upper()] = (dotted, spec)
    return names


def _coerce_env(var: str, raw: str, spec: Key) -> Any:
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    try:
        if bool in types:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if float in types:
            return float(raw)
        if int in types:
            return int(raw)
    except ValueError:
        raise ConfigError(f"{var}: {raw!r} is not {_type_name(spec.type)}", f"fix the value ({_type_name(spec.type)})") from None
    if spec.choices and raw not in spec.choices:
        raise ConfigError(f"{var}: {raw!r} is not allowed", f"use one of: {', '.join(spec.choices)}")
    return raw


def coerce_text(what: str, raw: Any, spec: Key) -> Any:
    """A value given as text (environment variable, task flag) -> the key's type, checked like a file value."""
    if isinstance(raw, str):
        value = _coerce_env(what, raw, spec) if spec.type is not list else [x for x in raw.replace(",", " ").split() if x]
    else:
        value = raw
        if not _check_type(value, spec):
            raise ConfigError(f"{what}: {raw!r} is not {_type_name(spec.type)}", "fix the value")
        if spec.choices and value not in spec.choices:
            raise ConfigError(f"{what}: {raw!r} is not allowed", f"use one of: {', '.join(spec.choices)}")
    problem = value_problem(value, spec)
    if problem:
        raise ConfigError(f"{what}: {problem[0]}", problem[1])
    return value


def key_spec(dotted: str, schema: Table = PROJECT) -> Key:
    """The schema Key of a dotted project setting (e.g. 'build.profile')."""
    node: Any = schema
    for part in dotted.split("."):
        if not isinstance(node, Table) or part not in node.keys:
            raise KeyError(dotted)
        node = node.keys[part]
    if not isinstance(node, Key):
        raise KeyError(dotted)
    return node


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


@dataclass
class Config:
    """All validated settings plus where they came from."""

    root: Path
    project: Section
    user: Section
    user_path: Path
    sources: dict[str, str]  # dotted key -> "pyproject" | user path | env var | "flag"

    def path(self, relative: str) -> Path:
        """A project-relative setting resolved against the project root."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.root / p

    def target_name(self, requested: str | None = None) -> str:
        return requested or os.environ.get(ENV_PREFIX + "TARGET") or self.user.default_target or self.project.default_target

    def target(self, requested: str | None = None) -> Section:
        """The named target (or the default one); unknown names fail with the list of known ones.

        On Linux with no target given and none configured, the built-in Wine target
        (tier 0) is used, so `invoke build sign deploy` works on a fresh machine.
        """
        name = self.target_name(requested)
        known = sorted(self.user.targets)
        builtin = name == BUILTIN_WINE_TARGET or (not name and not known)
        if builtin and BUILTIN_WINE_TARGET not in self.user.targets and sys.platform.startswith("linux"):
            return builtin_wine_target()
        if not name:
            raise ConfigError(
                "no target given and no default_target configured",
                f"pass --target NAME ({', '.join(known)})" if known else f"add one with `invoke target-add` (config: {self.user_path})",
            )
        if name not in self.user.targets:
            near = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(
                f"{self.user_path}: targets.{name}: no such target",
                f"did you mean '{near[0]}'?" if near else (f"known targets: {', '.join(known)}" if known else "add it with `invoke target-add`"),
            )
        section = Section({"name": name, **self.user.targets[name]}, f"targets.{name}.")
        if section.transport == "wine":
            self.wine_prefix(section)  # a bad prefix or program setting fails here, before any work
            for program in ("wine", "wineserver"):
                _check_program(f"targets.{name}.wine.{program}", str(section.wine[program]), default=program)
        return section

    def wine_prefix(self, section: Section) -> Path:
        """A Wine target's prefix: wine.prefix, else <state dir>/wine/<target>; never inside the project."""
        raw = str(section.wine["prefix"] or "")
        path = Path(raw).expanduser() if raw else user_state_dir() / "wine" / str(section.name)
        path = Path(os.path.abspath(path if path.is_absolute() else self.root / path))
        root = Path(os.path.abspath(self.root))
        if path == root or root in path.parents:
            raise ConfigError(
                f"targets.{section.name}.wine.prefix {path} is inside the project",
                "keep Wine prefixes out of the repository: leave wine.prefix empty (per-user state dir) or point it elsewhere",
            )
        from .owned import foreign_folder_problem

        problem = foreign_folder_problem(path)
        if problem:
            key = f"targets.{section.name}.wine.prefix"
            raise ConfigError(
                f"{key} {path} {problem}; driverpipe never changes or deletes it",
                f"point {key} at a new or empty folder (or leave it unset for a per-user prefix)",
            )
        return path

    def named(self, table: str, name: str, used_by: str) -> Section:
        entries = self.user[table]
        if name not in entries:
            known = sorted(entries)
            raise ConfigError(
                f"{self.user_path}: {used_by} names {table}.{name}, which does not exist",
                f"known {table}: {', '.join(known)}" if known else f"add a [{table}.{name}] section",
            )
        return Section({"name": name, **entries[name]}, f"{table}.{name}.")


BUILTIN_WINE_TARGET = "wine"


def _check_program(key: str, value: str, *, default: str) -> None:
    """A configured program: a path must be an executable file; a bare name other than the default must be on PATH.

    The default name missing from PATH is left to the step, which says how to install it (exit 3).
    """
    import shutil

    if os.sep in value or (os.altsep and os.altsep in value):
        path = Path(value).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            what = "no such file" if not path.exists() else ("not a regular file" if not path.is_file() else "not executable")
            raise ConfigError(f"{key} = {value!r}: {what}", f"point {key} at the {default} program (or leave it unset for {default!r} on PATH)")
    elif value != default and shutil.which(value) is None:
        raise ConfigError(f"{key} = {value!r}: not found on PATH", f"use a program on PATH or a full path (or leave it unset for {default!r})")


def builtin_wine_target() -> Section:
    """The built-in Wine target: schema defaults, transport wine, prefix in the per-user state dir."""
    from .schema import TARGET

    data = _Validator("built-in target").table({"transport": "wine"}, TARGET, f"targets.{BUILTIN_WINE_TARGET}.")
    return Section({"name": BUILTIN_WINE_TARGET, "builtin": True, **data}, f"targets.{BUILTIN_WINE_TARGET}.")


def user_state_dir() -> Path:
    """Per-user state (Wine prefixes): $XDG_STATE_HOME/driverpipe, else ~/.local/state/driverpipe."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "driverpipe"


def load(root: Path | None = None, flags: Mapping[str, Any] | None = None, user_path: Path | None = None, *, allow_missing_user: bool = False) -> Config:
    """Load, merge and validate every layer. Raises ConfigError (exit 2) on the first problem."""
    root = root or find_project_root()
    pyproject = root / "pyproject.toml"
    doc = read_toml(pyproject)
    raw_project = _plain(doc.get("tool", {}).get(TOOL_TABLE, {}))
    project = _Validator(f"{pyproject.name} [tool.{TOOL_TABLE}]").table(raw_project, PROJECT, "")
    sources: dict[str, str] = {}

    upath = user_path or user_config_path()
    raw_user: Any = {}
    explicit = os.environ.get(USER_CONFIG_ENV)
    if upath.is_file():
        raw_user = _plain(read_toml(upath))
    elif upath.exists():
        raise ConfigError(f"{upath}: the user config is not a regular file", f"point {USER_CONFIG_ENV} at a TOML file")
    elif explicit and user_path is None and not allow_missing_user:
        raise ConfigError(f"{USER_CONFIG_ENV}={explicit}: no such file", f"create it (`invoke target-add ...` does) or unset {USER_CONFIG_ENV}")
    user = _Validator(str(upath)).table(raw_user, USER, "")

    # Cross-references between named entries.
    for tname, target in user["targets"].items():
        if target["vm_host"] and target["vm_host"] not in user["vm_hosts"]:
            raise ConfigError(f"{upath}: targets.{tname}.vm_host: no vm_hosts.{target['vm_host']}", "add that [vm_hosts] entry or fix the name")
        if target["transport"] in ("winrm", "ssh") and not target["host"]:
            raise ConfigError(f"{upath}: targets.{tname}.host: required for transport {target['transport']}", 'set host = "ADDRESS"')
        if target["transport"] == "winrm":
            w = target["winrm"]
            if w["auth"] == "basic" and w["ssl"] and not w["cert_validation"] and not w["allow_unverified_basic"]:
                raise ConfigError(
                    f"{upath}: targets.{tname}.winrm: Basic auth without certificate validation sends the password to whoever answers",
                    "set ca_bundle to the listener's certificate and cert_validation = true, or allow_unverified_basic = true deliberately",
                )
            if w["auth"] == "basic" and not w["ssl"] and not w["allow_basic_http"]:
                raise ConfigError(
                    f"{upath}: targets.{tname}.winrm: Basic auth over plain HTTP sends the password in clear text",
                    "use ssl = true, another auth, or set allow_basic_http = true deliberately",
                )

    for var, (dotted, spec) in env_overrides().items():
        if var in os.environ:
            _set_dotted(project, dotted, coerce_text(f"environment {var}", os.environ[var], spec))
            sources[dotted] = var
    for dotted, value in (flags or {}).items():
        if value is not None:
            flag = "--" + dotted.rsplit(".", 1)[-1].replace("_", "-")
            _set_dotted(project, dotted, coerce_text(f"{flag} ({dotted})", value, key_spec(dotted)))
            sources[dotted] = "flag"

    return Config(root=root, project=_sectionize(project), user=_sectionize(user), user_path=upath, sources=sources)


def _sectionize(data: dict[str, Any], path: str = "") -> Section:
    converted: dict[str, Any] = {}
    for k, v in data.items():
        converted[k] = _sectionize(v, f"{path}{k}.") if isinstance(v, dict) and k not in ("targets", "vm_hosts", "build_hosts") else v
    return Section(converted, path)


def add_named_entry(path: Path, table: str, name: str, values: Mapping[str, Any], *, default: bool = False) -> None:
    """Add or update [table.name] in the user's TOML file, keeping comments and layout.

    The new document is validated before it replaces the file, and the write is
    atomic (temp file + rename): a bad value never leaves a half-written config.
    """
    import tomlkit

    doc = read_toml(path, for_edit=True) if path.is_file() else tomlkit.document()
    if table not in doc:
        doc[table] = tomlkit.table(is_super_table=True)
    entries = doc[table]
    entry = entries.get(name)
    if entry is None:
        entry = tomlkit.table()
        entries[name] = entry
    for key, value in values.items():
        if value is None:
            continue
        if "." in key:
            outer, inner = key.split(".", 1)
            if outer not in entry:
                entry[outer] = tomlkit.table()
            entry[outer][inner] = value
        else:
            entry[key] = value
    if default:
        doc["default_target"] = name
    _Validator(str(path)).table(_plain(doc), USER, "")
    from .files import write_atomic

    write_atomic(path, tomlkit.dumps(doc).encode("utf-8"))
