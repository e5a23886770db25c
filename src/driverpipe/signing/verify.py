"""Verifying a signed driver package, on every host, without trusting the signing tool.

lief checks the .sys signature digest and that its signer is our certificate; the
catalog is read back (asn1crypto) and must list the exact Authenticode hash of the
signed .sys and the hash of the .inf; the catalog's CMS signature is checked against
the test certificate with `cryptography`. osslsigncode (digest, page hashes, chain to
our certificate via -CAfile, catalog membership) and, on Windows, `signtool verify /v
/pa` (and `/c` for the catalog) add their verdicts. `sign` runs this after signing;
the pre-deploy check (`check_signed_package`) runs it again before any push.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from ..core.errors import CheckFailed, EnvironmentProblem
from ..core.runner import last_meaningful_line, which
from ..image import wdk
from ..image.catalog import read_catalog
from .certs import TestCert


def find_signtool() -> Path | None:
    try:
        from ..image.wdk import find_tool

        return find_tool("signtool")
    except (ImportError, EnvironmentProblem):
        return which("signtool")


def _problems_pe(path: Path, cert_der: bytes) -> list[str]:
    import lief

    lief.logging.disable()
    binary = lief.PE.parse(str(path))
    if binary is None:
        return [f"{path.name}: not a PE image (cannot be parsed)"]
    if not binary.has_signatures:
        return [f"{path.name}: has no embedded signature (run `invoke sign`)"]
    flags = binary.verify_signature()
    bad = lief.PE.Signature.VERIFICATION_FLAGS
    if int(flags) & int(bad.BAD_DIGEST):  # often reported together with BAD_SIGNATURE
        return [f"{path.name}: Authenticode digest does not match the signed digest (file modified after signing)"]
    if flags != bad.OK:
        return [f"{path.name}: embedded signature does not verify ({str(flags).split('.')[-1]})"]
    from cryptography import x509

    ours = x509.load_der_x509_certificate(cert_der)
    sig = binary.signatures[0]
    signer = sig.signers[0]
    serial = int.from_bytes(bytes(signer.serial_number), "big")
    if serial != ours.serial_number:
        who = str(signer.cert.subject) if signer.cert is not None else "an unknown certificate"
        return [
            f"{path.name}: signed by {who} (serial {serial:X}), not by the test certificate {ours.subject.rfc4514_string()} (serial {ours.serial_number:X})"
        ]
    if signer.cert is not None and bytes(signer.cert.raw) != cert_der:
        return [f"{path.name}: signer certificate has our serial but different content (not our test certificate)"]
    return []


def cms_signature_problem(der: bytes, cert_der: bytes) -> str | None:
    """Check a PKCS#7 signedData (catalog) signature against cert_der; None when it verifies."""
    from asn1crypto import cms, parser
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        signed = cms.ContentInfo.load(der)["content"]
        infos = signed["signer_infos"]
        if len(infos) == 0:
            return "is not signed"
        si = infos[0]
        ours = x509.load_der_x509_certificate(cert_der)
        sid = si["sid"]
        if sid.name != "issuer_and_serial_number" or sid.chosen["serial_number"].native != ours.serial_number:
            return "is signed by another certificate than the test certificate"
        alg = si["digest_algorithm"]["algorithm"].native
        hash_alg = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512(), "sha1": hashes.SHA1()}[alg]
        raw = signed["encap_content_info"]["content"].dump()
        inner = raw if raw[:1] == b"\x30" else bytes(parser.parse(raw)[4])
        content = bytes(parser.parse(inner)[4])  # PKCS#7: digest over the content octets, without tag and length
        digest = hashlib.new(alg, content).digest()
        attrs = si["signed_attrs"]
        wanted = None
        for attr in attrs:
            if attr["type"].native == "message_digest":
                wanted = attr["values"][0].native
        if wanted != digest:
            return "content does not match its signed digest (catalog modified after signing)"
        public = ours.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            return "test certificate key is not RSA"
        signed_attrs = b"\x31" + attrs.dump()[1:]  # signature covers the attributes as a SET
        public.verify(si["signature"].native, signed_attrs, padding.PKCS1v15(), hash_alg)
    except InvalidSignature:
        return "signature does not verify against the test certificate"
    except (ValueError, KeyError, TypeError) as exc:
        return f"signature cannot be parsed ({str(exc).splitlines()[0]})"
    return None


def _problems_catalog(cat: Path, sys_: Path, inf: Path, cert_der: bytes, sys_changed: bool = False) -> list[str]:
    problems: list[str] = []
    try:
        catalog = read_catalog(cat)
    except CheckFailed as exc:
        return [exc.message]
    alg = catalog.hash_algorithm
    for member_path, what in ((sys_, "the signed file"), (inf, "the file")):
        if not member_path.is_file():
            continue
        listed = catalog.member(member_path.name)
        from ..image.catalog import member_hash

        _, actual_raw = member_hash(member_path, alg)
        actual = actual_raw.hex().upper()
        if listed is None:
            # A catalog entry may lack File=; then match by hash.
            if not any(m.hash_hex == actual for m in catalog.members.values()):
                problems.append(f"{cat.name} does not list {member_path.name} (catalog built for other files? run `invoke sign`)")
            continue
        if listed.hash_hex != actual:
            if member_path == sys_ and not sys_changed:
                hint = "catalog built before signing? run `invoke sign`"
            else:
                hint = f"{member_path.name} changed after the catalog was built; run `invoke sign`"
            problems.append(f"{cat.name} lists {listed.algorithm} {listed.hash_hex} for {member_path.name} but {what} hashes to {actual} ({hint})")
    if not catalog.signed:
        problems.append(f"{cat.name}: catalog is not signed (run `invoke sign`)")
    else:
        problem = cms_signature_problem(cat.read_bytes(), cert_der)
        if problem:
            problems.append(f"{cat.name}: {problem}")
    return problems


