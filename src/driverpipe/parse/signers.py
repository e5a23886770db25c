"""Verdicts and signers from `osslsigncode verify` and Sysinternals `sigcheck -i`, through the shared decoding.

Both print English labels (neither tool is localized); sigcheck's verdict is "Signed" or a Windows
message (localized), so only "Signed" reads as a pass. A text without a verdict is unknown, never ok.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .text import _lines


def common_name(subject: str) -> str:
    """The CN of an OpenSSL `/C=../CN=x` or RFC 4514 `CN=x, O=..` subject; the whole text when it has none."""
    text = subject.strip()
    # Commas first (a CN may hold a '/'), then OpenSSL's slashes.
    for parts in (re.split(r"\s*,\s*", text), text.split("/")):
        for part in parts:
            key, _, value = part.partition("=")
            if key.strip().upper() == "CN" and value.strip():
                return value.strip()
    return text


@dataclass
class OsslVerify:
    """What `osslsigncode verify` printed."""

    verifications: list[bool] = field(default_factory=list)  # each "Signature verification: ok|failed"
    final: str | None = None  # the last line: "Succeeded" / "Failed"
    signers: list[str] = field(default_factory=list)  # subject of each signature's Signer #0, in order
    digest_mismatch: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def unknown(self) -> bool:
        return self.final is None and not self.verifications

    @property
    def ok(self) -> bool:
        return self.final == "Succeeded" and all(self.verifications) and not self.digest_mismatch and not self.errors

    @property
    def signer(self) -> str | None:
        """The primary signature's signer (its CN)."""
        return common_name(self.signers[0]) if self.signers else None


_OSSL_VERDICT = re.compile(r"^\s*Signature verification:\s*(\w+)", re.I)
_OSSL_DIGEST = re.compile(r"^\s*(Current|Calculated) message digest\s*:\s*([0-9A-Fa-f]+)")


def parse_osslsigncode_verify(text: str | bytes) -> OsslVerify:
    """`osslsigncode verify` (1.x: "Number of signers:", 2.x: "Signer's certificate:"): the verdict lines,
    the final Succeeded/Failed, the signer of each signature, a message-digest mismatch."""
    result = OsslVerify()
    digests: dict[str, str] = {}
    in_signers = False
    for line in _lines(text):
        stripped = line.strip()
        verdict = _OSSL_VERDICT.match(stripped)
        if verdict:
            result.verifications.append(verdict.group(1).lower() == "ok")
            continue
        if stripped in ("Succeeded", "Failed"):
            result.final = stripped
            continue
        digest = _OSSL_DIGEST.match(stripped)
        if digest:
            digests[digest.group(1).lower()] = digest.group(2).upper()
            if len(digests) == 2 and digests["current"] != digests.get("calculated", digests["current"]):
                result.digest_mismatch = True
            continue
        if "MISMATCH" in stripped:
            result.digest_mismatch = True
        if stripped.startswith(("Signer's certificate:", "Number of signers:")):
            in_signers = True
            continue
        if in_signers and stripped.startswith("Subject:"):
            result.signers.append(stripped.split(":", 1)[1].strip())
            in_signers = False
            continue
        if stripped.startswith(("Error:", "PKCS7_verify error")) or "verification: failed" in stripped.lower():
            result.errors.append(stripped)
    return result


@dataclass
class SigcheckFile:
    path: str
    verified: str = ""  # "Signed", "Unsigned" or the Windows message (localized)
    catalog: str | None = None
    signers: list[str] = field(default_factory=list)  # the signing chain, leaf first

    @property
    def ok(self) -> bool:
        return self.verified == "Signed"

    @property
    def signer(self) -> str | None:
        return self.signers[0] if self.signers else None


@dataclass
class Sigcheck:
    files: list[SigcheckFile] = field(default_factory=list)

    @property
    def unknown(self) -> bool:
        return not any(f.verified for f in self.files)

    @property
    def ok(self) -> bool:
        return not self.unknown and all(f.ok for f in self.files)


_SIG_FILE = re.compile(r"^(\S.*\S):\s*$")  # `C:\x\a.sys:` at column 0
_SIG_FIELD = re.compile(r"^\s+([A-Za-z][\w ]*?):\s*(.*?)\s*$")


def parse_sigcheck(text: str | bytes) -> Sigcheck:
    """`sigcheck -i` (and plain `sigcheck`): per file, the Verified verdict, the catalog, and the names
    under `Signers:` (indented one step; their details one step deeper)."""
    result = Sigcheck()
    current: SigcheckFile | None = None
    signers_indent: int | None = None
    for line in _lines(text):
        if not line.strip():
            continue
        top = _SIG_FILE.match(line)
        if top:
            current = SigcheckFile(top.group(1))
            result.files.append(current)
            signers_indent = None
            continue
        if current is None:
            continue
        indent = len(line) - len(line.lstrip())
        if signers_indent is not None:
            if indent > signers_indent and ":" not in line:
                current.signers.append(line.strip())
                continue
            if indent > signers_indent:
                continue  # a signer's details (Cert Status, Thumbprint, ...)
            signers_indent = None
        field_ = _SIG_FIELD.match(line)
        if not field_:
            continue
        label, value = field_.group(1), field_.group(2)
        if label == "Verified" and not current.verified:
            current.verified = value
        elif label == "Catalog":
            current.catalog = value or None
        elif label == "Signers" and not current.signers:
            signers_indent = indent
    return result
