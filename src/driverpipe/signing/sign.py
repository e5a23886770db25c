"""`invoke sign`: test-sign the driver package, in the only order that works, and verify it.

Order (note 04): (1) embedded SHA-256 signature with page hashes on the .sys;
(2) (re)build the catalog, because signing pads the .sys and changes its
Authenticode hash, so a catalog built earlier lists a stale hash; (3) sign the
.cat; (4) verify everything; (5) write <pkg>/driverpipe-sign.json, which
`check_signed_package` (used by deploy, --dry included, on every target) compares
the package against. The record is untrusted input: it must fit its shape (plain
file names, SHA-256 digests, a thumbprint that is the packaged .cer's), and the
check does not stop at the record's hashes: the .sys's embedded signature and the
catalog are verified again, locally, against the packaged certificate before
anything is pushed.

Backends (sign.backend = auto|signtool|osslsigncode): auto picks signtool on a
Windows host when the WDK or PATH has it, else osslsigncode. osslsigncode signs
with the key and certificate files (-certs/-key), so no password is ever put on
a command line; signtool uses the CurrentUser store (`/s <store> /n <CN>`), or
the PFX (`/f x.pfx /p <password>`) when sign.cert_store is empty. A timestamp
(RFC 3161) is added only when sign.timestamp_url is set; test signing never needs one.

Verification runs on every host and does not trust the signing tool: lief checks
the .sys signature digest and that its signer is our certificate; the catalog is
read back (asn1crypto) and must list the exact Authenticode hash of the signed
.sys and the hash of the .inf; the catalog's CMS signature is checked against
the test certificate with `cryptography`. osslsigncode (digest, page hashes,
chain to our certificate via -CAfile, catalog membership) and, on Windows,
`signtool verify /v /pa` (and `/c` for the catalog) add their verdicts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core.errors import CheckFailed, ConfigError, EnvironmentProblem, StepFailed
from ..core.files import sha256_file, write_atomic
from ..core.owned import is_plain_file_name, is_sha256, is_text, mapping_of, read_record, table
from ..core.runner import last_meaningful_line, which
from ..image import wdk
from ..image.catalog import pe_authenticode_hash, read_catalog, write_catalog
from .certs import TestCert, cert_dir, ensure_test_cert, file_base, own_cert

MANIFEST = "driverpipe-sign.json"
MANIFEST_SHAPE = table(
    {
        "files": mapping_of(is_plain_file_name, is_sha256),
        "cert": table({"file": lambda v: is_plain_file_name(v) and str(v).lower().endswith(".cer"), "thumbprint_sha1": is_text}),
    }
)


class PackageTampered(CheckFailed):
    """The package differs from what `invoke sign` recorded, or its signatures do not verify. Exit code 1."""


OSSL_INSTALL = "apt-get install osslsigncode (Debian/Ubuntu), brew install osslsigncode (macOS)"
SIGNTOOL_INSTALL = "install the Windows SDK/WDK (signtool.exe), or run from an eWDK prompt"
INF2CAT_OS = {"amd64": "10_X64", "arm64": "10_RS3_ARM64"}  # arm64 value: (unsure) from inf2cat /? lists
CATALOG_OS = {"amd64": "_v100_X64", "arm64": "_v100_ARM64"}  # arm64 value: (unsure)


@dataclass
class Backend:
    name: str  # "signtool" | "osslsigncode"
    tool: Path


@dataclass
class SignResult:
    pkg_dir: Path
    name: str
    backend: str
    cert: TestCert
    files: list[Path]
    authentihash: str  # SHA-256 Authenticode hash of the signed .sys (empty under --dry)
    manifest: Path
    seconds: float
    dry: bool = False


@dataclass
class SignedPackage:
    dir: Path
    name: str
    files: list[Path]  # to push: .sys, .inf, .cat, .cer
    cert_path: Path
    manifest: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- backend


def find_signtool() -> Path | None:
    try:
        from ..image.wdk import find_tool

        return find_tool("signtool")
    except (ImportError, EnvironmentProblem):
        return which("signtool")


def _find_inf2cat() -> Path | None:
    try:
        from ..image.wdk import find_tool

        return find_tool("inf2cat")
    except (ImportError, EnvironmentProblem):
        return which("inf2cat")


def choose_backend(ctx: Any) -> Backend:
    wanted = ctx.config.project.sign.backend
    windows = wdk.host_is_windows()
    if wanted == "signtool":
        if not windows:
            raise EnvironmentProblem("sign.backend = signtool, but signtool runs only on Windows", "use --backend osslsigncode (or auto) on this host")
        tool = find_signtool()
        if tool is None:
            raise EnvironmentProblem("signtool.exe not found (WDK/SDK or PATH)", SIGNTOOL_INSTALL)
        return Backend("signtool", tool)
    if wanted == "auto" and windows:
        tool = find_signtool()
        if tool is not None:
            return Backend("signtool", tool)
    found = which("osslsigncode")
    if found is None:
        if wanted == "osslsigncode":
            raise EnvironmentProblem("sign.backend = osslsigncode, but osslsigncode is not on PATH", OSSL_INSTALL)
        raise EnvironmentProblem(
            "no signing tool found: " + ("neither signtool.exe nor osslsigncode" if windows else "osslsigncode is not on PATH"),
            SIGNTOOL_INSTALL if windows else OSSL_INSTALL,
        )
    return Backend("osslsigncode", found)


# --------------------------------------------------------------------------- argv builders


def signtool_sign_argv(ctx: Any, tool: Path, cert: TestCert, target: Path, *, page_hashes: bool, pfx: Path | None = None) -> list[str]:
    """signtool's command line. File-based certificates are passed as `pfx`: a short-lived
    PKCS#12 without a password (signing_pfx), so no password is ever on a command line."""
    sign = ctx.config.project.sign
    argv = [str(tool), "sign", "/v", "/fd", "sha256"]
    if page_hashes:
        argv.append("/ph")
    if cert.store:
        argv += ["/s", cert.store, "/n", cert.common_name]
    else:
        if pfx is None:
            raise EnvironmentProblem("signtool needs the test key and certificate files", f"export {sign.pfx_password_env}=... or run `invoke sign --new-cert`")
        argv += ["/f", str(pfx)]
    if sign.timestamp_url:
        argv += ["/tr", sign.timestamp_url, "/td", "sha256"]
    if sign.description:
        argv += ["/d", sign.description]
    return [*argv, str(target)]


