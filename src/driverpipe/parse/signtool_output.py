"""Read `signtool verify /v [/pa|/kp] [/c cat|/a]` output.

Tolerates what published/captured outputs do to it (corpus/signtool): the
shared decoding (UTF-16 read as bytes, BOMs, log prefixes, markdown), any
indentation, a single-space indent, double spaces inside names, and logical
lines joined onto one physical line ("Verifying: x Hash of file (sha1): ...",
"Issued to: A Issued by: B Expires: ... SHA1 hash: ..."). The text is therefore
cut at known field labels, not at line ends. The newer header (`File: a.exe`,
then an `Index  Algorithm  Timestamp` table) names the file being verified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .text import plain_text

LABELS = [
    "Verifying:",
    "File is signed in catalog:",
    "Hash of file (sha1):",
    "Hash of file (sha256):",
    "Signing Certificate Chain:",
    "Cross Certificate Chain:",
    "The signature is timestamped:",
    "Timestamp Verified by:",
    "File is not timestamped.",
    "Issued to:",
    "Issued by:",
    "Expires:",
    "SHA1 hash:",
    "SHA256 hash:",
    "Successfully verified:",
    "Number of files successfully Verified:",
    "Number of warnings:",
    "Number of errors:",
    "SignTool Error:",
    "SignTool Warning:",
]
# "File:" only at a line start: the words appear inside other labels and messages.
_LABEL_RE = re.compile("|".join([r"(?m:^[ \t]*)File:"] + [re.escape(label) for label in sorted(LABELS, key=len, reverse=True)]))
_SIGNATURE_ROW = re.compile(r"(?m)^[ \t]*(\d+)[ \t]+([\w-]+)[ \t]+(\S[^\n]*?)[ \t]*$")


@dataclass
class ChainCert:
    issued_to: str
    issued_by: str = ""
    expires: str = ""
    sha1: str = ""


@dataclass
class SigntoolVerify:
    verifying: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)  # "Successfully verified: X"
    catalog: str | None = None  # "File is signed in catalog: X" (/c, /a)
    file_hash: str | None = None
    signing_chain: list[ChainCert] = field(default_factory=list)  # root first, as printed
    timestamp_chain: list[ChainCert] = field(default_factory=list)
    cross_chain: list[ChainCert] = field(default_factory=list)
    timestamped: str | None = None
    files_verified: int | None = None
    warnings: int | None = None
    errors: int | None = None
    error_lines: list[str] = field(default_factory=list)
    signatures: list[tuple[int, str, str]] = field(default_factory=list)  # (index, algorithm, timestamp) of the `File:` table

    @property
    def ok(self) -> bool:
        return bool(self.verified) and not self.error_lines and (self.errors in (None, 0))

    @property
    def signer(self) -> str | None:
        """The leaf of the signing chain (the signer's 'Issued to')."""
        return self.signing_chain[-1].issued_to if self.signing_chain else None


def _tokens(flat: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    matches = list(_LABEL_RE.finditer(flat))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(flat)
        value = flat[m.end() : end]
        if m.group().strip() == "File:":
            table = value.split("\n\n", 1)[0]
            out.append(("File:", re.sub(r"\s+", " ", value.split("\n", 1)[0]).strip()))
            out.extend(("row", "\t".join(row.groups())) for row in _SIGNATURE_ROW.finditer(table))
            continue
        # A value ends at the end of its line unless the next label follows on the same line.
        value = value.split("\n", 1)[0] if m.group() not in ("SignTool Error:", "SignTool Warning:") else value.strip().split("\n\n", 1)[0]
        out.append((m.group(), re.sub(r"\s+", " ", value).strip()))
    return out


def parse_verify(text: str | bytes) -> SigntoolVerify:
    result = SigntoolVerify()
    section: list[ChainCert] | None = None
    for label, value in _tokens(plain_text(text)):
        if label in ("Verifying:", "File:"):
            result.verifying.append(value)
            section = None
        elif label == "File is signed in catalog:":
            result.catalog = value
        elif label.startswith("Hash of file"):
            result.file_hash = value
        elif label == "Signing Certificate Chain:":
            section = result.signing_chain
        elif label == "Cross Certificate Chain:":
            section = result.cross_chain
        elif label == "Timestamp Verified by:":
            section = result.timestamp_chain
        elif label == "The signature is timestamped:":
            result.timestamped = value
            section = None
        elif label == "Issued to:" and section is not None:
            section.append(ChainCert(issued_to=value))
        elif label == "Issued by:" and section:
            section[-1].issued_by = value
        elif label == "Expires:" and section:
            section[-1].expires = value
        elif label == "SHA1 hash:" and section:
            section[-1].sha1 = value
        elif label == "Successfully verified:":
            result.verified.append(value)
            section = None
        elif label == "Number of files successfully Verified:":
            result.files_verified = _int(value)
        elif label == "Number of warnings:":
            result.warnings = _int(value)
        elif label == "Number of errors:":
            result.errors = _int(value)
        elif label == "SignTool Error:":
            result.error_lines.append(value)
        elif label == "row":
            index, algorithm, timestamp = value.split("\t")
            result.signatures.append((int(index), algorithm, timestamp))
    return result


def _int(value: str) -> int | None:
    m = re.match(r"\d+", value)
    return int(m.group()) if m else None
