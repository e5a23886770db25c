"""`invoke provision`: turn a bootstrapped Windows VM into a test target, idempotently.

Chicken and egg: the pipeline needs WinRM over HTTPS (or SSH) to reach a guest,
and a fresh Windows has neither. A person runs vm/guest/Bootstrap-TestGuest.ps1
once inside the VM (or autounattend.xml's FirstLogonCommands runs it); from then
on this step connects over the configured transport and:

1. checks the session is elevated;
2. reads the WinRM HTTPS listener's certificate (Get-WinRMListener.ps1) and pins
   it: written as PEM to the per-user data dir and recorded as the target's
   `winrm.ca_bundle` when none is configured (never replaced silently);
3. reads the guest state in one round trip (deploy.read_guest_state): Secure
   Boot or HVCI on is a clear failure with the fix, since no setting inside the
   guest can overcome them;
4. one batch: Set-GuestPrepared.ps1 (TESTSIGNING, Debug Print Filter, test
   certificate trust; only what is missing) + Set-TestGuestBaseline.ps1 (crash
   dumps, auto-logon off, WinRM autostart, DebugView presence);
5. installs DebugView when debugview.source is configured and it is missing;
6. reboots when needed (boot-time identity, reboot.reboot_and_wait) and checks
   that TESTSIGNING is active and the baseline reports nothing left to change.

A second run changes nothing and does not reboot. Everything Windows-side was
written from documentation and exercised only against fake guests here.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.context import RunContext
from ..core.errors import CheckFailed, ConfigError, EnvironmentProblem, PipelineError, StepFailed
from ..core.files import write_atomic
from ..parse.text import native_text

DEBUG_FILTER_WANTED = 0xF
CRASH_DUMP = "automatic"  # CrashDumpEnabled=7: kernel-dump content, Windows sizes the page file so the dump fits
GUEST_WINRM_PORT = 5986
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


@dataclass
class _CertOnly:
    """What deploy.read_guest_state needs of a package when only the certificate matters."""

    cert_path: Path  # Path("") when there is none: read_guest_state checks is_file()
    files: list[Path] = field(default_factory=list)
    dir: Path = Path(".")
    name: str = ""


@dataclass
class Outcome:
    changed: list[str] = field(default_factory=list)
    rebooted: bool = False
    notes: list[str] = field(default_factory=list)
    thumbprint: str = ""


# ---------------------------------------------------------------------------------------------
# the test certificate (from the signing step) and the listener certificate
# ---------------------------------------------------------------------------------------------


def test_cert(ctx: RunContext) -> Path | None:
    """The test certificate to trust on the guest, or None with a note (provision still runs)."""
    later = "run `invoke sign` first, then `invoke provision` again to trust it (deploy also does it)"
    from ..signing.certs import ensure_test_cert

    if ctx.dry:
        ctx.say("[dry] the test certificate from the signing step would be trusted (LocalMachine Root + TrustedPublisher)")
        return None
    try:
        cer = ensure_test_cert(ctx).cer
        path = cer if cer.is_file() else None
    except PipelineError as exc:
        ctx.say(f"note: no test certificate ({exc.message}); {later}")
        return None
    if path is None:
        ctx.say(f"note: the signing step has no .cer file yet; {later}")
    return path


def pem_thumbprints(data: bytes) -> set[str]:
    """SHA-1 thumbprints (as Windows shows them) of every certificate in a PEM bundle or a DER file."""
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        return {hashlib.sha1(data).hexdigest().upper()} if data[:1] == b"\x30" else set()
    out = set()
    for body in blocks:
        try:
            der = base64.b64decode(b"".join(body.split()))
        except ValueError:
            continue
        out.add(hashlib.sha1(der).hexdigest().upper())
    return out


def der_to_pem(der: bytes) -> str:
    b64 = base64.b64encode(der).decode()
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64)) + "\n-----END CERTIFICATE-----\n"


def cert_names(der: bytes) -> list[str]:
    """DNS names and IP addresses in the certificate's subjectAltName (what TLS hostname checks use)."""
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return []
    names: list[str] = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


