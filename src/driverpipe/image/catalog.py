"""Driver package catalogs (.cat): create one without Windows, and read one back.

Why hand-written: on Windows inf2cat makes the catalog, but no Python or Go
library creates one (note 04; LINBIT's generate-cat-file in C is the only known
open tool). A catalog is small DER, so it is assembled here with asn1crypto.
osslsigncode can then SIGN it and verify membership (`verify -catalog`).
Windows acceptance of this exact encoding has NOT been checked.

Structure written (unsigned; signing fills digestAlgorithms/certificates/signerInfos):

    ContentInfo { contentType signedData (1.2.840.113549.1.7.2), [0] SignedData {
      version 1, digestAlgorithms {}, encapContentInfo {
        contentType CTL (1.3.6.1.4.1.311.10.1), [0] CertificateTrustList {
          subjectUsage        { 1.3.6.1.4.1.311.12.1.1 }          -- catalog list
          listIdentifier      OCTET STRING (16 bytes, derived from the members)
          ctlThisUpdate       UTCTime
          subjectAlgorithm    { 1.3.6.1.4.1.311.12.1.2 (v1: SHA1 members) | 12.1.3 (v2: SHA256), NULL }
          trustedSubjects     SEQUENCE OF TrustedSubject, sorted by identifier
          ctlExtensions [0]   { Extension { 1.3.6.1.4.1.311.12.2.1, NameValue "OS" = os_name } }
      } }, signerInfos {} } }

    TrustedSubject { identifier OCTET STRING, attributes SET OF Attribute {
        1.3.6.1.4.1.311.12.2.1  NameValue { BMPString "File",   INTEGER flags, OCTET STRING UTF-16LE+NUL name }
        1.3.6.1.4.1.311.12.2.1  NameValue { BMPString "OSAttr", INTEGER flags, OCTET STRING UTF-16LE+NUL "2:10.0" }
        1.3.6.1.4.1.311.12.2.2  MemberInfo { BMPString SIP GUID, INTEGER 512 }
        1.3.6.1.4.1.311.2.1.4   SpcIndirectDataContent {
            { 1.3.6.1.4.1.311.2.1.15 SpcPeImageData  (PE: Authenticode hash)
            | 1.3.6.1.4.1.311.2.1.25 SpcLink         (flat file, e.g. .inf: whole-file hash) },
            DigestInfo { sha1|sha256 NULL, hash } } } }

The identifier is, for v1, the uppercase hex hash as UTF-16LE with a NUL; for v2
the raw hash. Real Win10/11 WHQL catalogs use v1 members with a SHA-256
signature, hence the default.
"""

# asn1crypto declares structures as class-level lists (_fields/_alternatives): not mutable state.
# ruff: noqa: RUF012

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core.errors import CheckFailed, ConfigError
from ..core.files import write_atomic

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_CTL = "1.3.6.1.4.1.311.10.1"
OID_CATALOG_LIST = "1.3.6.1.4.1.311.12.1.1"
OID_CATALOG_V1 = "1.3.6.1.4.1.311.12.1.2"  # SHA1 member hashes
OID_CATALOG_V2 = "1.3.6.1.4.1.311.12.1.3"  # SHA256 member hashes
OID_NAMEVALUE = "1.3.6.1.4.1.311.12.2.1"
OID_MEMBERINFO = "1.3.6.1.4.1.311.12.2.2"
OID_SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
OID_SPC_PE_IMAGE_DATA = "1.3.6.1.4.1.311.2.1.15"
OID_SPC_CAB_DATA = "1.3.6.1.4.1.311.2.1.25"  # used for flat files in catalogs
SIP_PE = "{C689AAB8-8E78-11D0-8C47-00C04FC295EE}"
SIP_FLAT = "{DE351A42-8E59-11D0-8C47-00C04FC295EE}"
# CRYPTCAT_ATTR_AUTHENTICATED | CRYPTCAT_ATTR_NAMEASCII | CRYPTCAT_ATTR_DATAASCII, as inf2cat writes.
NAMEVALUE_FLAGS = 0x10010001
OBSOLETE = "<<<Obsolete>>>"


@dataclass(frozen=True)
class CatalogMember:
    file_name: str
    hash_hex: str  # uppercase hex
    algorithm: str  # "sha1" | "sha256"
    kind: str  # "pe" | "flat"


@dataclass
class Catalog:
    members: dict[str, CatalogMember]  # by file name as written in the catalog
    signed: bool
    signer_subject: str | None = None
    signer_serial: int | None = None
    os_name: str | None = None
    this_update: datetime | None = None
    hash_algorithm: str = "sha1"
    signer_certificates: list[bytes] = field(default_factory=list, repr=False)  # DER of the embedded certificates

    def member(self, file_name: str) -> CatalogMember | None:
        """Case-insensitive lookup (Windows file names)."""
        want = file_name.lower()
        for name, member in self.members.items():
            if name.lower() == want:
                return member
        return None


