"""Errors that end a task with one clear line and a meaningful exit code.

Every failure a user can cause or fix (bad config, missing tool, unreachable
host, failed check) is raised as a PipelineError subclass. The task layer
prints `error: <message>` (plus `  fix: <hint>` when there is one) and exits
with `exit_code`; tracebacks are reserved for real bugs.
"""

from __future__ import annotations


class ExitCode:
    """Exit codes shared by every task (documented in the README)."""

    OK = 0
    CHECK_FAILED = 1  # a verdict was negative: verification, tests, signature check
    BAD_INPUT = 2  # config, flags, Cargo.toml, paths, names
    ENVIRONMENT = 3  # a tool, host, credential or prerequisite is missing/unreachable
    STEP_FAILED = 4  # a tool or remote operation ran and failed (cargo, sc.exe, ...)
    NOT_IMPLEMENTED = 5
    INTERRUPTED = 130


class PipelineError(Exception):
    """A failure with a one-line message and an optional one-line fix."""

    exit_code: int = ExitCode.STEP_FAILED

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f" (fix: {self.hint})"
        return text


class ConfigError(PipelineError):
    """Invalid configuration, flags or project files. Exit code 2."""

    exit_code = ExitCode.BAD_INPUT


class EnvironmentProblem(PipelineError):
    """Something the step needs is missing: a tool, a host, a credential. Exit code 3."""

    exit_code = ExitCode.ENVIRONMENT


class MissingTool(EnvironmentProblem):
    """A program the step runs is not installed. Exit code 3 with the install line; never read as a lost connection."""


class StepFailed(PipelineError):
    """A tool or remote operation ran and failed. Exit code 4."""

    exit_code = ExitCode.STEP_FAILED


class CheckFailed(PipelineError):
    """A verification verdict was negative. Exit code 1."""

    exit_code = ExitCode.CHECK_FAILED


class NotImplementedYet(PipelineError):
    """A task whose step is not implemented yet. Exit code 5; never a fake success."""

    exit_code = ExitCode.NOT_IMPLEMENTED