def pin_path(target_name: str) -> Path:
    from ..core.config import user_data_dir

    return user_data_dir() / "winrm" / f"{target_name}.pem"


def record_listener(ctx: RunContext, section: Any, listener: Any, out: Outcome) -> None:
    """Pin the guest's WinRM HTTPS certificate in the target's config (winrm.ca_bundle)."""
    if not isinstance(listener, dict):
        return  # dry run
    name = str(section.name)
    https = listener.get("https")
    if not https:
        why = listener.get("error") or "no HTTPS listener on port 5986"
        out.notes.append(f"WinRM over HTTPS is not set up on {name} ({why}): run vm/guest/Bootstrap-TestGuest.ps1 on the guest as Administrator")
        return
    thumb = str(https.get("thumbprint") or "").upper()
    out.thumbprint = thumb
    der = base64.b64decode(str(https.get("cert_base64") or "")) if https.get("cert_base64") else b""
    if not der:
        out.notes.append(f"{name}: the WinRM HTTPS listener names certificate {thumb}, which is not in LocalMachine\\My: rerun Bootstrap-TestGuest.ps1")
        return
    actual = hashlib.sha1(der).hexdigest().upper()
    if actual != thumb:
        raise StepFailed(f"{name}: the listener certificate's SHA-1 is {actual}, not the listener's thumbprint {thumb}", "rerun Bootstrap-TestGuest.ps1")
    host = str(section.get("host") or "")
    names = cert_names(der)
    if section.transport == "winrm" and host and names and host.lower() not in (n.lower() for n in names):
        out.notes.append(
            f"{name}: the listener certificate is for {', '.join(names)}, not {host}: hostname checks will fail; "
            f"rerun Bootstrap-TestGuest.ps1 -DnsName/-IPAddress {host} -RenewCertificate"
        )
    winrm = section.get("winrm") or {}
    configured = str(winrm.get("ca_bundle") or "")
    if configured:
        bundle = Path(configured).expanduser()
        try:
            known = pem_thumbprints(bundle.read_bytes())
        except OSError:
            known = set()
        if thumb in known:
            ctx.say(f"{name}: WinRM listener certificate {thumb} is the pinned one ({bundle})")
        else:
            # Never re-pin silently: a different certificate is exactly what pinning exists to notice.
            out.notes.append(
                f"{name}: winrm.ca_bundle {bundle} does not hold the listener's certificate {thumb}; "
                f"if the guest's certificate was renewed on purpose, point ca_bundle at {pin_path(name)}"
            )
            if not ctx.dry:
                write_atomic(pin_path(name), der_to_pem(der).encode("ascii"))
        return
    path = pin_path(name)
    if ctx.dry:
        ctx.say(f"[dry] would write the listener certificate {thumb} to {path} and set targets.{name}.winrm.ca_bundle")
        return
    from ..core.config import add_named_entry

    write_atomic(path, der_to_pem(der).encode("ascii"))
    add_named_entry(ctx.config.user_path, "targets", name, {"winrm.ca_bundle": str(path)})
    out.changed.append("winrm.ca_bundle (host config)")
    ctx.say(f"{name}: pinned WinRM listener certificate {thumb}: targets.{name}.winrm.ca_bundle = {path}")
    if not winrm.get("cert_validation", True):
        out.notes.append(
            f"{name}: the certificate was taken on first use (cert_validation = false): compare {thumb} with the thumbprint "
            "Bootstrap-TestGuest.ps1 printed on the guest, then set cert_validation = true"
        )


# ---------------------------------------------------------------------------------------------
# the guest baseline
# ---------------------------------------------------------------------------------------------


def _vm_kind(ctx: RunContext, section: Any) -> str:
    host = str(section.get("vm_host") or "")
    try:
        return str(ctx.config.user.vm_hosts[host]["kind"]) if host else ""
    except (KeyError, TypeError):
        return ""


