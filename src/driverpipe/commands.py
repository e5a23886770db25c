"""The task surface behind tasks.py: one function per task, errors turned into exit codes.

tasks.py stays thin (parse flags, call here). Each function builds a RunContext,
calls the step module (imported lazily so `invoke --list` stays fast) and turns
PipelineError into `error: ...` on stderr plus the error's exit code.
"""

from __future__ import annotations

import atexit
import errno
import functools
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .core.errors import ConfigError, ExitCode, NotImplementedYet, PipelineError

F = TypeVar("F", bound=Callable[..., Any])


class TaskExit(SystemExit):
    """Raised to end a task with a code; Invoke honours SystemExit codes."""


_exit_code = 0  # what the tasks of this process ended with (Invoke stops at the first failing one)
_tasks_ran = False


def _fail(message: str, code: int) -> None:
    global _exit_code
    from .core.secrets import REDACT

    print(REDACT(message), file=sys.stderr, flush=True)
    _exit_code = code
    raise TaskExit(code)


def _exit_without_teardown() -> None:
    """atexit: end an `invoke` process whose tasks ran without the interpreter's teardown.

    After the verdict is printed, Python's own exit still unwinds every module: 0.2-0.4 s once
    lief's C++ extension is loaded (the image and signature checks), about a third of what a
    one-line edit's `build sign deploy` spends outside cargo, and tens of ms otherwise. Runs
    after the atexit handlers registered since this module loaded; flushes the streams and
    logging; never when no task ran (Invoke's own errors) or after an uncaught exception
    (Python's exit code stands then)."""
    if not _tasks_ran or getattr(sys, "last_type", None) is not None:
        return
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(_exit_code)


