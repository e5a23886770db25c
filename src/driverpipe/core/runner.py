"""ToolRunner: the one way the pipeline runs a local program.

Steps never call subprocess directly. They call `ctx.runner.run(argv, ...)`, which
in `--dry` mode prints the command (secrets redacted) and returns a synthetic
success, and otherwise runs it with a timeout and captured output. Tests swap in
fake executables on PATH, never a fake runner, so the argv we build is real.

After Ctrl-C reached a program it ran (the program is killed at once), the runner
runs nothing more: a clean-up that would call the tool that just hung raises
KeyboardInterrupt again instead of waiting out its timeout.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EnvironmentProblem, StepFailed
from .secrets import REDACT


@dataclass
class Completed:
    argv: list[str]
    returncode: int
    stdout: str = ""
    stderr: str = ""
    dry: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def format_argv(argv: Sequence[str]) -> str:
    """A copy-pasteable rendering of argv with secrets redacted."""
    return REDACT(" ".join(shlex.quote(str(a)) for a in argv))


def which(name: str, extra_dirs: Sequence[Path] = ()) -> Path | None:
    """Find an executable on PATH (then in extra_dirs), as the OS would."""
    for directory in extra_dirs:
        for candidate in (Path(directory) / name, Path(directory) / f"{name}.exe"):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which(name)
    return Path(found) if found else None


@dataclass
class ToolRunner:
    """Runs local programs; prints instead of running when `dry` is set."""

    dry: bool = False
    echo: Callable[[str], None] = print
    verbose: bool = False
    history: list[list[str]] = field(default_factory=list)
    interrupted: bool = False

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
        what: str | None = None,
        input_text: str | None = None,
        mutates: bool = True,
    ) -> Completed:
        """Run argv. `what` names the operation in error messages.

        `mutates=False` marks a read-only probe (e.g. `--version`) that still runs
        under --dry, because a plan that depends on it would otherwise be a guess.
        """
        args = [os.fspath(a) for a in argv]
        if self.interrupted:
            raise KeyboardInterrupt  # interrupted earlier: no second call of a tool that may hang
        self.history.append(args)
        label = what or Path(args[0]).name
        if self.dry and mutates:
            self.echo(f"[dry] $ {format_argv(args)}" + (f"   (in {cwd})" if cwd else ""))
            return Completed(args, 0, "", "", dry=True)
        if self.verbose:
            self.echo(f"$ {format_argv(args)}")
        full_env = None
        if env is not None:
            full_env = dict(os.environ)
            full_env.update(env)
        try:
            proc = subprocess.run(
                args,
                cwd=cwd,
                env=full_env,
                timeout=timeout,
                capture_output=True,
                input=input_text,
                text=True,
                encoding="utf-8",
                errors="replace",
                check=False,
            )
        except FileNotFoundError as exc:
            raise EnvironmentProblem(f"{label}: program not found: {args[0]}", "install it or put it on PATH") from exc
        except PermissionError as exc:
            raise EnvironmentProblem(f"{label}: cannot execute {args[0]} (permission denied)") from exc
        except subprocess.TimeoutExpired as exc:
            raise StepFailed(f"{label}: timed out after {timeout:g} s: {format_argv(args)}") from exc
        except KeyboardInterrupt:
            self.interrupted = True  # subprocess.run has killed the program
            raise
        done = Completed(args, proc.returncode, proc.stdout or "", proc.stderr or "")
        if check and proc.returncode != 0:
            tail = last_meaningful_line(done.stderr) or last_meaningful_line(done.stdout)
            raise StepFailed(f"{label} failed with exit code {proc.returncode}" + (f": {REDACT(tail)}" if tail else ""))
        return done


def last_meaningful_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""
