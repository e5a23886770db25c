"""The test code-signing certificate: created once, reused, rotated with `invoke sign --new-cert`.

Two kinds (see `ensure_test_cert`):

- File-based (every non-Windows host, and Windows when sign.cert_store is empty):
  RSA-2048 key, self-signed SHA-256 certificate (EKU codeSigning, CA:FALSE,
  digitalSignature), written with `cryptography` to a per-user directory outside
  the repository (sign.cert_dir, default <user data dir>/certs; dir 0700): <base>.key
  (PKCS#8 PEM, 0600), <base>.crt (PEM), <base>.cer (DER, what the guest imports),
  <base>.pfx (0600, for signtool /f and for importing on Windows). The PFX
  password comes from the environment variable named by sign.pfx_password_env,
  else it is generated once and kept in the OS keyring (when a usable backend
  exists) or in a 0600 file beside the PFX.
- Store-based (Windows with signtool): PowerShell New-SelfSignedCertificate via
  scripts/host/New-TestSigningCert.ps1, moved into the configured CurrentUser
  store (default WDRTestCertStore, like cargo-wdk's) so signtool can use
  `/s <store> /n <CN>`. Chosen over makecert/certmgr (note 01): makecert is
  deprecated and its key/hash defaults are weak; PowerShell sets RSA-2048,
  SHA-256 and the EKU explicitly. Only the .cer leaves the store.

Whatever the kind, the certificate is checked on every use (expired, expiring
soon, key/cert mismatch, missing codeSigning EKU, weak key) with an explanation
and the fix `invoke sign --new-cert`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..core.errors import CheckFailed, ConfigError, EnvironmentProblem, StepFailed
from ..core.files import write_atomic
from ..core.secrets import REDACT
from ..parse.signers import common_name

KEY_BITS = 2048
VALID_DAYS = 730
WARN_DAYS = 30
KEYRING_SERVICE = "driverpipe-test-signing"
OID_CODE_SIGNING = "1.3.6.1.5.5.7.3.3"
ROTATE_HINT = "run `invoke sign --new-cert`"
PS_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "host" / "New-TestSigningCert.ps1"


@dataclass
class TestCert:
    subject: str
    thumbprint: str  # SHA-1 of the DER certificate, uppercase hex (what Windows shows)
    not_after: datetime
    serial: int
    cer: Path  # DER certificate (exported into the package for the guest)
    crt: Path | None = None  # PEM certificate (file-based)
    key: Path | None = None  # PEM private key, 0600 (file-based)
    pfx: Path | None = None  # PKCS#12, 0600 (file-based)
    store: str | None = None  # Windows CurrentUser store name (store-based)
    created: bool = False
    password_source: str = ""  # "env:NAME" | "keyring" | "file:PATH" (never the value)
    password: str | None = field(default=None, repr=False)  # PFX password, registered with REDACT

    __test__ = False  # not a pytest test class despite the name

    @property
    def common_name(self) -> str:
        return common_name(self.subject)


def file_base(subject: str) -> str:
    """A file name stem from the subject's CN: 'WazabiEDR Test Signing' -> 'WazabiEDR_Test_Signing'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", common_name(subject)).strip("._")
    return stem or "driverpipe_test_cert"


def cert_dir(ctx: Any) -> Path:
    configured = ctx.config.project.sign.cert_dir
    if configured:
        return Path(configured).expanduser()
    from ..core.config import user_data_dir

    return user_data_dir() / "certs"


# --------------------------------------------------------------------------- checks


