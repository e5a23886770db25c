"""RunContext: what every step receives (config, runner, dry flag, output)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config
from .runner import ToolRunner
from .scripts import load_script
from .secrets import REDACT, REDACTED

SECRET_PARAM_WORDS = ("password", "passwd", "secret", "token", "credential", "key_pass")


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Bound parameters as shown to people: secret-looking names and known secret values hidden."""
    shown: dict[str, Any] = {}
    for name, value in params.items():
        if any(word in name.lower() for word in SECRET_PARAM_WORDS):
            shown[name] = REDACTED
        elif isinstance(value, str):
            shown[name] = REDACT(value)
        elif isinstance(value, bytes):
            shown[name] = f"<{len(value)} bytes>"
        else:
            shown[name] = json.loads(REDACT(json.dumps(value, default=str)))
    return shown


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class RunContext:
    config: Config
    dry: bool = False
    echo: Callable[[str], None] = print
    progress: Callable[[str], None] = _stderr
    runner: ToolRunner = field(default_factory=ToolRunner)
    verbose: bool = False

    def __post_init__(self) -> None:
        self.runner.dry = self.dry
        self.runner.echo = self.say
        self.runner.verbose = self.verbose

    def say(self, text: str) -> None:
        """A line of output for people (secrets redacted)."""
        self.echo(REDACT(text))

    def step(self, text: str) -> None:
        """A progress line (stderr, so stdout stays machine-readable with --json)."""
        self.progress(REDACT(f"==> {text}"))

    def show_script(self, where: str, script: Path, params: Mapping[str, Any]) -> None:
        """--dry: show a remote script, its bound parameters and its text."""
        self.say(f"[dry] {where}: {script.name} {json.dumps(redact_params(params), sort_keys=True)}")
        try:
            body = load_script(script)
        except OSError:
            body = "<script not found>"
        for line in body.splitlines():
            self.say(f"[dry]   | {line}")

    @property
    def artifacts(self) -> Path:
        path = self.config.path(self.config.project.artifacts_dir)
        return path
