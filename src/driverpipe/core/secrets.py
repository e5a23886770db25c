"""Secrets come from the environment or the user's keyring, never from config files.

The config only names a secret by reference (`password_env = "WINRM_PASSWORD"`
or `password_keyring = "service/user"`). Every resolved value is registered
with the Redactor so it can never reach a log line, an error or `--dry` output.
"""

from __future__ import annotations

import os
import threading

from .errors import EnvironmentProblem

REDACTED = "***"


class Redactor:
    """Replaces every registered secret value in text with ***."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str | None) -> None:
        if value and len(value) >= 3:  # shorter values would mangle ordinary text
            with self._lock:
                self._values.add(value)

    def __call__(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            text = text.replace(value, REDACTED)
        return text


#: Process-wide redactor: every secret resolved through this module is registered here.
REDACT = Redactor()


def from_env(name: str, *, what: str) -> str:
    """Read a secret from environment variable `name`; fail with a fix if unset."""
    value = os.environ.get(name)
    if value is None or value == "":
        raise EnvironmentProblem(
            f"{what}: environment variable {name} is not set",
            f"export {name}=... (the value is never written to config or logs)",
        )
    REDACT.add(value)
    return value


def from_keyring(ref: str, *, what: str) -> str:
    """Read a secret from the user's keyring; `ref` is 'service/username'."""
    service, _, user = ref.partition("/")
    if not service or not user:
        raise EnvironmentProblem(f"{what}: keyring reference {ref!r} is not 'service/username'")
    try:
        import keyring  # lazy: keyring probes backends on import
        import keyring.errors
    except ImportError as exc:  # pragma: no cover - depends on install
        raise EnvironmentProblem(f"{what}: the keyring package is not installed", "pip install keyring") from exc
    try:
        value = keyring.get_password(service, user)
    except keyring.errors.KeyringError as exc:
        raise EnvironmentProblem(f"{what}: keyring lookup failed ({exc.__class__.__name__})") from exc
    if not value:
        raise EnvironmentProblem(
            f"{what}: no keyring entry for service {service!r} user {user!r}",
            f"keyring set {service} {user}",
        )
    REDACT.add(value)
    return value


def resolve(env: str | None, keyring_ref: str | None, *, what: str) -> str:
    """Resolve a secret named by reference: environment first, then keyring."""
    if env and os.environ.get(env):
        return from_env(env, what=what)
    if keyring_ref:
        return from_keyring(keyring_ref, what=what)
    if env:
        return from_env(env, what=what)
    raise EnvironmentProblem(f"{what}: no secret reference configured", "set password_env in the target config")