def _in_invoke_cli() -> bool:
    """This process is the `invoke` command (never a test runner that imported the tasks)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return "pytest" not in sys.modules and (argv0.parts[-2:] == ("invoke", "__main__.py") or argv0.name in ("invoke", "inv"))


if _in_invoke_cli():
    atexit.register(_exit_without_teardown)


def guarded(fn: F) -> F:
    """Run a task body: PipelineError -> one line + exit code; Ctrl-C -> 130. No tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _tasks_ran, _exit_code
        _tasks_ran = True
        try:
            result = fn(*args, **kwargs)
        except PipelineError as exc:
            _fail(exc.one_line(), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", ExitCode.INTERRUPTED)
        except OSError as exc:
            # Anything the steps did not translate (read-only or full disk, permissions): one line, never a traceback.
            _fail(os_error_line(exc), ExitCode.ENVIRONMENT)
        if isinstance(result, int) and result != 0:
            _exit_code = result
            raise TaskExit(result)
        return result

    return wrapper  # type: ignore[return-value]


def os_error_line(exc: OSError) -> str:
    """'<what failed>: <file>' plus a fix, for an OSError no step translated."""
    where = f": {exc.filename}" if exc.filename else ""
    why = exc.strerror or exc.__class__.__name__
    fixes = {
        errno.ENOSPC: "free disk space, then run again (no file was left half-written)",
        errno.EACCES: "check the file's owner and permissions",
        errno.EPERM: "check the file's owner and permissions",
        errno.EROFS: "the file system is read-only: point artifacts_dir (or the output folder) somewhere writable",
        errno.ENOTDIR: "a path component is a file, not a folder: fix the path",
        errno.EISDIR: "that path is a folder: give a file",
        errno.ENOENT: "check the path",
    }
    return f"error: {why}{where} (fix: {fixes.get(exc.errno or 0, 'check the path and its permissions')})"


def _build_output_held(ctx: Any) -> Any:
    """build, package and sign on one checkout take turns: the manifest and package folder are theirs."""
    from .core.locks import held
    from .image.lock import build_lock

    return held(build_lock(ctx), ctx)


def make_context(dry: bool, flags: dict[str, Any] | None = None, verbose: bool = False, *, target: str | bool | None = False) -> Any:
    """Load and validate config. `target` (a name, or None for the default) is checked up front."""
    from .core.config import load
    from .core.context import RunContext

    cfg = load(flags=flags)
    if target is not False:
        cfg.target(target if isinstance(target, str) else None)
    return RunContext(config=cfg, dry=dry, verbose=verbose)


def _step(module: str) -> Any:
    name = f"driverpipe.{module}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise NotImplementedYet(f"the step module {name} is not implemented yet") from None


def not_implemented(task: str, issue: str) -> None:
    raise NotImplementedYet(f"`invoke {task}` is not implemented yet ({issue})")


@guarded
def build(dry: bool, *, from_path: str | None, profile: str | None, features: str | None, build_host: str | None, model: str | None = None) -> int:
    flags: dict[str, Any] = {"build.profile": profile, "build.build_host": build_host, "build.model": model}
    if features is not None:
        flags["build.features"] = [f for f in features.replace(",", " ").split() if f]
    ctx = make_context(dry, flags)
    if from_path:
        _step("image.build").check_from_path(ctx, Path(from_path))  # bad input is refused before anything is locked or written
    with _build_output_held(ctx):
        _step("image.build").run(ctx, from_path=Path(from_path) if from_path else None)
    return 0


@guarded
def package(dry: bool, *, profile: str | None) -> int:
    ctx = make_context(dry, {"build.profile": profile})
    with _build_output_held(ctx):
        _step("image.package").run(ctx)
    return 0


@guarded
def sign(dry: bool, *, new_cert: bool, backend: str | None, profile: str | None) -> int:
    ctx = make_context(dry, {"sign.backend": backend, "build.profile": profile})
    with _build_output_held(ctx):
        _step("signing.sign").run(ctx, new_cert=new_cert)
    return 0


@guarded
def deploy(dry: bool, *, target: str | None, no_verify: bool) -> int:
    ctx = make_context(dry, target=target)
    return int(_step("targets.deploy").run(ctx, target=target, verify=not no_verify) or 0)


@guarded
def unload(dry: bool, *, target: str | None, delete: bool) -> int:
    ctx = make_context(dry, target=target)
    _step("targets.deploy").unload(ctx, target=target, delete=delete)
    return 0


@guarded
def verify(dry: bool, *, target: str | None, log: str | None, phase: str, as_json: bool, step: str | None) -> int:
    ctx = make_context(dry, target=False if log else target)
    return int(_step("checks.verify").run(ctx, target=target, log=Path(log) if log else None, phase=phase, as_json=as_json, step=step) or 0)


@guarded
def logs(dry: bool, *, target: str | None, out: str | None) -> int:
    ctx = make_context(dry, target=target)
    _step("checks.verify").pull_logs(ctx, target=target, out=Path(out) if out else None)
    return 0


@guarded
def regress(dry: bool, *, target: str | None, cycles: int | None, no_faults: bool, verifier: bool, report_dir: str | None) -> int:
    ctx = make_context(dry, {"regress.cycles": cycles, "regress.verifier": verifier or None}, target=target)
    return int(_step("checks.regress").run(ctx, target=target, faults=not no_faults, report_dir=Path(report_dir) if report_dir else None) or 0)


@guarded
def doctor(dry: bool, *, target: str | None, tasks: str | None) -> int:
    ctx = make_context(dry)
    wanted = [t for t in (tasks or "").replace(",", " ").split() if t]
    return int(_step("doctor").run(ctx, target=target, tasks=wanted) or 0)


@guarded
def bindings(dry: bool, *, check: bool) -> int:
    ctx = make_context(dry)
    return int(_step("image.bindings").run(ctx, check=check) or 0)


@guarded
def provision(dry: bool, *, target: str | None) -> int:
    ctx = make_context(dry, target=target)
    return int(_step("targets.provision").run(ctx, target=target) or 0)


@guarded
def target_add(dry: bool, *, name: str, values: dict[str, Any], default: bool = False) -> int:
    from .core.config import add_named_entry, coerce_text, load, name_problem, user_config_path
    from .core.schema import TARGET, Key

    load(allow_missing_user=True)  # the project config must be valid before we touch the user file (which may not exist yet)
    if name_problem(name):
        raise ConfigError(f"--name {name!r}: {name_problem(name)} (it becomes part of file names)", "use letters, digits, '.', '_' and '-'")
    checked: dict[str, Any] = {}
    for key, value in values.items():
        spec = TARGET.keys[key]
        checked[key] = None if value is None or not isinstance(spec, Key) else coerce_text(f"--{key.replace('_', '-')}", value, spec)
    path = user_config_path()
    if dry:
        print(f"[dry] would add/update [targets.{name}] in {path}: {checked}" + (f" and set default_target = {name!r}" if default else ""))
        return 0
    add_named_entry(path, "targets", name, checked, default=default)
    print(f"targets.{name} written to {path}" + (" (the default target)" if default else ""))
    return 0


@guarded
def vm(dry: bool, action: str, *, target: str | None, name: str | None = None, timeout: Any = None, force: bool = False) -> int:
    from .core.config import coerce_text, name_problem
    from .core.schema import Key

    seconds = None if timeout is None else coerce_text("--timeout", timeout, Key((int, float), 60, positive=True))
    if name is not None and name_problem(name):
        raise ConfigError(f"--name {name!r}: {name_problem(name)} (a VM state name)", "use letters, digits, '.', '_' and '-'")
    ctx = make_context(dry, target=target)
    return int(_step("vmcontrol").run(ctx, action, target=target, state=name, timeout=seconds, force=force) or 0)
