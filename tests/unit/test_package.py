"""`invoke package`: built-in stamping + real catalog (Linux), fake WDK tools (Windows flow), skip logic."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from conftest import need_tool
from driverpipe.core.errors import ConfigError, EnvironmentProblem, StepFailed
from driverpipe.image import build, inf, package
from fakes_build.crate import INX, inx_bytes, write_crate
from fakes_build.ctx import make_ctx
from fakes_build.fake_tools import FakeBin
from fakes_build.pe import make_pe

NAME = "WazabiEDR_Driver"


@pytest.fixture
def built(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A crate, its .inx and a recorded build (--from a PE with .pdb), on a non-Windows host."""
    monkeypatch.setattr("driverpipe.image.wdk.host_is_windows", lambda: False)
    monkeypatch.setenv("STAMPINF_DATE", "03/07/2026")
    for var in ("WDKContentRoot", "MicrosoftKitRoot"):
        monkeypatch.delenv(var, raising=False)
    crate = write_crate(project)
    ci = project / "ci"
    ci.mkdir()
    (ci / f"{NAME}.dll").write_bytes(make_pe(payload=b"\x48\x31\xc0\xc3driver"))
    (ci / f"{NAME}.pdb").write_bytes(b"PDB")
    ctx, _ = make_ctx(project)
    build.run(ctx, from_path=ci / f"{NAME}.dll")
    return crate


def pkg_dir(crate: Path) -> Path:
    return crate / "target" / "release" / f"{NAME}_package"


def test_names_and_layout(built: Path, project: Path) -> None:
    ctx, lines = make_ctx(project)
    assert package.package_name(ctx) == NAME
    assert package.package_dir(ctx) == pkg_dir(built)
    result = package.run(ctx)
    pkg = pkg_dir(built)
    assert sorted(p.name for p in pkg.iterdir()) == [".driverpipe-package.json", f"{NAME}.cat", f"{NAME}.inf", f"{NAME}.pdb", f"{NAME}.sys"]
    assert (pkg / f"{NAME}.sys").read_bytes() == (project / "ci" / f"{NAME}.dll").read_bytes()
    assert result.members == [pkg / f"{NAME}.inf", pkg / f"{NAME}.sys"] and not result.skipped
    enc = inf.decode((pkg / f"{NAME}.inf").read_bytes())
    assert enc.encoding == "utf-16-le" and enc.bom and "\r\n" in enc.text
    version = inf.parse(enc.text).section("Version")
    assert version is not None
    assert version.get("DriverVer") == "03/07/2026,0.1.0.0" and version.get("CatalogFile") == f"{NAME}.cat"
    assert "[DefaultInstall.NTamd64]" in enc.text and "$" not in enc.text.replace("$WINDOWS NT$", "")
    assert any("invoke sign" in line for line in lines)
    assert not list(pkg.parent.glob(".*staging*"))


def test_catalog_read_back_with_asn1crypto(built: Path, project: Path) -> None:
    from asn1crypto import cms

    ctx, _ = make_ctx(project)
    package.run(ctx)
    pkg = pkg_dir(built)
    info = cms.ContentInfo.load((pkg / f"{NAME}.cat").read_bytes())
    assert info["content_type"].native == "signed_data"
    encap = info["content"]["encap_content_info"]
    assert encap["content_type"].dotted == "1.3.6.1.4.1.311.10.1"  # certificate trust list
    body = encap["content"].contents
    # Members are found by name (UTF-16LE) and by hash: whole-file SHA-1 for the INF, Authenticode for the .sys.
    for member in (f"{NAME}.inf", f"{NAME}.sys"):
        assert member.encode("utf-16-le") in body
    assert hashlib.sha1((pkg / f"{NAME}.inf").read_bytes()).digest() in body
    import lief

    authenticode = lief.PE.parse(str(pkg / f"{NAME}.sys")).authentihash(lief.PE.ALGORITHMS.SHA_1)
    assert bytes(authenticode) in body
    assert "_v100_X64".encode("utf-16-le") in body