def osslsigncode_sign_argv(ctx: Any, tool: Path, cert: TestCert, src: Path, out: Path, *, page_hashes: bool) -> list[str]:
    sign = ctx.config.project.sign
    if cert.crt is None or cert.key is None:
        raise EnvironmentProblem("osslsigncode needs the test key and certificate files", 'set sign.backend = signtool, or sign.cert_store = ""')
    argv = [str(tool), "sign", "-certs", str(cert.crt), "-key", str(cert.key), "-h", "sha256"]
    if page_hashes:
        argv.append("-ph")
    if sign.description:
        argv += ["-n", sign.description]
    if sign.timestamp_url:
        argv += ["-ts", sign.timestamp_url]
    return [*argv, "-in", str(src), "-out", str(out)]


@contextlib.contextmanager
def signing_pfx(ctx: Any, cert: TestCert) -> Iterator[Path | None]:
    """For signtool with a file-based certificate: the key and certificate as a PKCS#12 without a
    password, 0600 in the certificate's own private folder, deleted right after. signtool's `/p`
    would put the PFX password on a command line, where other local users can read it."""
    if cert.store or cert.key is None or cert.crt is None:
        yield None
        return
    path = cert.key.with_name(f".{cert.key.stem}.{os.getpid()}.signing.pfx")
    if ctx.dry:
        yield path
        return
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import NoEncryption, load_pem_private_key, pkcs12

    key = load_pem_private_key(cert.key.read_bytes(), password=None)
    crt = x509.load_pem_x509_certificate(cert.crt.read_bytes())
    data = pkcs12.serialize_key_and_certificates(b"driverpipe-test-signing", key, crt, None, NoEncryption())  # type: ignore[arg-type]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _sign_file(ctx: Any, backend: Backend, cert: TestCert, target: Path, *, page_hashes: bool) -> None:
    what = f"sign {target.name}"
    if backend.name == "signtool":
        # signtool signs in place (it replaces an existing signature).
        with signing_pfx(ctx, cert) as pfx:
            ctx.runner.run(signtool_sign_argv(ctx, backend.tool, cert, target, page_hashes=page_hashes, pfx=pfx), what=f"signtool {what}", timeout=300)
        return
    # osslsigncode writes a new file: sign into a temp file, then replace, so a failure never leaves half a .sys.
    tmp = target.with_name(f".{target.name}.signing")
    try:
        ctx.runner.run(osslsigncode_sign_argv(ctx, backend.tool, cert, target, tmp, page_hashes=page_hashes), what=f"osslsigncode {what}", timeout=300)
        if not ctx.dry:
            tmp.replace(target)
    finally:
        if not ctx.dry:
            tmp.unlink(missing_ok=True)