def _pem_file(cert_der: bytes, folder: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    path = folder / "test-cert.pem"
    path.write_bytes(x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM))
    return path


def _osslsigncode_problems(ctx: Any, tool: Path, ca: Path, sys_: Path, cat: Path, skip: set[str]) -> list[str]:
    """osslsigncode's own verdicts (digest, page hashes, chain to our cert, catalog membership)."""
    problems: list[str] = []
    checks: list[tuple[str, list[str]]] = []
    if sys_.name not in skip:
        checks.append((sys_.name, ["verify", "-CAfile", str(ca), "-in", str(sys_)]))
    if cat.name not in skip:
        checks.append((cat.name, ["verify", "-CAfile", str(ca), "-in", str(cat)]))
        # Only the .sys: osslsigncode cannot read a flat file such as the .inf ("unsupported input file type");
        # the .inf's catalog entry is checked by _problems_catalog.
        if sys_.name not in skip:
            checks.append((f"{cat.name} membership of {sys_.name}", ["verify", "-CAfile", str(ca), "-catalog", str(cat), "-in", str(sys_)]))
    for label, args in checks:
        done = ctx.runner.run([str(tool), *args], check=False, what="osslsigncode verify", timeout=120, mutates=False)
        if done.returncode != 0:
            text = done.stdout + "\n" + done.stderr
            detail = (
                next((line.strip() for line in text.splitlines() if "MISMATCH" in line), "")
                or last_meaningful_line(done.stderr)
                or last_meaningful_line(done.stdout)
            )
            problems.append(f"{label}: osslsigncode verify failed: {' '.join(detail.split())}")
    return problems


def _signtool_problems(ctx: Any, tool: Path, sys_: Path, cat: Path) -> list[str]:
    from ..parse.signtool_output import parse_verify

    problems: list[str] = []
    for label, args in ((sys_.name, ["verify", "/v", "/pa", str(sys_)]), (f"{cat.name} for {sys_.name}", ["verify", "/v", "/pa", "/c", str(cat), str(sys_)])):
        done = ctx.runner.run([str(tool), *args], check=False, what="signtool verify", timeout=120, mutates=False)
        result = parse_verify(done.stdout + "\n" + done.stderr)
        if done.returncode == 0 and result.ok:
            continue
        errors = " ".join(result.error_lines)
        if "root certificate which is not trusted" in errors:
            # Expected with a self-signed test certificate on the build host; the guest trusts it after provisioning.
            ctx.step(f"signtool verify {label}: the test certificate is not trusted on this host (expected; our own checks passed)")
            continue
        problems.append(f"{label}: signtool verify failed: {errors or last_meaningful_line(done.stdout) or f'exit code {done.returncode}'}")
    return problems


def verify_package(ctx: Any, pkg_dir: Path, name: str, cert: TestCert) -> list[str]:
    """Every problem with the signed package (empty: OK). Each message names the file and what differs."""
    return verify_signatures(ctx, pkg_dir, name, cert.cer)


def verify_signatures(ctx: Any, pkg_dir: Path, name: str, cer: Path) -> list[str]:
    """verify_package against the certificate file `cer`: lief and the catalog reader always, osslsigncode when installed."""
    sys_, inf, cat = pkg_dir / f"{name}.sys", pkg_dir / f"{name}.inf", pkg_dir / f"{name}.cat"
    problems = [f"{p.name}: missing from the package {pkg_dir}" for p in (sys_, inf, cat) if not p.is_file()]
    if not cer.is_file():
        return [*problems, f"test certificate {cer} is missing (run `invoke sign`)"]
    cert_der = cer.read_bytes()
    try:
        sys_problems = _problems_pe(sys_, cert_der) if sys_.is_file() else []
        problems += sys_problems
        if cat.is_file():
            problems += _problems_catalog(cat, sys_, inf, cert_der, sys_changed=bool(sys_problems))
    except (ValueError, IndexError) as exc:  # lief or cryptography on a malformed signature or certificate
        return [*problems, f"a signature or certificate cannot be parsed ({(str(exc).splitlines() or [type(exc).__name__])[0]})"]
    broken = {p.split(":", 1)[0].split(" ", 1)[0] for p in problems}
    tool = which("osslsigncode")
    if tool is not None and sys_.is_file() and cat.is_file():
        with tempfile.TemporaryDirectory(prefix="driverpipe-verify-") as tmp:
            problems += _osslsigncode_problems(ctx, tool, _pem_file(cert_der, Path(tmp)), sys_, cat, broken)
    if wdk.host_is_windows() and sys_.is_file() and cat.is_file():
        signtool = find_signtool()
        if signtool is not None:
            problems += _signtool_problems(ctx, signtool, sys_, cat)
    return problems


# --------------------------------------------------------------------------- manifest