def guest_winrm_port(ctx: RunContext, section: Any) -> int:
    """The listener port INSIDE the guest (a QEMU target's port is the host-side forward)."""
    if section.transport == "winrm" and section.get("port") and _vm_kind(ctx, section) != "qemu":
        return int(section.port)
    return GUEST_WINRM_PORT


def _blocker_fix(ctx: RunContext, section: Any) -> str:
    kind, vm = _vm_kind(ctx, section), str(section.get("vm_name") or "<vm>")
    if kind == "hyperv":
        return f"on the Hyper-V host, VM off: Set-VMFirmware -VMName {vm} -EnableSecureBoot Off (vm/hyperv/New-TestVm.ps1 does it)"
    if kind in ("qemu", "libvirt"):
        return "boot with non-Secure-Boot OVMF (OVMF_CODE_4M.fd + its OVMF_VARS_4M.fd; vm/qemu/make-base-image.sh uses them)"
    return "turn Secure Boot off in the VM's firmware settings"


def provision_guest(
    ctx: RunContext,
    guest: Any,
    section: Any,
    *,
    cert_file: Path | None,
    reboot: Callable[..., None] | None = None,
) -> Outcome:
    """Bring one connected guest to the test baseline; returns what changed. Idempotent."""
    from ..transports.connect import require_admin
    from .operations import read_guest_state
    from .reboot import reboot_and_wait
    from .state import cert_thumbprint

    do_reboot = reboot or reboot_and_wait
    name = str(section.name)
    out = Outcome()
    timeout = float(ctx.config.project.deploy.script_timeout)
    require_admin(guest)

    listener = guest.run_script("Get-WinRMListener.ps1", {"Port": guest_winrm_port(ctx, section)}, timeout=timeout)
    record_listener(ctx, section, listener, out)

    guest_dir = str(section.get("guest_dir") or ctx.config.project.deploy.guest_dir)
    state = read_guest_state(guest, ctx, pkg=_CertOnly(cert_file or Path("")), guest_dir=guest_dir)
    if not state.synthetic:
        ctx.say(f"{name}: {state.summary()}")
        if state.secure_boot is True:
            raise EnvironmentProblem(f"{name}: Secure Boot is on, so TESTSIGNING cannot be enabled", _blocker_fix(ctx, section))
        if state.hvci:
            raise EnvironmentProblem(
                f"{name}: HVCI (memory integrity) is on; it blocks test-signed drivers",
                "turn off Core isolation > Memory integrity in Windows Security (or DeviceGuard HypervisorEnforcedCodeIntegrity Enabled=0), reboot",
            )

    prep: dict[str, Any] = {}
    if not state.testsigning_configured:
        prep["EnableTestSigning"] = True
    if state.debug_filter is None or (state.debug_filter & DEBUG_FILTER_WANTED) != DEBUG_FILTER_WANTED:
        prep["SetDebugFilter"] = True
        prep["DebugFilterValue"] = DEBUG_FILTER_WANTED
    if cert_file is not None and not state.cert_trusted:
        thumb, der = cert_thumbprint(cert_file)
        prep["CertBase64"] = base64.b64encode(der).decode()
        prep["CertThumbprint"] = thumb
    dbgview_path = str(ctx.config.project.debugview.guest_path)
    baseline = {"CrashDump": CRASH_DUMP, "AutoReboot": True, "DisableAutoLogon": True, "DebugViewPath": dbgview_path}
    ctx.step(f"baseline on {name}: " + (", ".join(sorted(prep)) or "TESTSIGNING/filter/cert already in place") + "; crash dumps, auto-logon, WinRM")
    prepared, base = guest.run_batch([("Set-GuestPrepared.ps1", prep), ("Set-TestGuestBaseline.ps1", baseline)], timeout=timeout)

    need_reboot = bool(state.testsigning_configured) and not state.testsigning_active
    if isinstance(prepared, dict):
        bcd = prepared.get("bcdedit") or {}
        if prep.get("EnableTestSigning") and bcd and int(bcd.get("rc") or 0) != 0:
            text = native_text(bcd).strip().splitlines()
            raise StepFailed(
                f"{name}: bcdedit /set testsigning on failed (exit {bcd.get('rc')}): {text[-1] if text else 'no output'}",
                _blocker_fix(ctx, section),
            )
        out.changed += [str(c) for c in prepared.get("changed") or []]
        need_reboot = need_reboot or bool(prepared.get("reboot_required"))
    elif ctx.dry:
        need_reboot = need_reboot or "EnableTestSigning" in prep
    dv_present = state.debugview_present
    if isinstance(base, dict):
        out.changed += [str(c) for c in base.get("changed") or []]
        need_reboot = need_reboot or bool(base.get("reboot_required"))
        dv_present = bool(base.get("debugview_present"))
    if base is not None and not dv_present:
        _debugview(ctx, guest, out, guest_dir)

    if need_reboot:
        do_reboot(ctx, guest, float(ctx.config.project.deploy.reboot_timeout))
        out.rebooted = True
        if not ctx.dry:
            _check_after_reboot(ctx, guest, section, guest_dir, cert_file, baseline)
    return out