def describe_problems(cert_der: bytes, key_pem: bytes | None = None, *, now: datetime | None = None) -> tuple[list[str], list[str]]:
    """(problems, warnings) with a certificate (and its key, when given)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    now = now or datetime.now(UTC)
    problems: list[str] = []
    warnings: list[str] = []
    cert = x509.load_der_x509_certificate(cert_der)
    if cert.not_valid_after_utc <= now:
        problems.append(f"expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    elif cert.not_valid_after_utc - now < timedelta(days=WARN_DAYS):
        warnings.append(f"expires on {cert.not_valid_after_utc:%Y-%m-%d} (in {(cert.not_valid_after_utc - now).days} days)")
    if cert.not_valid_before_utc > now + timedelta(minutes=5):
        problems.append(f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (clock skew?)")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if not any(oid.dotted_string == OID_CODE_SIGNING for oid in eku):
            problems.append("has no codeSigning extended key usage")
    except x509.ExtensionNotFound:
        problems.append("has no extended key usage (codeSigning required)")
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size < KEY_BITS:
        problems.append(f"key is not RSA >= {KEY_BITS} bits")
    if cert.signature_hash_algorithm is None or not isinstance(cert.signature_hash_algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
        problems.append("is not signed with SHA-256 or stronger")
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
            mine = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            theirs = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            if mine != theirs:
                problems.append("does not match its private key (key and certificate from different generations)")
        except (ValueError, TypeError):
            problems.append("private key file is unreadable or encrypted")
    return problems, warnings


def cert_facts(cert_der: bytes) -> tuple[str, str, datetime, int]:
    """(subject RFC 4514, SHA-1 thumbprint, not_after, serial)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_der_x509_certificate(cert_der)
    return cert.subject.rfc4514_string(), cert.fingerprint(hashes.SHA1()).hex().upper(), cert.not_valid_after_utc, cert.serial_number


# --------------------------------------------------------------------------- file-based


def _new_key_and_cert(subject: str) -> tuple[bytes, bytes]:
    """(PKCS#8 PEM key, DER cert) of a new self-signed code-signing certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError:
        raise ConfigError(f"sign.cert_subject {subject!r} is not a distinguished name", 'write it like "CN=WazabiEDR Test Signing"') from None
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    now = datetime.now(UTC).replace(microsecond=0)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),  # digitalSignature only
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.DER)


def _make_pfx(key_pem: bytes, cert_der: bytes, password: str, friendly: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    key = serialization.load_pem_private_key(key_pem, password=None)
    cert = x509.load_der_x509_certificate(cert_der)
    enc = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode())
    )
    return pkcs12.serialize_key_and_certificates(friendly.encode(), key, cert, None, enc)  # type: ignore[arg-type]


def _usable_keyring() -> Any | None:
    """The keyring module if a real backend is available (not the fail/null placeholders)."""
    try:
        import keyring
        import keyring.backends.fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken backend configuration: fall back to the secret file
        return None
    name = f"{type(backend).__module__}.{type(backend).__name__}".lower()
    if "fail" in name or "null" in name or getattr(backend, "priority", 1) <= 0:
        return None
    if "chainer" in name and not getattr(backend, "backends", None):
        return None
    return keyring


class _Password:
    """Where the PFX password lives; resolves or creates it without ever printing it."""

    def __init__(self, ctx: Any, pfx: Path):
        self.ctx = ctx
        self.env = ctx.config.project.sign.pfx_password_env
        self.file = pfx.with_name(pfx.name + ".password")
        self.account = str(pfx)

    def get(self, *, create: bool) -> tuple[str | None, str]:
        if self.env and os.environ.get(self.env):
            from ..core.secrets import from_env

            return from_env(self.env, what="PFX password"), f"env:{self.env}"
        if self.file.is_file():
            stored = self.file.read_text(encoding="utf-8").strip()
            REDACT.add(stored)
            return stored, f"file:{self.file}"
        kr = _usable_keyring()
        if kr is not None:
            kept: str | None
            try:
                kept = kr.get_password(KEYRING_SERVICE, self.account)
            except Exception:  # any keyring backend failure: behave as if nothing is stored
                kept = None
            if kept:
                REDACT.add(kept)
                return kept, "keyring"
        if not create:
            return None, ""
        value = secrets.token_urlsafe(24)
        REDACT.add(value)  # registered before any argv or message can contain it
        if self.ctx.dry:
            return value, "generated (not stored: --dry)"
        if kr is not None:
            try:
                kr.set_password(KEYRING_SERVICE, self.account, value)
                return value, "keyring"
            except Exception:
                pass  # e.g. a locked or headless keyring: fall back to the file
        write_atomic(self.file, value.encode(), mode=0o600)
        return value, f"file:{self.file}"

    def forget(self) -> None:
        """Drop a generated password (rotation makes a new one). Env passwords are the user's."""
        self.file.unlink(missing_ok=True)
        kr = _usable_keyring()
        if kr is not None:
            try:
                kr.delete_password(KEYRING_SERVICE, self.account)
            except Exception:
                pass


