"""Open a Guest for a configured target or build host (the one entry point steps use).

    guest = open_guest(ctx, ctx.config.target(name))
    require_admin(guest)

Under --dry nothing connects and no password is resolved: a DryGuest prints
each script (parameters redacted) and returns None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.config import Section
from ..core.context import RunContext
from ..core.errors import ConfigError, EnvironmentProblem
from ..core.secrets import resolve
from .base import Guest
from .dry import DryGuest
from .errors import NOT_ADMIN, NOT_ADMIN_FIX

DEFAULT_PORTS = {"ssh": 22}
_WARNED: set[str] = set()


def _where(ctx: RunContext, entry: Section, transport: str) -> str:
    if transport == "local":
        if uses_powershell_direct(ctx, entry):
            return f"{entry.name} (PowerShell Direct to VM {entry.get('vm_name') or '?'})"
        return f"{entry.name} (local)"
    port = entry.port
    if transport == "winrm":
        ssl = entry.winrm["ssl"]
        port = port or (5986 if ssl else 5985)
        return f"{entry.name} (winrm {'https' if ssl else 'http'}://{entry.host}:{port})"
    return f"{entry.name} (ssh {entry.user}@{entry.host}:{port or 22})"


def _password(entry: Section, kind: str, *, required: bool) -> str | None:
    env = entry.get("password_env") or None
    ring = entry.get("password_keyring") or None
    if not env and not ring and not required:
        return None
    return resolve(env, ring, what=f"{kind}.{entry.name} password")


def check_file(what: str, path: Path, *, marker: bytes = b"", fix: str) -> Path:
    """A file a connection needs, checked before connecting: exists, is a regular readable file, looks right."""
    try:
        if not path.exists():
            raise ConfigError(f"{what} {path}: no such file", fix)
        if not path.is_file():
            raise ConfigError(f"{what} {path}: not a regular file", fix)
        data = path.read_bytes()
    except PermissionError:
        raise ConfigError(f"{what} {path}: permission denied", f"make it readable by this user; {fix}") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror})", fix) from None
    if marker and marker not in data:
        raise ConfigError(f"{what} {path}: not what it should be (no {marker.decode()!r} block)", fix)
    return path


def _script_timeout(ctx: RunContext) -> float:
    return float(ctx.config.project.deploy.script_timeout)


def _open(ctx: RunContext, entry: Section, kind: str) -> Guest:
    transport = entry.transport
    if ctx.dry:
        return DryGuest(ctx, entry.name, _where(ctx, entry, transport))
    timeout = _script_timeout(ctx)
    if transport == "winrm":
        from .winrm import WinRMGuest

        w = entry.winrm
        if w["auth"] == "certificate":
            raise ConfigError(f"{kind}.{entry.name}.winrm.auth: certificate auth is not supported yet", "use negotiate/ntlm (or kerberos) with password_env")
        if not w["cert_validation"] and entry.name not in _WARNED:
            _WARNED.add(entry.name)  # once per run
            ctx.say(f"warning: {kind}.{entry.name}.winrm.cert_validation = false: the listener's identity is not checked (set ca_bundle instead)")
        password = _password(entry, kind, required=w["auth"] != "kerberos")
        return WinRMGuest(
            name=entry.name,
            host=entry.host,
            user=entry.user,
            password=password,
            port=entry.port,
            ssl=w["ssl"],
            auth=w["auth"],
            cert_validation=w["cert_validation"],
            ca_bundle=str(
                check_file(
                    f"{kind}.{entry.name}.winrm.ca_bundle",
                    Path(w["ca_bundle"]).expanduser(),
                    marker=b"-----BEGIN CERTIFICATE-----",
                    fix="point it at the listener's certificate or a CA bundle in PEM (provisioning writes one)",
                )
            )
            if w["ca_bundle"]
            else "",
            allow_basic_http=w["allow_basic_http"],
            connection_timeout=w["connection_timeout"],
            read_timeout=w["read_timeout"],
            operation_timeout=w["operation_timeout"],
            use_proxy=w["use_proxy"],
            script_timeout=timeout,
            say=ctx.say,
        )
    if transport == "ssh":
        from .ssh import SSHGuest

        s = entry.ssh
        if not entry.user:
            raise ConfigError(f"{kind}.{entry.name}.user: required for transport ssh", 'set user = "Administrator" (an admin account)')
        known = Path(s["known_hosts"]).expanduser() if s["known_hosts"] else Path.home() / ".ssh" / "known_hosts"
        if s["key_file"]:
            check_file(
                f"{kind}.{entry.name}.ssh.key_file",
                Path(s["key_file"]).expanduser(),
                marker=b"PRIVATE KEY-----",
                fix="point it at an OpenSSH/PEM private key (ssh-keygen -t ed25519), or leave it empty to use the agent",
            )
        if known.exists():
            try:
                check_file(f"{kind}.{entry.name}.ssh.known_hosts", known, fix="fix or recreate it (ssh-keyscan -p PORT HOST >> FILE)").read_text(
                    encoding="utf-8"
                )
            except UnicodeDecodeError:
                raise ConfigError(
                    f"{kind}.{entry.name}.ssh.known_hosts {known}: not UTF-8 text", "recreate it with ssh-keyscan, or point ssh.known_hosts elsewhere"
                ) from None
        return SSHGuest(
            name=entry.name,
            host=entry.host,
            port=entry.port or DEFAULT_PORTS["ssh"],
            user=entry.user,
            password=_password(entry, kind, required=False),
            key_file=str(Path(s["key_file"]).expanduser()) if s["key_file"] else "",
            known_hosts=known,
            trust_on_first_use=s["trust_on_first_use"],
            connect_timeout=s["connect_timeout"],
            script_timeout=timeout,
            powershell_path=s.get("powershell_path", "powershell"),
            say=ctx.say,
        )
    if transport == "local":
        direct = _powershell_direct_host(ctx, entry)
        if direct is not None:
            return _open_powershell_direct(entry, kind, direct, timeout)
        from .local import LocalGuest

        return LocalGuest(name=entry.name, script_timeout=timeout)
    raise ConfigError(f"{kind}.{entry.name}.transport: unknown transport {transport!r}", "use winrm, ssh or local")


def uses_powershell_direct(ctx: RunContext, entry: Section) -> bool:
    """True when this target is a Hyper-V VM reached from its host over PowerShell Direct."""
    return _powershell_direct_host(ctx, entry) is not None


def _powershell_direct_host(ctx: RunContext, entry: Section) -> dict[str, Any] | None:
    """The [vm_hosts] entry when this local target is a Hyper-V VM reached over PowerShell Direct."""
    vm_host = entry.get("vm_host") or ""
    if not vm_host:
        return None
    hosts: Any = ctx.config.user.vm_hosts
    spec = hosts.get(vm_host) or {}
    if spec.get("kind") == "hyperv" and spec.get("use_powershell_direct"):
        return {"name": vm_host, **dict(spec)}
    return None


def _open_powershell_direct(entry: Section, kind: str, host: dict[str, Any], timeout: float) -> Guest:
    if (host.get("transport") or "local") != "local":
        raise ConfigError(
            f"vm_hosts.{host['name']}.transport: PowerShell Direct works only on the Hyper-V host itself",
            f'run the pipeline on the Hyper-V host (transport = "local") or set use_powershell_direct = false and reach {entry.name} over winrm/ssh',
        )
    vm_name = entry.get("vm_name") or ""
    if not vm_name or not entry.user:
        missing = "vm_name" if not vm_name else "user"
        raise ConfigError(f"{kind}.{entry.name}.{missing}: required for PowerShell Direct", "set the VM's name (as Get-VM lists it) and an admin account in it")
    from .psdirect import PsDirectGuest

    password = _password(entry, kind, required=True)
    assert password is not None
    return PsDirectGuest(name=entry.name, vm_name=vm_name, user=entry.user, password=password, script_timeout=timeout)


def open_guest(ctx: RunContext, target: Section) -> Any:
    """A connected Guest for target (config.target(name)); a DryGuest under --dry.

    Wine targets are opened by driverpipe.targets.open (they have no PowerShell to send scripts to).
    """
    return _open(ctx, target, "targets")


def open_build_host(ctx: RunContext, host: Section) -> Guest:
    """A connected Guest for a [build_hosts] entry (ssh or winrm)."""
    return _open(ctx, host, "build_hosts")


def require_admin(guest: Guest) -> None:
    """Fail with one line when the session is not elevated (runs Test-Elevation.ps1; nothing under --dry)."""
    result = guest.run_script("Test-Elevation.ps1", {})
    if result is None:
        return  # dry run
    if not isinstance(result, dict) or not result.get("elevated"):
        user = result.get("user") if isinstance(result, dict) else None
        raise EnvironmentProblem(f"{guest.name}: {NOT_ADMIN}" + (f" (connected as {user})" if user else ""), NOT_ADMIN_FIX)