def _asn1() -> Any:
    """asn1crypto classes for the catalog, built lazily (asn1crypto is imported on first use)."""
    global _ASN1
    if _ASN1 is not None:
        return _ASN1
    from asn1crypto import algos, core

    class NameValue(core.Sequence):
        _fields = [("name", core.BMPString), ("flags", core.Integer), ("value", core.OctetString)]

    class MemberInfo(core.Sequence):
        _fields = [("sip_guid", core.BMPString), ("cert_version", core.Integer)]

    class SpcString(core.Choice):
        _alternatives = [("unicode", core.BMPString, {"implicit": 0}), ("ascii", core.IA5String, {"implicit": 1})]

    class SpcLink(core.Choice):
        _alternatives = [
            ("url", core.IA5String, {"implicit": 0}),
            ("moniker", core.Any, {"implicit": 1}),
            ("file", SpcString, {"explicit": 2}),
        ]

    class SpcPeImageData(core.Sequence):
        _fields = [("flags", core.BitString), ("file", SpcLink, {"explicit": 0, "optional": True})]

    class SpcAttributeTypeAndOptionalValue(core.Sequence):
        _fields = [("type", core.ObjectIdentifier), ("value", core.Any, {"optional": True})]

    class DigestInfo(core.Sequence):
        _fields = [("digest_algorithm", algos.DigestAlgorithm), ("digest", core.OctetString)]

    class SpcIndirectDataContent(core.Sequence):
        _fields = [("data", SpcAttributeTypeAndOptionalValue), ("message_digest", DigestInfo)]

    class AnySet(core.SetOf):
        _child_spec = core.Any

    class Attribute(core.Sequence):
        _fields = [("type", core.ObjectIdentifier), ("values", AnySet)]

    class Attributes(core.SetOf):
        _child_spec = Attribute

    class TrustedSubject(core.Sequence):
        _fields = [("identifier", core.OctetString), ("attributes", Attributes, {"optional": True})]

    class TrustedSubjects(core.SequenceOf):
        _child_spec = TrustedSubject

    class Extension(core.Sequence):
        _fields = [
            ("extn_id", core.ObjectIdentifier),
            ("critical", core.Boolean, {"default": False}),
            ("extn_value", core.OctetString),
        ]

    class Extensions(core.SequenceOf):
        _child_spec = Extension

    class SubjectUsage(core.SequenceOf):
        _child_spec = core.ObjectIdentifier

    class AlgorithmIdentifier(core.Sequence):
        _fields = [("algorithm", core.ObjectIdentifier), ("parameters", core.Any, {"optional": True})]

    class CertificateTrustList(core.Sequence):
        _fields = [
            ("version", core.Integer, {"default": 0}),
            ("subject_usage", SubjectUsage),
            ("list_identifier", core.OctetString, {"optional": True}),
            ("sequence_number", core.Integer, {"optional": True}),
            ("this_update", core.UTCTime),
            ("next_update", core.UTCTime, {"optional": True}),
            ("subject_algorithm", AlgorithmIdentifier),
            ("trusted_subjects", TrustedSubjects, {"optional": True}),
            ("extensions", Extensions, {"explicit": 0, "optional": True}),
        ]

    class EncapCTL(core.Sequence):
        # PKCS#7 v1.5 style: the CTL sits directly under [0], not wrapped in an OCTET STRING.
        _fields = [("content_type", core.ObjectIdentifier), ("content", CertificateTrustList, {"explicit": 0})]

    class AlgSet(core.SetOf):
        _child_spec = algos.DigestAlgorithm

    class UnsignedData(core.Sequence):
        _fields = [
            ("version", core.Integer),
            ("digest_algorithms", AlgSet),
            ("encap_content_info", EncapCTL),
            ("signer_infos", AnySet),
        ]

    class Outer(core.Sequence):
        _fields = [("content_type", core.ObjectIdentifier), ("content", UnsignedData, {"explicit": 0})]

    _ASN1 = dict(locals())
    return _ASN1


_ASN1: Any = None


def pe_authenticode_hash(path: Path, algorithm: str = "sha1") -> bytes | None:
    """The Authenticode hash of a PE file (lief), or None if the file is not a PE image."""
    with path.open("rb") as fh:
        if fh.read(2) != b"MZ":
            return None
    import lief

    lief.logging.disable()
    binary = lief.PE.parse(str(path))
    if binary is None:
        return None
    alg = {"sha1": lief.PE.ALGORITHMS.SHA_1, "sha256": lief.PE.ALGORITHMS.SHA_256}[algorithm]
    return bytes(binary.authentihash(alg))