def file_cert_paths(ctx: Any) -> dict[str, Path]:
    folder = cert_dir(ctx)
    base = file_base(ctx.config.project.sign.cert_subject)
    return {ext: folder / f"{base}.{ext}" for ext in ("key", "crt", "cer", "pfx")}


def _ensure_private_dir(folder: Path) -> None:
    """The private key's folder: created 0700, or an existing one that only this user can write.

    An existing folder is never chmod-ed: `sign.cert_dir = "/tmp"` must not strip /tmp's sticky
    bit, and a folder others can write is no place for a private key."""
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
        return
    if not folder.is_dir():
        raise ConfigError(f"sign.cert_dir {folder} is not a directory", "point sign.cert_dir at a folder (or leave it empty)")
    if sys.platform == "win32":
        return
    st = folder.stat()
    if st.st_uid != os.getuid():
        raise ConfigError(f"sign.cert_dir {folder} belongs to another user (uid {st.st_uid})", "use a folder you own (or leave sign.cert_dir empty)")
    if st.st_mode & 0o022:
        raise ConfigError(
            f"sign.cert_dir {folder} is writable by group or others (mode {stat.filemode(st.st_mode)}): no place for a private key",
            f"chmod 700 {folder} yourself, or use another folder (or leave sign.cert_dir empty)",
        )


def _check_repo(ctx: Any, folder: Path) -> None:
    """Refuse a key directory inside the project's git work tree (it could be committed)."""
    root = ctx.config.root.resolve()
    if not (root / ".git").exists():
        return
    try:
        folder.resolve().relative_to(root)
    except ValueError:
        return
    raise ConfigError(
        f"sign.cert_dir {folder} is inside the project; a private key must never land in the repository",
        "set sign.cert_dir to a folder outside the project, or leave it empty for the per-user default",
    )


