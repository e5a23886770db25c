"""The built-in catalog writer, read back independently with asn1crypto (no osslsigncode needed)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import cms, core, parser

from driverpipe.core.errors import CheckFailed, ConfigError
from driverpipe.image import catalog
from pe_image import SAMPLE_INF, write_pe

WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def members(tmp_path: Path) -> list[Path]:
    sys_ = write_pe(tmp_path / "WazabiEDR_Driver.sys")
    inf = tmp_path / "WazabiEDR_Driver.inf"
    inf.write_text(SAMPLE_INF, encoding="utf-8")
    return [sys_, inf]


def _ctl(der: bytes) -> core.Sequence:
    info = cms.ContentInfo.load(der)
    assert info["content_type"].native == "signed_data"
    signed = info["content"]
    assert signed["version"].native == "v1"
    assert len(signed["digest_algorithms"]) == 0 and len(signed["signer_infos"]) == 0
    encap = signed["encap_content_info"]
    assert encap["content_type"].dotted == catalog.OID_CTL
    raw = encap["content"].dump()
    inner = raw if raw[:1] == b"\x30" else parser.parse(raw)[4]
    return catalog._asn1()["CertificateTrustList"].load(inner)


def test_structure_read_back_with_asn1crypto(tmp_path: Path, members: list[Path]) -> None:
    import lief

    cat = tmp_path / "WazabiEDR_Driver.cat"
    catalog.write_catalog(cat, members, this_update=WHEN)
    ctl = _ctl(cat.read_bytes())
    assert [o.dotted for o in ctl["subject_usage"]] == [catalog.OID_CATALOG_LIST]
    assert len(ctl["list_identifier"].native) == 16
    assert ctl["this_update"].native == WHEN
    assert ctl["subject_algorithm"]["algorithm"].dotted == catalog.OID_CATALOG_V1
    ext = ctl["extensions"][0]
    assert ext["extn_id"].dotted == catalog.OID_NAMEVALUE
    os_nv = catalog._asn1()["NameValue"].load(ext["extn_value"].native)
    assert os_nv["name"].native == "OS" and os_nv["value"].native == "_v100_X64\0".encode("utf-16-le")

    pe_hash = bytes(lief.PE.parse(str(members[0])).authentihash(lief.PE.ALGORITHMS.SHA_1)).hex().upper()
    inf_hash = hashlib.sha1(members[1].read_bytes()).hexdigest().upper()
    subjects = list(ctl["trusted_subjects"])
    idents = [s["identifier"].native for s in subjects]
    assert idents == sorted(idents), "members must be sorted by identifier"
    assert {i.decode("utf-16-le").rstrip("\0") for i in idents} == {pe_hash, inf_hash}

    by_hash = {s["identifier"].native.decode("utf-16-le").rstrip("\0"): s for s in subjects}
    for digest, file_name, sip, data_oid in (
        (pe_hash, "WazabiEDR_Driver.sys", catalog.SIP_PE, catalog.OID_SPC_PE_IMAGE_DATA),
        (inf_hash, "WazabiEDR_Driver.inf", catalog.SIP_FLAT, catalog.OID_SPC_CAB_DATA),
    ):
        attrs = {}
        for attr in by_hash[digest]["attributes"]:
            attrs.setdefault(attr["type"].dotted, []).extend(v.dump() for v in attr["values"])
        a = catalog._asn1()
        names = {a["NameValue"].load(v)["name"].native: a["NameValue"].load(v)["value"].native for v in attrs[catalog.OID_NAMEVALUE]}
        assert names == {"File": f"{file_name}\0".encode("utf-16-le"), "OSAttr": "2:10.0\0".encode("utf-16-le")}
        info = a["MemberInfo"].load(attrs[catalog.OID_MEMBERINFO][0])
        assert info["sip_guid"].native == sip and info["cert_version"].native == 512
        ind = a["SpcIndirectDataContent"].load(attrs[catalog.OID_SPC_INDIRECT_DATA][0])
        assert ind["data"]["type"].dotted == data_oid
        assert ind["message_digest"]["digest_algorithm"]["algorithm"].native == "sha1"
        assert ind["message_digest"]["digest"].native.hex().upper() == digest


def test_read_catalog_api(tmp_path: Path, members: list[Path]) -> None:
    cat = tmp_path / "x.cat"
    catalog.write_catalog(cat, members, this_update=WHEN)
    got = catalog.read_catalog(cat)
    assert not got.signed and got.signer_subject is None
    assert got.os_name == "_v100_X64" and got.this_update == WHEN and got.hash_algorithm == "sha1"
    sys_member = got.member("wazabiedr_driver.SYS")
    assert sys_member is not None and sys_member.kind == "pe" and sys_member.algorithm == "sha1"
    inf_member = got.members["WazabiEDR_Driver.inf"]
    assert inf_member.kind == "flat" and inf_member.hash_hex == hashlib.sha1(members[1].read_bytes()).hexdigest().upper()


def test_deterministic_given_a_fixed_time(tmp_path: Path, members: list[Path]) -> None:
    a, b = tmp_path / "a.cat", tmp_path / "b.cat"
    catalog.write_catalog(a, members, this_update=WHEN)
    catalog.write_catalog(b, list(reversed(members)), this_update=WHEN)
    assert a.read_bytes() == b.read_bytes()
    members[1].write_text(SAMPLE_INF + "; changed\n", encoding="utf-8")
    catalog.write_catalog(b, members, this_update=WHEN)
    assert a.read_bytes() != b.read_bytes()


def test_sha256_members_v2(tmp_path: Path, members: list[Path]) -> None:
    cat = tmp_path / "v2.cat"
    catalog.write_catalog(cat, members, hash_algorithm="sha256", this_update=WHEN)
    ctl = _ctl(cat.read_bytes())
    assert ctl["subject_algorithm"]["algorithm"].dotted == catalog.OID_CATALOG_V2
    got = catalog.read_catalog(cat)
    inf = got.members["WazabiEDR_Driver.inf"]
    assert inf.algorithm == "sha256" and inf.hash_hex == hashlib.sha256(members[1].read_bytes()).hexdigest().upper()
    assert any(len(s["identifier"].native) == 32 for s in ctl["trusted_subjects"])


def test_missing_member_is_a_clear_error_and_writes_nothing(tmp_path: Path, members: list[Path]) -> None:
    cat = tmp_path / "x.cat"
    with pytest.raises(ConfigError, match="catalog member not found"):
        catalog.write_catalog(cat, [*members, tmp_path / "nope.sys"])
    assert not cat.exists() and not list(tmp_path.glob(".*tmp"))


def test_garbage_is_not_a_catalog(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cat"
    bad.write_bytes(b"\x30\x03\x02\x01\x01")
    with pytest.raises(CheckFailed, match=r"bad\.cat: not a valid catalog"):
        catalog.read_catalog(bad)
    with pytest.raises(CheckFailed, match="catalog not found"):
        catalog.read_catalog(tmp_path / "missing.cat")


def test_pe_generator_is_valid(tmp_path: Path) -> None:
    """The test image: lief parses it, native subsystem, checksum right, size not a multiple of 8."""
    import lief

    from pe_image import build_pe, pe_checksum

    data = build_pe()
    assert len(data) % 8 != 0
    path = tmp_path / "x.sys"
    path.write_bytes(data)
    binary = lief.PE.parse(str(path))
    assert binary.optional_header.subsystem == lief.PE.OptionalHeader.SUBSYSTEM.NATIVE
    assert binary.optional_header.checksum == binary.compute_checksum() == pe_checksum(data, 0x80 + 4 + 20 + 64)
    assert [s.name for s in binary.sections] == [".text", "INIT"]
    assert build_pe(marker=b"a") != build_pe(marker=b"b")
