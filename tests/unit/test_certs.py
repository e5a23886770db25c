"""The file-based test certificate: creation, reuse, rotation, checks, and the PFX password's secrecy."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import CheckFailed
from driverpipe.signing import certs


class MemoryKeyring:
    """A real keyring backend (keyring.backend.KeyringBackend API) kept in memory for the test."""

    priority = 1

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, user: str) -> str | None:
        return self.store.get((service, user))

    def set_password(self, service: str, user: str, value: str) -> None:
        self.store[(service, user)] = value

    def delete_password(self, service: str, user: str) -> None:
        self.store.pop((service, user), None)


@pytest.fixture
def ctx_out(project: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RunContext, list[str]]:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")  # never the real user keyring
    monkeypatch.delenv("DRIVERPIPE_PFX_PASSWORD", raising=False)
    out: list[str] = []
    return RunContext(config=load(project), echo=out.append, progress=out.append), out


def _load(path: Path):  # type: ignore[no-untyped-def]
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())


def test_create_then_reuse(ctx_out: tuple[RunContext, list[str]], project: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    ctx, out = ctx_out
    cert = certs.ensure_test_cert(ctx)
    assert cert.created and cert.key and cert.crt and cert.pfx
    folder = project / "data" / "driverpipe" / "certs"
    assert cert.key.parent == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(cert.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert.pfx.stat().st_mode) == 0o600
    c = _load(cert.crt)
    assert c.subject.rfc4514_string() == "CN=WazabiEDR Test Signing"
    assert isinstance(c.signature_hash_algorithm, hashes.SHA256)
    assert c.public_key().key_size >= 2048  # type: ignore[union-attr]
    eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert certs.OID_CODE_SIGNING in [o.dotted_string for o in eku]
    assert c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.cer.read_bytes() == c.public_bytes(serialization.Encoding.DER)
    assert cert.thumbprint == c.fingerprint(hashes.SHA1()).hex().upper()
    # The PFX opens with the stored password (secret file, as no keyring is usable here).
    assert cert.password_source.startswith("file:")
    secret = Path(cert.password_source[5:])
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    key, pfx_cert, _ = pkcs12.load_key_and_certificates(cert.pfx.read_bytes(), secret.read_text().encode())
    assert pfx_cert is not None and pfx_cert.serial_number == c.serial_number and key is not None

    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = certs.ensure_test_cert(ctx)
    assert not again.created and again.thumbprint == cert.thumbprint
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert any("reusing test certificate" in line for line in out)


def test_rotation_makes_a_new_certificate(ctx_out: tuple[RunContext, list[str]]) -> None:
    ctx, _ = ctx_out
    first = certs.ensure_test_cert(ctx)
    second = certs.ensure_test_cert(ctx, rotate=True)
    assert second.created and second.thumbprint != first.thumbprint
    assert certs.ensure_test_cert(ctx).thumbprint == second.thumbprint


def _write_cert(cert: certs.TestCert, *, days: int, eku: bool = True) -> None:
    """Replace the certificate (same key) by one valid for `days` from now (negative: expired)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    assert cert.key and cert.crt
    key = serialization.load_pem_private_key(cert.key.read_bytes(), None)
    name = x509.Name.from_rfc4514_string(cert.subject)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=400))
        .not_valid_after(now + timedelta(days=days))
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    cert.crt.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))  # type: ignore[arg-type]


def test_expired_certificate_is_explained(ctx_out: tuple[RunContext, list[str]]) -> None:
    ctx, _ = ctx_out
    cert = certs.ensure_test_cert(ctx)
    _write_cert(cert, days=-1)
    with pytest.raises(CheckFailed, match="expired on") as info:
        certs.ensure_test_cert(ctx)
    assert info.value.hint is not None and "--new-cert" in info.value.hint
    assert certs.ensure_test_cert(ctx, rotate=True).created  # and rotation fixes it


def test_expiring_soon_warns(ctx_out: tuple[RunContext, list[str]]) -> None:
    ctx, out = ctx_out
    _write_cert(certs.ensure_test_cert(ctx), days=5)
    certs.ensure_test_cert(ctx)
    assert any("warning" in line and "expires on" in line for line in out)


def test_missing_eku_is_explained(ctx_out: tuple[RunContext, list[str]]) -> None:
    ctx, _ = ctx_out
    _write_cert(certs.ensure_test_cert(ctx), days=100, eku=False)
    with pytest.raises(CheckFailed, match="codeSigning"):
        certs.ensure_test_cert(ctx)


def test_mismatched_key_is_explained(ctx_out: tuple[RunContext, list[str]]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    ctx, _ = ctx_out
    cert = certs.ensure_test_cert(ctx)
    assert cert.key
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert.key.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(CheckFailed, match="does not match its private key") as info:
        certs.ensure_test_cert(ctx)
    assert "--new-cert" in (info.value.hint or "")


def test_loose_key_mode_is_tightened(ctx_out: tuple[RunContext, list[str]]) -> None:
    ctx, _ = ctx_out
    cert = certs.ensure_test_cert(ctx)
    assert cert.key
    cert.key.chmod(0o644)
    certs.ensure_test_cert(ctx)
    assert stat.S_IMODE(cert.key.stat().st_mode) == 0o600


def test_password_from_env_is_used_and_never_printed(
    ctx_out: tuple[RunContext, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    ctx, out = ctx_out
    monkeypatch.setenv("DRIVERPIPE_PFX_PASSWORD", "hunter2-from-env")
    cert = certs.ensure_test_cert(ctx)
    assert cert.password_source == "env:DRIVERPIPE_PFX_PASSWORD" and cert.pfx
    pkcs12.load_key_and_certificates(cert.pfx.read_bytes(), b"hunter2-from-env")
    assert not cert.pfx.with_name(cert.pfx.name + ".password").exists()
    text = "\n".join(out) + capsys.readouterr().out + repr(cert)
    assert "hunter2-from-env" not in text
    assert "environment variable DRIVERPIPE_PFX_PASSWORD" in text


def test_generated_password_goes_to_the_keyring_and_is_never_printed(ctx_out: tuple[RunContext, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring

    ctx, out = ctx_out
    ring = MemoryKeyring()
    monkeypatch.setattr(keyring, "get_keyring", lambda: ring)
    monkeypatch.setattr(keyring, "get_password", ring.get_password)
    monkeypatch.setattr(keyring, "set_password", ring.set_password)
    monkeypatch.setattr(keyring, "delete_password", ring.delete_password)
    cert = certs.ensure_test_cert(ctx)
    assert cert.password_source == "keyring" and cert.pfx
    (value,) = ring.store.values()
    assert cert.password == value
    assert not cert.pfx.with_name(cert.pfx.name + ".password").exists()
    assert value not in "\n".join(out) and value not in repr(cert)
    assert any("OS keyring" in line for line in out)
    assert certs.ensure_test_cert(ctx).password == value  # reused, not regenerated


def test_dry_run_writes_nothing(ctx_out: tuple[RunContext, list[str]], project: Path) -> None:
    ctx, out = ctx_out
    ctx.dry = True
    cert = certs.ensure_test_cert(ctx)
    assert cert.created and not (project / "data").exists()
    assert any(line.startswith("[dry] would be creating the test certificate") for line in out)


def test_common_name_and_file_base() -> None:
    assert certs.common_name("CN=WazabiEDR Test Signing, O=Wazabi") == "WazabiEDR Test Signing"
    assert certs.file_base("O=x, CN=Wazabi EDR/Test") == "Wazabi_EDR_Test"
