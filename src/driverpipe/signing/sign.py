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

Verification (signing.verify) runs on every host and does not trust the signing tool.
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
from ..core.runner import which
from ..image import wdk
from ..image.catalog import pe_authenticode_hash, write_catalog
from .certs import TestCert, cert_dir, ensure_test_cert, file_base, own_cert, own_cert_file
from .verify import find_signtool, verify_package, verify_signatures

MANIFEST = "driverpipe-sign.json"
VERIFIED_CACHE = "verified-packages.json"  # in the user's state folder: packages verified against the own certificate
VERIFIED_KEEP = 32
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
    if ctx is not None and not _verified_before(ctx, files):
        problems = _against_own_cert(ctx, pkg_dir, name, cer)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise PackageTampered(
                f"signed package {pkg_dir}: {problems[0]}{more}", "run `invoke build sign` again (never deploy a package changed after signing)"
            )
        _remember_verified(ctx, files)
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


def _verified_key(ctx: Any, files: dict[str, str]) -> str | None:
    """The package's file digests (just compared with the files themselves) and this machine's own test
    certificate, as one key; None when there is no own certificate to verify against."""
    try:
        own = own_cert_file(ctx).read_bytes()  # the file as it is: no certificate parsing on this path
    except OSError:
        return None
    h = hashlib.sha256(own)
    for fname in sorted(files):
        h.update(f"{fname}\0{files[fname].lower()}\0".encode())
    return h.hexdigest()


def _verified_path() -> Path:
    from ..core.config import user_state_dir

    return user_state_dir() / VERIFIED_CACHE


def _verified_before(ctx: Any, files: dict[str, str]) -> bool:
    """These exact bytes were verified against this certificate before: lief and osslsigncode need not run
    again on every deploy. Kept in the user's own state folder, never in the package, so the package (or
    whoever edits it) cannot vouch for itself; any changed byte is a new key and a full verification."""
    key = _verified_key(ctx, files)
    known = read_record(_verified_path(), table({"keys": lambda v: isinstance(v, list) and all(is_sha256(k) for k in v)}))
    return key is not None and known is not None and key in known["keys"]


def _remember_verified(ctx: Any, files: dict[str, str]) -> None:
    key = _verified_key(ctx, files)
    if key is None or ctx.dry:
        return
    path = _verified_path()
    known = read_record(path, table({"keys": lambda v: isinstance(v, list) and all(is_sha256(k) for k in v)}))
    keys = [*[k for k in (known or {}).get("keys", []) if k != key][-(VERIFIED_KEEP - 1) :], key]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps({"keys": keys}) + "\n").encode())


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
    record = write_manifest(pkg_dir, name, backend, cert, cer_in_pkg)
    if cert.cer.read_bytes() == own_cert(ctx)[1]:  # verified just now against this machine's own certificate
        _remember_verified(ctx, json.loads(record.read_text(encoding="utf-8"))["files"])
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