def _debugview(ctx: RunContext, guest: Any, out: Outcome, guest_dir: str) -> None:
    dv = ctx.config.project.debugview
    if not str(dv.source or "").strip():
        out.notes.append(
            f"DebugView is not at {dv.guest_path} on the guest: set debugview.source (a local Dbgview.exe/zip or an https URL "
            "plus debugview.sha256) and rerun provision, or copy it there by hand"
        )
        return
    from .capture import Capture

    guest.run_batch(Capture(ctx, guest, "provision", guest_dir=guest_dir).ensure_items())
    out.changed.append("debugview")


def _check_after_reboot(ctx: RunContext, guest: Any, section: Any, guest_dir: str, cert_file: Path | None, baseline: dict[str, Any]) -> None:
    from .operations import read_guest_state

    name = str(section.name)
    state = read_guest_state(guest, ctx, pkg=_CertOnly(cert_file or Path("")), guest_dir=guest_dir)
    if not state.testsigning_active:
        raise CheckFailed(
            f"{name}: TESTSIGNING is still not active after the reboot",
            "check `bcdedit /enum {current}` on the guest and that Secure Boot is off",
        )
    again = guest.run_script("Set-TestGuestBaseline.ps1", {**baseline, "CheckOnly": True}, timeout=float(ctx.config.project.deploy.script_timeout))
    left = [str(c) for c in (again or {}).get("changed") or []] if isinstance(again, dict) else []
    if left:
        raise CheckFailed(f"{name}: after the reboot the baseline still differs: {', '.join(left)}", "a policy may reset these values; check the guest")


def run(ctx: RunContext, *, target: str | None) -> int:
    """`invoke provision`: 0 when the guest matches the test baseline (after a reboot if one was needed)."""
    section = ctx.config.target(target)
    if section.transport == "wine":
        ctx.say(
            f"{section.name}: provision is not applicable on wine: the first deploy creates the prefix "
            "and trusts the test certificate there; `invoke vm.revert` resets it"
        )
        return 0
    if not section.test_machine:
        raise ConfigError(
            f"targets.{section.name}: provision changes boot settings and trust stores and reboots, but test_machine is false",
            f"set targets.{section.name}.test_machine = true (only for a disposable test VM)",
        )
    cert_file = test_cert(ctx)
    from .leases import held_guest
    from .open import open_target

    with held_guest(ctx, section, open_target) as (guest, _lease):
        out = provision_guest(ctx, guest, section, cert_file=cert_file)
    for note in out.notes:
        ctx.say(f"note: {note}")
    if ctx.dry:
        return 0
    did = ", ".join(out.changed) if out.changed else "nothing (already provisioned)"
    ctx.say(f"{section.name}: provisioned; changed: {did}" + ("; rebooted" if out.rebooted else ""))
    return 0
