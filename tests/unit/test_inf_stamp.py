"""Built-in stamping (what stampinf does) and the primitive-driver lint."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from driverpipe.core.errors import ConfigError
from driverpipe.image import inf
from fakes_build.crate import INX, inx_bytes

DAY = dt.date(2026, 3, 7)


def stamped(text: str = INX, **kw: object) -> str:
    args: dict[str, object] = {"arch": "amd64", "catalog": "WazabiEDR_Driver.cat", "date": DAY, "version": "0.1.0.0", "kmdf": (1, 33)}
    args.update(kw)
    return inf.stamp_text(text, **args)  # type: ignore[arg-type]


def test_parse_is_tolerant_of_comments_quotes_continuations_and_repeats() -> None:
    text = (
        '; header comment\n[Version]\nSignature = "$WINDOWS NT$" ; trailing\n'
        'Provider = "a;b"\n[Strings]\nLong = "one \\\n two" ; c\n[version]\nClass = System\n'
    )
    doc = inf.parse(text)
    version = doc.section("VERSION")
    assert version is not None
    assert version.get("signature") == '"$WINDOWS NT$"'
    assert version.get("Provider") == '"a;b"'
    assert version.get("Class") == "System"  # repeated section merged
    strings = doc.section("Strings")
    assert strings is not None and strings.get("Long") == '"one two"'


def test_stamp_utf16le_keeps_bom_crlf_and_writes_driverver(tmp_path: Path) -> None:
    path = tmp_path / "x.inf"
    path.write_bytes(inx_bytes())
    inf.stamp_file(path, arch="amd64", catalog="WazabiEDR_Driver.cat", date=DAY, version="0.1.0.0", kmdf=(1, 33))
    data = path.read_bytes()
    assert data.startswith(b"\xff\xfe")
    text = data[2:].decode("utf-16-le")
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
    assert "$ARCH$" not in text and "[DefaultInstall.NTamd64.Services]" in text
    assert "KMDF 1.33" in text
    version = inf.parse(text).section("Version")
    assert version is not None
    assert version.get("DriverVer") == "03/07/2026,0.1.0.0"
    assert version.get("CatalogFile") == "WazabiEDR_Driver.cat"
    assert "DriverVer = 03/07/2026,0.1.0.0\r\nCatalogFile = WazabiEDR_Driver.cat\r\n\r\n[DestinationDirs]" in text
    assert list(tmp_path.iterdir()) == [path]  # no temp file left


@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-8-sig"])
def test_other_encodings_round_trip(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "x.inf"
    raw = inx_bytes(encoding=encoding) if encoding != "utf-8-sig" else b"\xef\xbb\xbf" + INX.replace("\n", "\r\n").encode()
    path.write_bytes(raw)
    inf.stamp_file(path, arch="arm64", catalog="a.cat", date=DAY, version="1.2.3.4")
    enc = inf.decode(path.read_bytes())
    assert enc.bom and enc.encoding == {"utf-16-be": "utf-16-be", "utf-8-sig": "utf-8"}[encoding]
    assert "DriverVer = 03/07/2026,1.2.3.4" in enc.text and "NTarm64" in enc.text


def test_plain_utf8_without_bom_and_lf_stays_so() -> None:
    out = stamped(INX)
    assert "\r" not in out and out.endswith("\n")
    assert inf.encode(out, inf.decode(INX.encode())) == out.encode()


def test_existing_driverver_is_replaced_and_duplicates_dropped() -> None:
    text = '[Version]\nSignature="$WINDOWS NT$"\nDriverVer = 01/01/2020,1.0.0.0 ; old\nCatalogFile=old.cat\ndriverver=02/02/2020,\\\n 2.0.0.0\n[Next]\na=b\n'
    out = stamped(text)
    version = inf.parse(out).section("Version")
    assert version is not None
    assert [e.value for e in version.all("DriverVer")] == ["03/07/2026,0.1.0.0"]
    assert [e.value for e in version.all("CatalogFile")] == ["WazabiEDR_Driver.cat"]
    assert out.index("DriverVer") < out.index("CatalogFile") < out.index("[Next]")


def test_kmdf_coinstaller_version_and_missing_version_section() -> None:
    assert "01033" in stamped("[Version]\nSignature=x\n[X]\nv=$KMDFCOINSTALLERVERSION$\n")
    with pytest.raises(ConfigError, match=r"no \[Version\] section"):
        stamped("[Strings]\na=b\n")


def test_driver_ver_format_and_version_checks() -> None:
    assert inf.driver_ver(dt.date(2026, 1, 2), "10.0.00.1") == "01/02/2026,10.0.0.1"
    for bad in ("1.2.3", "1.2.3.70000", "a.b.c.d"):
        with pytest.raises(ConfigError):
            inf.check_version(bad)
    assert inf.parse_stampinf_date("12/31/2025") == dt.date(2025, 12, 31)
    with pytest.raises(ConfigError, match="STAMPINF_DATE"):
        inf.parse_stampinf_date("2025-12-31")


def test_decode_rejects_bomless_utf16_and_garbage() -> None:
    with pytest.raises(ConfigError, match="UTF-16 without a byte-order mark"):
        inf.decode("[Version]\r\n".encode("utf-16-le"))
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        inf.decode(b"[Version]\n\xff\xfe\xfd")


def test_lint_accepts_the_stamped_primitive_inf_and_the_template() -> None:
    assert inf.lint(stamped()) == []
    assert inf.lint(INX, stamped=False) == []
    assert {p.rule for p in inf.lint(INX)} == {"catalog-file", "driver-ver"}


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("[Strings]", "[Manufacturer]\n%P%=Std,NT$ARCH$\n[Strings]\nP=x", "manufacturer"),
        ("[DefaultInstall.NT$ARCH$]", "[DefaultInstall]", "default-install"),
        ("[DefaultInstall.NT$ARCH$.Services]", "[Other]", "services"),
        ("AddService = WazabiEDR", "Foo = WazabiEDR", "add-service"),
        ("WazabiEDR,0x00000800,WazabiEDR_Service_Install", "WazabiEDR,0x00000800,Nope", "add-service"),
        ("ServiceType    = 1", "ServiceType    = 2", "service-values"),
        ("StartType      = 3", "StartType      = 1", "service-values"),
        ("ErrorControl   = 1", "ErrorControl   = 0", "service-values"),
        ("ServiceBinary  = %13%", "ServiceBinary  = %12%", "service-values"),
        ("DisplayName    = %ServiceDesc%", "DisplayName    = %NoSuchString%", "strings"),
        ("Provider    = %ProviderString%\n", "", "version"),
        ("[Strings]", "[DefaultUninstall]\nDelFiles=x\n[Strings]", "default-uninstall"),
    ],
)
def test_lint_rules(old: str, new: str, rule: str) -> None:
    assert old in INX
    problems = inf.lint(stamped(INX.replace(old, new, 1)))
    assert rule in {p.rule for p in problems}, problems
    assert all(str(p) for p in problems)


def test_legacy_uninstall_is_allowed_and_catalog_files_listed() -> None:
    text = INX.replace("[Strings]", "[DefaultUninstall.NT$ARCH$]\n[DefaultUninstall]\nLegacyUninstall=1\n[Strings]")
    assert inf.lint(stamped(text)) == []
    assert inf.catalog_files(INX) == ["WazabiEDR_Driver.sys"]