def ensure_file_cert(ctx: Any, rotate: bool = False) -> TestCert:
    """Create (first use or rotate) or reuse the file-based test certificate."""
    subject = ctx.config.project.sign.cert_subject
    paths = file_cert_paths(ctx)
    folder = paths["key"].parent
    _check_repo(ctx, folder)
    password = _Password(ctx, paths["pfx"])
    exists = paths["key"].is_file() and paths["crt"].is_file()
    if rotate or not exists:
        what = "rotating" if exists else "creating"
        if ctx.dry:
            ctx.say(f"[dry] would be {what} the test certificate {subject!r} in {folder} (key 0600, .crt, .cer, .pfx)")
            pw, source = password.get(create=True)  # registered with REDACT; nothing is stored under --dry
            return TestCert(
                subject=subject,
                thumbprint="<new>",
                not_after=datetime.now(UTC) + timedelta(days=VALID_DAYS),
                serial=0,
                cer=paths["cer"],
                crt=paths["crt"],
                key=paths["key"],
                pfx=paths["pfx"],
                created=True,
                password_source=source,
                password=pw,
            )
        ctx.step(f"{what} test certificate {subject!r} in {folder}")
        _ensure_private_dir(folder)
        if rotate:
            password.forget()
        key_pem, cert_der = _new_key_and_cert(subject)
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        crt_pem = x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM)
        pw, source = password.get(create=True)
        assert pw is not None
        # Key first (0600 from the start: written to a 0600 temp file, then renamed).
        write_atomic(paths["key"], key_pem, mode=0o600)
        write_atomic(paths["crt"], crt_pem, mode=0o644)
        write_atomic(paths["cer"], cert_der, mode=0o644)
        write_atomic(paths["pfx"], _make_pfx(key_pem, cert_der, pw, common_name(subject)), mode=0o600)
        ctx.step(f"PFX password kept in {_where(source)} (value never shown)")
        created = True
    else:
        created = False
        source = ""
    key_pem = paths["key"].read_bytes()
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert_der = x509.load_pem_x509_certificate(paths["crt"].read_bytes()).public_bytes(serialization.Encoding.DER)
    except ValueError:
        raise CheckFailed(f"test certificate {paths['crt']} is not a readable PEM certificate", ROTATE_HINT) from None
    _validate(ctx, cert_der, key_pem, where=str(paths["crt"]))
    mode = paths["key"].stat().st_mode & 0o777
    if mode & 0o077:
        if not ctx.dry:
            os.chmod(paths["key"], 0o600)
        ctx.step(f"private key {paths['key']} had mode {mode:o}; set to 600")
    if not created and not ctx.dry:
        # .cer and .pfx are derived files: recreate them if missing or stale.
        if not paths["cer"].is_file() or paths["cer"].read_bytes() != cert_der:
            write_atomic(paths["cer"], cert_der, mode=0o644)
        if not paths["pfx"].is_file():
            pw, source = password.get(create=True)
            assert pw is not None
            write_atomic(paths["pfx"], _make_pfx(key_pem, cert_der, pw, common_name(subject)), mode=0o600)
    pw, found = password.get(create=False)
    source = source or found
    if not ctx.dry and paths["pfx"].is_file() and pw is not None and not pfx_holds(paths["pfx"], pw, found or source, cert_der):
        # A derived file left from an earlier certificate: made again, like the .cer.
        write_atomic(paths["pfx"], _make_pfx(key_pem, cert_der, pw, common_name(subject)), mode=0o600)
    subj, thumb, not_after, serial = cert_facts(cert_der)
    if not created:
        ctx.step(f"reusing test certificate {common_name(subj)!r} ({thumb}, valid until {not_after:%Y-%m-%d}) from {folder}")
    return TestCert(
        subject=subj,
        thumbprint=thumb,
        not_after=not_after,
        serial=serial,
        cer=paths["cer"],
        crt=paths["crt"],
        key=paths["key"],
        pfx=paths["pfx"],
        created=created,
        password_source=source,
        password=pw,
    )


def pfx_holds(pfx: Path, password: str, source: str, cert_der: bytes) -> bool:
    """True when the PFX opens with its password and holds our certificate (False: another one, a stale derived file).

    Checked on every host before anything is signed; a damaged PFX or a wrong password is one line.

    (osslsigncode signs from the key and certificate files, so a damaged PFX or a wrong
    password would otherwise only show on Windows, when the PFX is imported.)
    """
    from asn1crypto import pkcs12 as asn1_pkcs12
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    raw = pfx.read_bytes()
    try:
        asn1_pkcs12.Pfx.load(raw).native  # noqa: B018 - parsing the whole structure is the check
    except (ValueError, TypeError, KeyError, OverflowError):
        raise ConfigError(f"{pfx}: not a readable PKCS#12 (PFX) file", ROTATE_HINT + " (it makes a new key, certificate and PFX)") from None
    try:
        _key, cert, _extra = pkcs12.load_key_and_certificates(raw, password.encode())
    except ValueError:
        raise EnvironmentProblem(
            f"{pfx}: the PFX password from {_where(source)} does not open it", "set the password it was made with, or " + ROTATE_HINT
        ) from None
    return cert is not None and cert.public_bytes(Encoding.DER) == cert_der


def _where(source: str) -> str:
    if source.startswith("env:"):
        return f"environment variable {source[4:]}"
    if source.startswith("file:"):
        return f"secret file {source[5:]} (0600; no usable keyring)"
    return "the OS keyring" if source == "keyring" else source


def _validate(ctx: Any, cert_der: bytes, key_pem: bytes | None, *, where: str) -> None:
    problems, warnings = describe_problems(cert_der, key_pem)
    for warning in warnings:
        ctx.step(f"warning: test certificate {where} {warning}; rotate soon with `invoke sign --new-cert`")
    if problems:
        raise CheckFailed(f"test certificate {where} {'; '.join(problems)}", ROTATE_HINT)


# --------------------------------------------------------------------------- store-based (Windows)