def _build_catalog(ctx: Any, backend: Backend, pkg_dir: Path, name: str) -> None:
    cat = pkg_dir / f"{name}.cat"
    members = [pkg_dir / f"{name}.sys", pkg_dir / f"{name}.inf"]
    arch = ctx.config.project.build.arch
    inf2cat = _find_inf2cat() if backend.name == "signtool" else None
    if inf2cat is not None:
        # /uselocaltime avoids inf2cat's "DriverVer in the future" error (note 01).
        ctx.runner.run([str(inf2cat), f"/driver:{pkg_dir}", f"/os:{INF2CAT_OS[arch]}", "/uselocaltime"], what="inf2cat", timeout=300)
        if not ctx.dry and not cat.is_file():
            raise StepFailed(f"inf2cat did not write {cat.name}", f"set CatalogFile = {cat.name} in the INF's [Version] section")
        return
    if ctx.dry:
        ctx.say(f"[dry] would rebuild the catalog {cat} listing {', '.join(m.name for m in members)} (built-in writer, OS {CATALOG_OS[arch]})")
        return
    ctx.step(f"building catalog {cat.name} (built-in writer: {', '.join(m.name for m in members)})")
    write_catalog(cat, members, os_name=CATALOG_OS[arch])


# --------------------------------------------------------------------------- verification


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


def _package_files(pkg_dir: Path) -> list[Path]:
    return sorted(p for p in pkg_dir.iterdir() if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))


def package_model(pkg_dir: Path) -> str:
    """The driver model the package was made from ("wdm" | "kmdf"), as `invoke package` recorded it."""
    stamp = read_record(pkg_dir / ".driverpipe-package.json", table({"settings": mapping_of(is_text, lambda v: True)}))
    model = stamp["settings"].get("model") if stamp is not None else None
    return model if model in ("wdm", "kmdf") else "kmdf"


def write_manifest(pkg_dir: Path, name: str, backend: Backend, cert: TestCert, cer_in_pkg: Path) -> Path:
    sys_ = pkg_dir / f"{name}.sys"
    data = {
        "name": name,
        "backend": backend.name,
        "tool": str(backend.tool),
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "authentihash_sha256": (pe_authenticode_hash(sys_, "sha256") or b"").hex().upper(),
        "authentihash_sha1": (pe_authenticode_hash(sys_, "sha1") or b"").hex().upper(),
        "cert": {
            "file": cer_in_pkg.name,
            "subject": cert.subject,
            "thumbprint_sha1": cert.thumbprint,
            "not_after": cert.not_after.isoformat(),
            "store": cert.store,
        },
        "files": {p.name: sha256_file(p) for p in _package_files(pkg_dir)},
        "model": package_model(pkg_dir),
        "key_files": _key_file_hashes(cert.key, cert.pfx),
    }
    path = pkg_dir / MANIFEST
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return path