def member_hash(path: Path, algorithm: str = "sha1") -> tuple[str, bytes]:
    """(kind, hash) as a catalog lists the file: PE -> Authenticode hash, else whole-file hash."""
    pe = pe_authenticode_hash(path, algorithm)
    if pe is not None:
        return "pe", pe
    return "flat", hashlib.new(algorithm, path.read_bytes()).digest()


def _utf16z(text: str) -> bytes:
    return (text + "\0").encode("utf-16-le")


def _from_utf16z(data: bytes) -> str:
    return data.decode("utf-16-le", errors="replace").rstrip("\0")


def _name_value_attr(a: Any, name: str, value: str) -> Any:
    nv = a["NameValue"]({"name": name, "flags": NAMEVALUE_FLAGS, "value": _utf16z(value)})
    return a["Attribute"]({"type": OID_NAMEVALUE, "values": [nv]})


def build_catalog_der(
    members: Sequence[Path],
    *,
    os_attr: str = "2:10.0",
    os_name: str = "_v100_X64",
    hash_algorithm: str = "sha1",
    this_update: datetime | None = None,
) -> bytes:
    """The DER of an unsigned catalog listing `members` (see the module docstring)."""
    from asn1crypto import core

    if hash_algorithm not in ("sha1", "sha256"):
        raise ConfigError(f"catalog hash algorithm {hash_algorithm!r} is not supported", "use sha1 (default) or sha256")
    a = _asn1()
    subjects = []
    for path in members:
        if not path.is_file():
            raise ConfigError(f"catalog member not found: {path}", "build/package the driver first")
        kind, digest = member_hash(path, hash_algorithm)
        ident = _utf16z(digest.hex().upper()) if hash_algorithm == "sha1" else digest
        if kind == "pe":
            link = a["SpcLink"]({"file": a["SpcString"]({"unicode": OBSOLETE})})
            data_value: Any = a["SpcPeImageData"]({"flags": (), "file": link})
            sip, data_type = SIP_PE, OID_SPC_PE_IMAGE_DATA
        else:
            data_value = a["SpcLink"]({"file": a["SpcString"]({"unicode": OBSOLETE})})
            sip, data_type = SIP_FLAT, OID_SPC_CAB_DATA
        indirect = a["SpcIndirectDataContent"](
            {
                "data": {"type": data_type, "value": core.Any.load(data_value.dump())},
                "message_digest": {"digest_algorithm": {"algorithm": hash_algorithm, "parameters": core.Null()}, "digest": digest},
            }
        )
        attrs = [
            _name_value_attr(a, "File", path.name),
            _name_value_attr(a, "OSAttr", os_attr),
            a["Attribute"]({"type": OID_MEMBERINFO, "values": [a["MemberInfo"]({"sip_guid": sip, "cert_version": 512})]}),
            a["Attribute"]({"type": OID_SPC_INDIRECT_DATA, "values": [indirect]}),
        ]
        subjects.append((ident, a["TrustedSubject"]({"identifier": ident, "attributes": attrs})))
    idents = [ident for ident, _ in subjects]
    if len(set(idents)) != len(idents):
        raise ConfigError("two catalog members have the same content hash", "remove the duplicate file from the package")
    subjects.sort(key=lambda item: item[0])
    when = (this_update or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    # A stable list identifier (inf2cat uses a random GUID): same members + settings -> same bytes.
    list_id = hashlib.sha256(b"".join(sorted(idents)) + os_attr.encode() + os_name.encode()).digest()[:16]
    os_ext = a["NameValue"]({"name": "OS", "flags": NAMEVALUE_FLAGS, "value": _utf16z(os_name)})
    ctl = a["CertificateTrustList"](
        {
            "subject_usage": [OID_CATALOG_LIST],
            "list_identifier": list_id,
            "this_update": when,
            "subject_algorithm": {"algorithm": OID_CATALOG_V1 if hash_algorithm == "sha1" else OID_CATALOG_V2, "parameters": core.Null()},
            "trusted_subjects": [subject for _, subject in subjects],
            "extensions": [{"extn_id": OID_NAMEVALUE, "extn_value": os_ext.dump()}],
        }
    )
    outer = a["Outer"](
        {
            "content_type": OID_SIGNED_DATA,
            "content": {"version": 1, "digest_algorithms": [], "encap_content_info": {"content_type": OID_CTL, "content": ctl}, "signer_infos": []},
        }
    )
    return bytes(outer.dump(force=True))


def write_catalog(
    cat_path: Path,
    members: Sequence[Path],
    *,
    os_attr: str = "2:10.0",
    os_name: str = "_v100_X64",
    hash_algorithm: str = "sha1",
    this_update: datetime | None = None,
) -> None:
    """Build an unsigned catalog of `members` and write it atomically to cat_path."""
    der = build_catalog_der(members, os_attr=os_attr, os_name=os_name, hash_algorithm=hash_algorithm, this_update=this_update)
    write_atomic(Path(cat_path), der)


def _parse(path: Path) -> tuple[Any, Any]:
    """(cms SignedData, CertificateTrustList) of a catalog; CheckFailed if it is not one."""
    from asn1crypto import cms

    a = _asn1()
    try:
        info = cms.ContentInfo.load(path.read_bytes())
        if info["content_type"].dotted != OID_SIGNED_DATA:
            raise ValueError("not PKCS#7 signedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].dotted != OID_CTL:
            raise ValueError(f"content type {encap['content_type'].dotted} is not a CTL")
        ctl = a["CertificateTrustList"].load(_untag(encap["content"].dump()))
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckFailed(f"{path.name}: not a valid catalog ({str(exc).splitlines()[0]})", "rebuild it with `invoke sign`") from None
    return signed, ctl


def _untag(raw: bytes) -> bytes:
    """The CTL SEQUENCE, whether or not asn1crypto kept the [0] EXPLICIT wrapper around it."""
    from asn1crypto import parser

    return raw if raw[:1] == b"\x30" else bytes(parser.parse(raw)[4])


def read_catalog(path: Path) -> Catalog:
    """Parse a catalog (ours, inf2cat's, signed or not) into a Catalog; CheckFailed if malformed."""
    path = Path(path)
    if not path.is_file():
        raise CheckFailed(f"catalog not found: {path}", "run `invoke package` then `invoke sign`")
    signed, ctl = _parse(path)
    try:
        return _read(signed, ctl)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckFailed(f"{path.name}: not a valid catalog ({str(exc).splitlines()[0]})", "rebuild it with `invoke sign`") from None


def _read(signed: Any, ctl: Any) -> Catalog:
    a = _asn1()
    alg_oid = ctl["subject_algorithm"]["algorithm"].dotted
    members: dict[str, CatalogMember] = {}
    for subject in ctl["trusted_subjects"] or []:
        name = None
        digest_hex = None
        algorithm = "sha1" if alg_oid == OID_CATALOG_V1 else "sha256"
        kind = "flat"
        for attr in subject["attributes"] or []:
            oid = attr["type"].dotted
            for value in attr["values"]:
                raw = value.dump()
                if oid == OID_NAMEVALUE:
                    nv = a["NameValue"].load(raw)
                    if nv["name"].native == "File":
                        name = _from_utf16z(nv["value"].native)
                elif oid == OID_MEMBERINFO:
                    if a["MemberInfo"].load(raw)["sip_guid"].native.upper() == SIP_PE:
                        kind = "pe"
                elif oid == OID_SPC_INDIRECT_DATA:
                    ind = a["SpcIndirectDataContent"].load(raw)
                    digest_hex = ind["message_digest"]["digest"].native.hex().upper()
                    algorithm = ind["message_digest"]["digest_algorithm"]["algorithm"].native
                    if ind["data"]["type"].dotted == OID_SPC_PE_IMAGE_DATA:
                        kind = "pe"
        ident = subject["identifier"].native
        if digest_hex is None:  # fall back to the identifier (v1: hex text, v2: raw hash)
            digest_hex = _from_utf16z(ident) if alg_oid == OID_CATALOG_V1 else ident.hex().upper()
        key = name or digest_hex
        members[key] = CatalogMember(file_name=key, hash_hex=digest_hex.upper(), algorithm=algorithm, kind=kind)
    os_name = None
    for ext in ctl["extensions"] or []:
        if ext["extn_id"].dotted == OID_NAMEVALUE:
            nv = a["NameValue"].load(ext["extn_value"].native)
            if nv["name"].native == "OS":
                os_name = _from_utf16z(nv["value"].native)
    signer_infos = signed["signer_infos"]
    cat = Catalog(
        members=members,
        signed=len(signer_infos) > 0,
        os_name=os_name,
        this_update=ctl["this_update"].native,
        hash_algorithm="sha1" if alg_oid == OID_CATALOG_V1 else "sha256",
    )
    certs = [c.chosen for c in (signed["certificates"] or []) if c.name == "certificate"]
    cat.signer_certificates = [c.dump() for c in certs]
    if cat.signed:
        sid = signer_infos[0]["sid"]
        if sid.name == "issuer_and_serial_number":
            serial = sid.chosen["serial_number"].native
            cat.signer_serial = serial
            for cert in certs:
                if cert.serial_number == serial and cert.issuer == sid.chosen["issuer"]:
                    cat.signer_subject = cert.subject.human_friendly
    return cat
