"""Real signing with osslsigncode of a real (generated) PE32+ native image, checked by osslsigncode and lief."""

from __future__ import annotations

import subprocess
import types
from pathlib import Path

import pytest

from conftest import need_tool
from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import CheckFailed
from driverpipe.image.catalog import read_catalog, write_catalog
from driverpipe.signing import sign
from pe_image import SAMPLE_INF, write_pe

pytestmark = pytest.mark.osslsigncode
NAME = "WazabiEDR_Driver"


@pytest.fixture
def env(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    need_tool("osslsigncode")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.delenv("DRIVERPIPE_PFX_PASSWORD", raising=False)
    pkg = project / "pkg"
    pkg.mkdir()
    write_pe(pkg / f"{NAME}.sys")  # 1539 bytes: not a multiple of 8, so signing pads it
    (pkg / f"{NAME}.inf").write_text(SAMPLE_INF, encoding="utf-8")
    return pkg


def _ctx(project: Path, dry: bool = False) -> tuple[RunContext, list[str]]:
    out: list[str] = []
    return RunContext(config=load(project), dry=dry, echo=out.append, progress=out.append), out


def _sign(project: Path, pkg: Path) -> sign.SignResult:
    ctx, _ = _ctx(project)
    backend, cert = sign.prepare(ctx, new_cert=False)
    assert backend.name == "osslsigncode"
    return sign.sign_package(ctx, pkg, NAME, backend=backend, cert=cert)


def _ossl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["osslsigncode", *map(str, args)], capture_output=True, text=True, check=False)


def test_sign_and_verify_independently(env: Path, project: Path) -> None:
    import lief

    result = _sign(project, env)
    sys_, cat = env / f"{NAME}.sys", env / f"{NAME}.cat"
    crt = result.cert.crt
    assert crt is not None
    done = _ossl("verify", "-CAfile", crt, "-in", sys_)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Signature verification: ok" in done.stdout and "Page hash algorithm  : SHA256" in done.stdout
    assert _ossl("verify", "-in", sys_).returncode != 0  # self-signed: only trusted with -CAfile
    binary = lief.PE.parse(str(sys_))
    assert binary.verify_signature() == lief.PE.Signature.VERIFICATION_FLAGS.OK
    assert bytes(binary.authentihash(lief.PE.ALGORITHMS.SHA_256)).hex().upper() == result.authentihash
    assert binary.signatures[0].signers[0].cert.subject.endswith("CN=WazabiEDR Test Signing")
    # osslsigncode accepts our signed catalog and finds the signed .sys in it.
    done = _ossl("verify", "-CAfile", crt, "-catalog", cat, "-in", sys_)
    assert done.returncode == 0, done.stdout + done.stderr
    catalog = read_catalog(cat)
    assert catalog.signed and catalog.signer_serial == result.cert.serial and "WazabiEDR Test Signing" in (catalog.signer_subject or "")
    member = catalog.member(f"{NAME}.sys")
    assert member is not None and member.hash_hex == bytes(binary.authentihash(lief.PE.ALGORITHMS.SHA_1)).hex().upper()
    signed = sign.check_signed_dir(env, NAME)
    assert signed.cert_path.read_bytes() == result.cert.cer.read_bytes()
    assert sign.verify_package(_ctx(project)[0], env, NAME, result.cert) == []


def test_flipped_byte_is_caught_and_named(env: Path, project: Path) -> None:
    result = _sign(project, env)
    sys_ = env / f"{NAME}.sys"
    data = bytearray(sys_.read_bytes())
    data[0x201] ^= 0xFF  # in .text
    sys_.write_bytes(bytes(data))
    problems = sign.verify_package(_ctx(project)[0], env, NAME, result.cert)
    assert f"{NAME}.sys: Authenticode digest does not match the signed digest (file modified after signing)" in problems
    assert any(p.startswith(f"{NAME}.cat lists sha1 ") and f"for {NAME}.sys" in p for p in problems)
    with pytest.raises(CheckFailed, match=f"changed since signing: {NAME}.sys"):
        sign.check_signed_dir(env, NAME)
    assert _ossl("verify", "-CAfile", result.cert.crt or "", "-in", sys_).returncode != 0