def check_signed_dir(pkg_dir: Path, name: str, ctx: Any = None) -> SignedPackage:
    """The signed package as recorded by `invoke sign`; CheckFailed if unsigned, PackageTampered if changed since.

    With `ctx`, the signatures themselves are verified too (the record alone can be edited to match a changed file).
    """
    path = pkg_dir / MANIFEST
    if not path.is_file():
        raise CheckFailed(f"package is not signed: {pkg_dir} has no {MANIFEST}", "run `invoke sign`")
    manifest = read_record(path, MANIFEST_SHAPE)
    if manifest is None:
        raise CheckFailed(f"package signing record {path} is unreadable (not the record `invoke sign` writes)", "run `invoke sign`")
    files: dict[str, str] = manifest["files"]
    cer_name: str = manifest["cert"]["file"]
    wanted = [f"{name}.sys", f"{name}.inf", f"{name}.cat", cer_name]
    for fname in wanted:
        if fname not in files:
            raise CheckFailed(f"package is not signed: {fname} is not in {MANIFEST}", "run `invoke sign`")
    for fname, digest in files.items():
        p = pkg_dir / fname
        if not p.is_file() or p.is_symlink():
            raise PackageTampered(f"package changed since signing: {fname} is missing", "run `invoke sign`")
        if sha256_file(p) != digest.lower():
            raise PackageTampered(f"package changed since signing: {fname}", "run `invoke sign`")
    cer = pkg_dir / cer_name
    if hashlib.sha1(cer.read_bytes()).hexdigest().upper() != str(manifest["cert"]["thumbprint_sha1"]).upper():
        raise PackageTampered(f"{path}: the recorded thumbprint is not that of {cer_name}", "run `invoke sign`")
    if ctx is not None:
        problems = _against_own_cert(ctx, pkg_dir, name, cer)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise PackageTampered(
                f"signed package {pkg_dir}: {problems[0]}{more}", "run `invoke build sign` again (never deploy a package changed after signing)"
            )
    return SignedPackage(dir=pkg_dir, name=name, files=[pkg_dir / f for f in wanted], cert_path=cer, manifest=manifest)


def _against_own_cert(ctx: Any, pkg_dir: Path, name: str, cer: Path) -> list[str]:
    """The signatures verified against this pipeline's own test certificate, never one taken from the
    package (a re-signed package can bring its own .cer and a record to match); the packaged .cer must be it."""
    own_path, own = own_cert(ctx)
    if own is None:
        raise CheckFailed(f"no readable test certificate at {own_path} to check the package against", "run `invoke sign` on this machine")
    if cer.read_bytes() != own:
        return [f"{cer.name} is not this pipeline's test certificate ({own_path})"]
    with tempfile.TemporaryDirectory(prefix="driverpipe-cert-") as tmp:
        mine = Path(tmp) / cer.name
        mine.write_bytes(own)
        return verify_signatures(ctx, pkg_dir, name, mine)


def check_signed_package(ctx: Any) -> SignedPackage:
    """For deploy (every target, --dry too): the package to push, its record and signatures checked locally first."""
    from ..image.package import package_dir, package_name

    return check_signed_dir(package_dir(ctx), package_name(ctx), ctx)


# --------------------------------------------------------------------------- the task


def sign_package(ctx: Any, pkg_dir: Path, name: str, *, backend: Backend, cert: TestCert) -> SignResult:
    """Sign .sys, rebuild + sign .cat, export the .cer, verify, record. Raises CheckFailed on any problem."""
    started = time.monotonic()
    sys_, inf, cat = pkg_dir / f"{name}.sys", pkg_dir / f"{name}.inf", pkg_dir / f"{name}.cat"
    for needed in (sys_, inf):
        if not needed.is_file():
            raise ConfigError(f"package file missing: {needed}", "run `invoke build package` first")
    cer_in_pkg = pkg_dir / f"{file_base(cert.subject)}.cer"
    if ctx.dry:
        ctx.say(f"[dry] would copy the test certificate {cert.cer} to {cer_in_pkg}")
    else:
        old = pkg_dir / MANIFEST
        old.unlink(missing_ok=True)  # the package is about to change: no stale "signed" record
        write_atomic(cer_in_pkg, cert.cer.read_bytes())
    ctx.step(f"signing {sys_.name} ({backend.name}, SHA-256, page hashes)")
    _sign_file(ctx, backend, cert, sys_, page_hashes=True)
    _build_catalog(ctx, backend, pkg_dir, name)
    ctx.step(f"signing {cat.name} ({backend.name})")
    _sign_file(ctx, backend, cert, cat, page_hashes=False)
    seconds = time.monotonic() - started
    manifest = pkg_dir / MANIFEST
    if ctx.dry:
        ctx.say(f"[dry] would verify {sys_.name}, {cat.name} and write {manifest}")
        return SignResult(pkg_dir, name, backend.name, cert, [sys_, inf, cat, cer_in_pkg], "", manifest, seconds, dry=True)
    ctx.step("verifying signatures and catalog")
    problems = verify_package(ctx, pkg_dir, name, cert)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""
        raise CheckFailed(problems[0] + more, "see the message; `invoke sign` re-signs, `invoke sign --new-cert` replaces the certificate")
    write_manifest(pkg_dir, name, backend, cert, cer_in_pkg)
    authentihash = (pe_authenticode_hash(sys_, "sha256") or b"").hex().upper()
    who = f"{cert.common_name!r} ({cert.thumbprint})"
    ctx.say(f"signed {pkg_dir} [{package_model(pkg_dir)} model] with {who} using {backend.name}; .sys Authenticode SHA-256 {authentihash}")
    return SignResult(pkg_dir, name, backend.name, cert, [sys_, inf, cat, cer_in_pkg], authentihash, manifest, seconds)