@pytest.mark.osslsigncode
def test_catalog_verifies_with_osslsigncode_after_signing(built: Path, project: Path, tmp_path: Path) -> None:
    tool = need_tool("osslsigncode")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ctx, _ = make_ctx(project)
    package.run(ctx)
    pkg = pkg_dir(built)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driverpipe test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(key, hashes.SHA256())
    )
    crt, pem = tmp_path / "t.crt", tmp_path / "t.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    signed = tmp_path / "signed.cat"
    sign = subprocess.run(
        [tool, "sign", "-certs", crt, "-key", pem, "-h", "sha256", "-in", pkg / f"{NAME}.cat", "-out", signed], capture_output=True, text=True
    )
    assert sign.returncode == 0, sign.stdout + sign.stderr
    # osslsigncode 2.9 cannot take an .inf as -in ("unsupported input file type"); the INF's
    # membership is checked by hash in the asn1crypto test above.
    for member in (f"{NAME}.sys",):
        verify = subprocess.run([tool, "verify", "-CAfile", crt, "-catalog", signed, "-in", pkg / member], capture_output=True, text=True)
        assert verify.returncode == 0, member + ": " + verify.stdout + verify.stderr
    (pkg / f"{NAME}.sys").write_bytes(make_pe(payload=b"tampered"))
    verify = subprocess.run([tool, "verify", "-CAfile", crt, "-catalog", signed, "-in", pkg / f"{NAME}.sys"], capture_output=True, text=True)
    assert verify.returncode != 0