def powershell_argv(ps: Path, script: Path, params: dict[str, Any]) -> list[str]:
    """`powershell.exe -File script -Name value ...`: parameters bound by name, no string-built code."""
    from ..core.scripts import file_argv

    return file_argv(str(ps), str(script), params)


def ensure_store_cert(ctx: Any, cer_path: Path, rotate: bool = False) -> TestCert:
    """Find/create the certificate in the configured CurrentUser store; export its .cer to cer_path."""
    from ..core.runner import which

    sign = ctx.config.project.sign
    ps = which("powershell") or which("pwsh")
    if ps is None:
        raise EnvironmentProblem(
            "powershell.exe not found (needed to create the test certificate in the Windows store)",
            'run on a Windows host with Windows PowerShell, or set sign.cert_store = "" to use a PFX file',
        )
    params: dict[str, Any] = {"Subject": sign.cert_subject, "StoreName": sign.cert_store, "CerPath": str(cer_path), "ValidDays": VALID_DAYS}
    if rotate:
        params["Rotate"] = True
    done = ctx.runner.run(powershell_argv(ps, PS_SCRIPT, params), what="New-TestSigningCert.ps1", timeout=120)
    if done.dry:
        return TestCert(subject=sign.cert_subject, thumbprint="<store>", not_after=datetime.now(UTC), serial=0, cer=cer_path, store=sign.cert_store)
    try:
        info = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise StepFailed("New-TestSigningCert.ps1 printed no JSON result", "run it by hand to see the error") from None
    if not cer_path.is_file():
        raise StepFailed(f"New-TestSigningCert.ps1 did not export {cer_path}")
    cert_der = cer_path.read_bytes()
    _validate(ctx, cert_der, None, where=f"{info.get('thumbprint', '?')} in store {sign.cert_store}")
    subj, thumb, not_after, serial = cert_facts(cert_der)
    if info.get("thumbprint", "").upper() != thumb:
        raise CheckFailed(f"store certificate {info.get('thumbprint')} does not match the exported {cer_path.name} ({thumb})", ROTATE_HINT)
    created = bool(info.get("created"))
    ctx.step(("created" if created else "reusing") + f" test certificate {common_name(subj)!r} ({thumb}) in CurrentUser\\{sign.cert_store}")
    return TestCert(subject=subj, thumbprint=thumb, not_after=not_after, serial=serial, cer=cer_path, store=sign.cert_store, created=created)


def own_cert_file(ctx: Any) -> Path:
    """Where the pipeline's own test certificate lives on this machine: the file-based .crt (PEM), or the
    store's exported .cer (DER) when signing goes through a Windows certificate store."""
    from ..image import wdk

    paths = file_cert_paths(ctx)
    if not (wdk.host_is_windows() and ctx.config.project.sign.cert_store) and paths["crt"].is_file():
        return paths["crt"]
    return paths["cer"]


def own_cert(ctx: Any) -> tuple[Path, bytes | None]:
    """The pipeline's own test certificate on this machine (its file, its DER; None when absent or
    unreadable), read only: what ensure_test_cert keeps (the store's export, or the file-based .crt)."""
    path = own_cert_file(ctx)
    if path.suffix == ".crt":
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            return path, x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)
        except (OSError, ValueError):
            return path, None
    try:
        return path, path.read_bytes()
    except OSError:
        return path, None


def ensure_test_cert(ctx: Any, rotate: bool = False, *, store_based: bool | None = None, cer_path: Path | None = None) -> TestCert:
    """The test certificate, created on first use, rotated when asked, always checked.

    store_based=None picks: Windows + a configured sign.cert_store -> store; else files.
    A store-based certificate is exported to `cer_path` (default: beside the files).
    """
    sign = ctx.config.project.sign
    if store_based is None:
        from ..image import wdk

        store_based = wdk.host_is_windows() and bool(sign.cert_store)
    if store_based:
        return ensure_store_cert(ctx, cer_path or (cert_dir(ctx) / f"{file_base(sign.cert_subject)}.cer"), rotate)
    return ensure_file_cert(ctx, rotate)