def prepare(ctx: Any, *, new_cert: bool) -> tuple[Backend, TestCert]:
    """Pick the backend, then ensure the certificate of the kind it needs."""
    backend = choose_backend(ctx)
    store_based = backend.name == "signtool" and bool(ctx.config.project.sign.cert_store)
    return backend, ensure_test_cert(ctx, rotate=new_cert, store_based=store_based)


def run(ctx: Any, *, new_cert: bool) -> SignResult | None:
    """`invoke sign [--new-cert]`: packages the latest build first (a no-op when nothing changed)."""
    from ..image.package import package_dir, package_name
    from ..image.package import run as make_package

    make_package(ctx)
    pkg_dir, name = package_dir(ctx), package_name(ctx)
    if not (pkg_dir / f"{name}.sys").is_file():
        if ctx.dry:
            ctx.say(
                f"[dry] would sign {pkg_dir / (name + '.sys')} (SHA-256, page hashes), rebuild {name}.cat over the signed "
                f"files, sign the catalog, verify everything and write driverpipe-sign.json"
            )
            return None
        raise ConfigError(f"no driver package at {pkg_dir} ({name}.sys missing)", "run `invoke build` first")
    if not new_cert and not ctx.dry and _signed_unchanged(ctx, pkg_dir, name):
        ctx.say(f"signed package {pkg_dir} unchanged: every file matches its signing record (same test certificate); nothing to sign")
        return None
    backend, cert = prepare(ctx, new_cert=new_cert)
    return sign_package(ctx, pkg_dir, name, backend=backend, cert=cert)


def _key_file_hashes(*paths: Path | None) -> dict[str, str]:
    """SHA-256 of the test key's files that exist (never the password): what `sign` signed with."""
    return {p.suffix.lstrip("."): sha256_file(p) for p in paths if p is not None and p.is_file()}


def _signed_unchanged(ctx: Any, pkg_dir: Path, name: str) -> bool:
    """`sign` on an unchanged package is a no-op: its files match the record `sign` wrote after verifying
    them, signed with the test certificate this checkout signs with now, still valid, by the configured backend."""
    try:
        signed = check_signed_dir(pkg_dir, name)
        record = signed.manifest
        not_after = datetime.fromisoformat(str(record["cert"]["not_after"]))
        backend = str(ctx.config.project.sign.backend)
        base = cert_dir(ctx) / file_base(ctx.config.project.sign.cert_subject)
        current = base.with_suffix(".cer")
        return (
            # The key files are inputs too: a PFX replaced or damaged since takes the full path, which checks it.
            record.get("key_files") == _key_file_hashes(base.with_suffix(".key"), base.with_suffix(".pfx"))
            and (backend == "auto" or record.get("backend") == backend)
            and (not_after.tzinfo is None or not_after > datetime.now(UTC))
            and current.is_file()
            and current.read_bytes() == signed.cert_path.read_bytes()
        )
    except (CheckFailed, OSError, KeyError, TypeError, ValueError):
        return False