def test_changed_inf_and_tampered_catalog_are_named(env: Path, project: Path) -> None:
    result = _sign(project, env)
    inf, cat = env / f"{NAME}.inf", env / f"{NAME}.cat"
    inf.write_text(SAMPLE_INF + "; edited\n", encoding="utf-8")
    problems = sign.verify_package(_ctx(project)[0], env, NAME, result.cert)
    assert len(problems) == 1 and problems[0].startswith(f"{NAME}.cat lists sha1 ") and f"for {NAME}.inf but the file hashes to" in problems[0]
    inf.write_text(SAMPLE_INF, encoding="utf-8")
    raw = bytearray(cat.read_bytes())
    at = raw.find("2:10.0".encode("utf-16-le"))
    raw[at] = ord("3")
    cat.write_bytes(bytes(raw))
    problems = sign.verify_package(_ctx(project)[0], env, NAME, result.cert)
    assert f"{NAME}.cat: content does not match its signed digest (catalog modified after signing)" in problems


def test_catalog_built_before_signing_is_rejected_as_stale(env: Path, project: Path) -> None:
    ctx, _ = _ctx(project)
    backend, cert = sign.prepare(ctx, new_cert=False)
    sys_, cat = env / f"{NAME}.sys", env / f"{NAME}.cat"
    write_catalog(cat, [sys_, env / f"{NAME}.inf"])  # the wrong order (cargo-wdk's): catalog first
    sign._sign_file(ctx, backend, cert, sys_, page_hashes=True)
    sign._sign_file(ctx, backend, cert, cat, page_hashes=False)
    (env / "WazabiEDR_Test_Signing.cer").write_bytes(cert.cer.read_bytes())
    problems = sign.verify_package(ctx, env, NAME, cert)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{NAME}.cat lists sha1 ")
    assert problems[0].endswith("(catalog built before signing? run `invoke sign`)")
    # ... and osslsigncode agrees that the signed .sys is not in that catalog.
    assert _ossl("verify", "-CAfile", cert.crt or "", "-catalog", cat, "-in", sys_).returncode != 0