def test_unchanged_inputs_are_skipped_and_changes_rerun(built: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import driverpipe.image.catalog as catalog

    calls: list[list[str]] = []
    real = catalog.write_catalog

    def counting(cat_path: Path, members: list[Path], **kw: str) -> None:
        calls.append([m.name for m in members])
        real(cat_path, members, **kw)

    monkeypatch.setattr(catalog, "write_catalog", counting)
    ctx, lines = make_ctx(project)
    package.run(ctx)
    assert package.run(ctx).skipped and len(calls) == 1
    assert any("package up to date" in line for line in lines)
    inx = project / "inf" / f"{NAME}.inx"
    inx.write_bytes(inx_bytes(INX.replace("WazabiEDR kernel driver", "WazabiEDR driver")))
    assert not package.run(ctx).skipped and len(calls) == 2
    ctx2, _ = make_ctx(project, flags={"build.driver_version": "2.0.0.1"})
    assert not package.run(ctx2).skipped and len(calls) == 3
    assert "2.0.0.1" in inf.decode((pkg_dir(built) / f"{NAME}.inf").read_bytes()).text
    (pkg_dir(built) / f"{NAME}.cat").unlink()  # a missing output means not up to date
    assert not package.run(ctx2).skipped and len(calls) == 4


def test_lint_failure_leaves_no_package(built: Path, project: Path) -> None:
    (project / "inf" / f"{NAME}.inx").write_bytes(inx_bytes(INX.replace("[Strings]", "[Manufacturer]\n%P%=Std,NT$ARCH$\n[Strings]\nP=x")))
    ctx, _ = make_ctx(project)
    with pytest.raises(ConfigError, match=r"\[Manufacturer\] found") as exc:
        package.run(ctx)
    assert "inf/WazabiEDR_Driver.inx: line" in exc.value.message
    assert not pkg_dir(built).exists() and not list(pkg_dir(built).parent.glob(".*staging*"))


def test_inf_naming_another_driver_file(built: Path, project: Path) -> None:
    (project / "inf" / f"{NAME}.inx").write_bytes(inx_bytes(INX.replace("WazabiEDR_Driver.sys = 1,,", "WazabiEDR.sys = 1,,")))
    ctx, _ = make_ctx(project)
    # The package names the driver after [SourceDisksFiles]; a ServiceBinary naming another file is refused.
    with pytest.raises(ConfigError, match=r"ServiceBinary names WazabiEDR_Driver\.sys, which \[SourceDisksFiles\] does not list"):
        package.run(ctx)


def test_requires_a_build_and_an_unchanged_artifact(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("driverpipe.image.wdk.host_is_windows", lambda: False)
    write_crate(project)
    ctx, _ = make_ctx(project)
    with pytest.raises(EnvironmentProblem, match="no build output"):
        package.run(ctx)


def test_dry_without_a_build_shows_the_plan(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("driverpipe.image.wdk.host_is_windows", lambda: False)
    crate = write_crate(project)
    ctx, lines = make_ctx(project, dry=True)
    assert package.run(ctx).dry
    assert any("would stamp" in line for line in lines) and any("unsigned catalog" in line for line in lines)
    assert not (crate / "target").exists()


# ----------------------------------------------------------------------------- Windows flow (fake WDK tools)


@pytest.fixture
def wdk_tools(built: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeBin, Path]:
    monkeypatch.setattr("driverpipe.image.wdk.host_is_windows", lambda: True)
    fakes = FakeBin(project / "fakebin")
    monkeypatch.setenv("PATH", fakes.path_env())
    staging = pkg_dir(built).with_name(f".{NAME}_package.staging")
    return fakes, staging


def add_good_tools(fakes: FakeBin, staging: Path, *, infverif_rc: int = 0, infverif_out: str = "", inf2cat_rc: int = 0, inf2cat_out: str = "") -> None:
    inf_path = staging / f"{NAME}.inf"
    u16 = "utf-16-le"
    fakes.add(
        "stampinf",
        argv=["-f", str(inf_path), "-d", "*", "-a", "amd64", "-c", f"{NAME}.cat", "-v", "0.1.0.0", "-k", "1.33"],
        stdout=f"Stamping {inf_path} [Version] section with DriverVer=03/07/2026,0.1.0.0\n",
        replace={
            inf_path: ("$ARCH$".encode(u16), "amd64".encode(u16)),
        },
    )
    fakes.add(
        "inf2cat",
        argv=[f"/driver:{staging}", "/os:10_X64", "/uselocaltime"],
        stdout=inf2cat_out or "......................\nSignability test complete.\n\nErrors:\nNone\n\nWarnings:\nNone\n\nCatalog generation complete.\n",
        rc=inf2cat_rc,
        write={} if inf2cat_rc else {staging / f"{NAME}.cat": b"0\x82CAT"},
    )
    fakes.add("infverif", argv=["/v", "/w", str(inf_path)], stdout=infverif_out or "INF is VALID\n", rc=infverif_rc)


def test_windows_flow_runs_the_wdk_tools_with_exact_arguments(wdk_tools: tuple[FakeBin, Path], built: Path, project: Path) -> None:
    fakes, staging = wdk_tools
    add_good_tools(fakes, staging)
    ctx, _ = make_ctx(project)
    result = package.run(ctx)
    assert [c["tool"] for c in fakes.calls()] == ["stampinf", "inf2cat", "infverif"]
    assert result.flow == "wdk" and (pkg_dir(built) / f"{NAME}.cat").read_bytes() == b"0\x82CAT"
    assert "amd64" in inf.decode((pkg_dir(built) / f"{NAME}.inf").read_bytes()).text
    stamp = json.loads((pkg_dir(built) / ".driverpipe-package.json").read_text())
    assert stamp["settings"]["flow"] == "wdk" and stamp["settings"]["kmdf"] == [1, 33]
    assert package.run(ctx).skipped and len(fakes.calls()) == 3


def test_windows_flow_dry_prints_the_commands(wdk_tools: tuple[FakeBin, Path], project: Path) -> None:
    fakes, staging = wdk_tools
    add_good_tools(fakes, staging)
    ctx, lines = make_ctx(project, dry=True)
    package.run(ctx)
    assert fakes.calls() == []
    text = "\n".join(lines)
    assert "stampinf -f" in text and "-k 1.33" in text and "/os:10_X64 /uselocaltime" in text and "infverif /v /w" in text


@pytest.mark.parametrize(
    ("code", "hint"),
    [("1297", "primitive driver INF"), ("1212", "drop [Manufacturer]"), ("1233", "CatalogFile"), ("1000", "see infverif's output")],
)
def test_infverif_failures_are_mapped(wdk_tools: tuple[FakeBin, Path], built: Path, project: Path, code: str, hint: str) -> None:
    fakes, staging = wdk_tools
    add_good_tools(fakes, staging, infverif_rc=1, infverif_out=f"ERROR({code}) in {staging}\\{NAME}.inf, line 12: something\n")
    ctx, _ = make_ctx(project)
    with pytest.raises(StepFailed, match=f"ERROR\\({code}\\)") as exc:
        package.run(ctx)
    assert hint in (exc.value.hint or "")
    assert not pkg_dir(built).exists() and not staging.exists()


def test_inf2cat_future_driverver(wdk_tools: tuple[FakeBin, Path], project: Path) -> None:
    fakes, staging = wdk_tools
    out = (
        "Signability test failed.\n\nErrors:\n"
        "22.9.7: DriverVer set to a date in the future (postdated DriverVer not allowed) in \\wazabiedr_driver.inf.\n\nWarnings:\nNone\n"
    )
    add_good_tools(fakes, staging, inf2cat_rc=-2, inf2cat_out=out)
    ctx, _ = make_ctx(project)
    with pytest.raises(StepFailed, match=r"inf2cat failed .*22\.9\.7") as exc:
        package.run(ctx)
    assert "clock" in (exc.value.hint or "")