def test_dry_prints_commands_without_password_and_writes_nothing(env: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIVERPIPE_PFX_PASSWORD", "dry-run-secret-pw")
    before = {p.name: p.read_bytes() for p in env.iterdir()}
    ctx, out = _ctx(project, dry=True)
    backend, cert = sign.prepare(ctx, new_cert=False)
    result = sign.sign_package(ctx, env, NAME, backend=backend, cert=cert)
    text = "\n".join(out)
    assert result.dry
    assert "[dry] $ " in text and " sign -certs " in text and " -h sha256 -ph " in text and f"{NAME}.cat" in text
    assert "dry-run-secret-pw" not in text
    assert {p.name: p.read_bytes() for p in env.iterdir()} == before
    assert not (project / "data").exists()


def _package_step_as_is(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The package step is tested on its own: stand in for its layout functions and a no-op run."""
    fake = types.ModuleType("driverpipe.image.package")
    fake.package_dir = lambda ctx: env  # type: ignore[attr-defined]
    fake.package_name = lambda ctx: NAME  # type: ignore[attr-defined]
    fake.run = lambda ctx: None  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "driverpipe.image.package", fake)


def test_run_entry_point_with_rotation(env: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _package_step_as_is(env, monkeypatch)
    first = sign.run(_ctx(project)[0], new_cert=False)
    assert first is not None
    again = sign.run(_ctx(project)[0], new_cert=False)
    assert again is None, "an unchanged signed package is not signed again"
    assert sign.check_signed_package(_ctx(project)[0]).manifest["cert"]["thumbprint_sha1"] == first.cert.thumbprint
    rotated = sign.run(_ctx(project)[0], new_cert=True)
    assert rotated is not None
    assert rotated.cert.thumbprint != first.cert.thumbprint
    pkg = sign.check_signed_package(_ctx(project)[0])
    assert pkg.manifest["cert"]["thumbprint_sha1"] == rotated.cert.thumbprint
    assert sign.verify_package(_ctx(project)[0], env, NAME, rotated.cert) == []


def test_an_unchanged_package_is_not_signed_again_but_a_changed_one_is(env: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _package_step_as_is(env, monkeypatch)
    assert sign.run(_ctx(project)[0], new_cert=False) is not None
    signed = (env / f"{NAME}.sys").read_bytes()
    ctx, out = _ctx(project)
    assert sign.run(ctx, new_cert=False) is None
    assert any("unchanged" in line and "nothing to sign" in line for line in out)
    assert (env / f"{NAME}.sys").read_bytes() == signed, "a no-op sign leaves the signed image alone"
    (env / f"{NAME}.inf").write_bytes((env / f"{NAME}.inf").read_bytes() + b"\r\n; changed\r\n")
    assert sign.run(_ctx(project)[0], new_cert=False) is not None, "a changed package file is signed again"


def _rewrite_record(pkg: Path, **cert: str) -> None:
    """What a hostile or careless hand does: the record edited to match the files as they are now."""
    import hashlib
    import json

    from driverpipe.core.files import sha256_file

    path = pkg / sign.MANIFEST
    data = json.loads(path.read_text(encoding="utf-8"))
    data["cert"].update(cert)
    cer = pkg / data["cert"]["file"]
    data["cert"]["thumbprint_sha1"] = hashlib.sha1(cer.read_bytes()).hexdigest().upper()
    data["files"] = {name: sha256_file(pkg / name) for name in data["files"]}
    path.write_text(json.dumps(data), encoding="utf-8")


def test_a_package_resigned_with_another_certificate_is_refused(env: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check verifies against this pipeline's own test certificate, never the .cer the package brings."""
    ours = _sign(project, env)
    assert sign.check_signed_dir(env, NAME, _ctx(project)[0]).cert_path.read_bytes() == ours.cert.cer.read_bytes()
    monkeypatch.setenv("XDG_DATA_HOME", str(project / "someone-else"))  # another self-made certificate, its own .cer and record
    theirs = _sign(project, env)
    assert theirs.cert.thumbprint != ours.cert.thumbprint
    assert sign.check_signed_dir(env, NAME, _ctx(project)[0]).manifest["cert"]["thumbprint_sha1"] == theirs.cert.thumbprint  # their own view
    monkeypatch.setenv("XDG_DATA_HOME", str(project / "data"))
    with pytest.raises(sign.PackageTampered) as refused:
        sign.check_signed_dir(env, NAME, _ctx(project)[0])
    assert "is not this pipeline's test certificate" in refused.value.message and "\n" not in refused.value.message


def test_a_garbage_certificate_with_a_matching_record_is_one_line(env: Path, project: Path) -> None:
    _sign(project, env)
    cer = next(env.glob("*.cer"))
    cer.write_bytes(b"not a certificate at all")
    _rewrite_record(env)
    with pytest.raises(sign.PackageTampered) as refused:
        sign.check_signed_dir(env, NAME, _ctx(project)[0])
    assert "\n" not in refused.value.message and "Traceback" not in refused.value.message
    # The verifier itself: a certificate lief or cryptography cannot parse is a problem line, never a ValueError.
    problems = sign.verify_signatures(_ctx(project)[0], env, NAME, cer)
    assert problems and all("\n" not in p for p in problems) and "cannot be parsed" in problems[-1]


def test_an_unchanged_package_is_verified_once_and_a_changed_byte_always_again(env: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-deploy check remembers what it verified, keyed by the files' bytes and the own certificate,
    in the user's state folder: an unchanged redeploy runs no lief or osslsigncode, a tampered one is caught."""
    from driverpipe.core.config import user_state_dir

    _sign(project, env)
    calls: list[str] = []
    real = sign.verify_signatures
    monkeypatch.setattr(sign, "verify_signatures", lambda *a, **k: calls.append("verify") or real(*a, **k))
    sign.check_signed_dir(env, NAME, _ctx(project)[0])
    assert calls == [], "sign verified these bytes against the own certificate already"
    cache = user_state_dir() / sign.VERIFIED_CACHE
    assert cache.is_file() and not cache.is_relative_to(env), "the package never vouches for itself"
    data = bytearray((env / f"{NAME}.sys").read_bytes())
    data[0x200] ^= 0xFF
    (env / f"{NAME}.sys").write_bytes(bytes(data))
    _rewrite_record(env)
    with pytest.raises(sign.PackageTampered):
        sign.check_signed_dir(env, NAME, _ctx(project)[0])
    assert calls == ["verify"], "a changed byte is a new key: verified in full"
