"""The Windows signing flow with FAKE signtool/powershell executables on PATH that assert their exact argv.

Nothing here runs a Windows tool: the fakes check the command line the pipeline
builds, write what the real tool would (the exported .cer) and print real
signtool output from the shared corpus.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import EnvironmentProblem
from driverpipe.image import wdk
from driverpipe.parse.psgrammar import check_bound_params
from driverpipe.parse.signtool_output import parse_verify
from driverpipe.signing import certs, sign, verify
from pe_image import SAMPLE_INF, write_pe

NAME = "WazabiEDR_Driver"

FAKE = """\
#!{python}
# Fake {tool}: the next expected argv must match exactly; records every call.
import json, os, sys
from pathlib import Path
state = Path(os.environ["FAKE_STATE"])
calls = state / "calls.jsonl"
with calls.open("a") as fh:
    fh.write(json.dumps(["{tool}", *sys.argv[1:]]) + "\\n")
queue_file = state / "expect.json"
queue = json.loads(queue_file.read_text())
if not queue:
    sys.exit("fake {tool}: unexpected extra call " + " ".join(sys.argv[1:]))
want = queue.pop(0)
queue_file.write_text(json.dumps(queue))
if want["argv"] != ["{tool}", *sys.argv[1:]]:
    sys.stderr.write("fake {tool}: argv mismatch: got " + json.dumps(sys.argv[1:]) + " want " + json.dumps(want["argv"][1:]) + "\\n")
    sys.exit(97)
if want.get("write"):
    dest, src = want["write"]
    Path(dest).write_bytes(Path(src).read_bytes())
if want.get("stdout_file"):
    sys.stdout.write(Path(want["stdout_file"]).read_text())
sys.stdout.write(want.get("stdout", ""))
sys.exit(want.get("rc", 0))
"""


class Fakes:
    def __init__(self, root: Path):
        self.bin = root / "fakebin"
        self.state = root / "fakestate"
        self.bin.mkdir()
        self.state.mkdir()
        self.expected: list[dict[str, object]] = []
        for tool in ("signtool", "powershell"):
            path = self.bin / tool
            path.write_text(FAKE.format(python=sys.executable, tool=tool))
            path.chmod(0o755)
        self.flush()

    def expect(self, *argv: str | Path, **extra: object) -> None:
        self.expected.append({"argv": [str(a) for a in argv], **extra})
        self.flush()

    def flush(self) -> None:
        (self.state / "expect.json").write_text(json.dumps(self.expected))

    def calls(self) -> list[list[str]]:
        log = self.state / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def remaining(self) -> list[object]:
        return list(json.loads((self.state / "expect.json").read_text()))


@pytest.fixture
def win(project: Path, monkeypatch: pytest.MonkeyPatch) -> Fakes:
    fakes = Fakes(project)
    monkeypatch.setenv("FAKE_STATE", str(fakes.state))
    monkeypatch.setenv("PATH", str(fakes.bin))  # only the fakes: no real osslsigncode/inf2cat
    monkeypatch.setattr(wdk, "host_is_windows", lambda: True)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    for var in ("WDKContentRoot", "MicrosoftKitRoot", "DRIVERPIPE_PFX_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    return fakes


def _ctx(project: Path, *, dry: bool = False) -> tuple[RunContext, list[str]]:
    out: list[str] = []
    return RunContext(config=load(project), dry=dry, echo=out.append, progress=out.append), out


def _package(project: Path) -> Path:
    pkg = project / "pkg"
    pkg.mkdir()
    write_pe(pkg / f"{NAME}.sys")
    (pkg / f"{NAME}.inf").write_text(SAMPLE_INF, encoding="utf-8")
    return pkg


def _store_cert_der(path: Path) -> str:
    """What New-TestSigningCert.ps1 would export: a valid self-signed code-signing .cer. Returns its thumbprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name.from_rfc4514_string("CN=WazabiEDR Test Signing")
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def test_store_flow_exact_argv(win: Fakes, project: Path, monkeypatch: pytest.MonkeyPatch, corpus: Path) -> None:
    pkg = _package(project)
    made_cer = project / "made.cer"
    thumb = _store_cert_der(made_cer)
    cer = project / "data" / "driverpipe" / "certs" / "WazabiEDR_Test_Signing.cer"
    cer.parent.mkdir(parents=True)
    params = {"Subject": "CN=WazabiEDR Test Signing", "StoreName": "WDRTestCertStore", "CerPath": str(cer), "ValidDays": 730}
    assert check_bound_params(certs.PS_SCRIPT, params) == []
    win.expect(
        "powershell",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-File",
        certs.PS_SCRIPT,
        "-Subject",
        "CN=WazabiEDR Test Signing",
        "-StoreName",
        "WDRTestCertStore",
        "-CerPath",
        cer,
        "-ValidDays",
        "730",
        write=[str(cer), str(made_cer)],
        stdout=json.dumps({"thumbprint": thumb, "created": True}) + "\n",
    )
    store = ["/s", "WDRTestCertStore", "/n", "WazabiEDR Test Signing"]
    win.expect("signtool", "sign", "/v", "/fd", "sha256", "/ph", *store, "/d", "WazabiEDR test driver", pkg / f"{NAME}.sys")
    win.expect("signtool", "sign", "/v", "/fd", "sha256", *store, "/d", "WazabiEDR test driver", pkg / f"{NAME}.cat")
    ok = str(corpus / "signtool" / "nuxeo_verify_pa_v_msi_timestamped_indented.txt")
    win.expect("signtool", "verify", "/v", "/pa", pkg / f"{NAME}.sys", stdout_file=ok)
    win.expect("signtool", "verify", "/v", "/pa", "/c", pkg / f"{NAME}.cat", pkg / f"{NAME}.sys", stdout_file=ok)
    # The fake signtool does not really sign: our own (tool-independent) checks are covered by the osslsigncode tests.
    monkeypatch.setattr(verify, "_problems_pe", lambda path, der: [])
    monkeypatch.setattr(verify, "_problems_catalog", lambda cat, s, i, der, sys_changed=False: [])

    ctx, _ = _ctx(project)
    backend, cert = sign.prepare(ctx, new_cert=False)
    assert backend.name == "signtool" and cert.store == "WDRTestCertStore" and cert.thumbprint == thumb
    result = sign.sign_package(ctx, pkg, NAME, backend=backend, cert=cert)
    assert win.remaining() == [], f"calls not made: {win.remaining()}"
    assert result.backend == "signtool"
    assert (pkg / "WazabiEDR_Test_Signing.cer").read_bytes() == made_cer.read_bytes()
    assert (pkg / f"{NAME}.cat").is_file()  # no inf2cat here: the built-in writer made it
    signed = sign.check_signed_dir(pkg, NAME)
    assert [p.name for p in signed.files] == [f"{NAME}.sys", f"{NAME}.inf", f"{NAME}.cat", "WazabiEDR_Test_Signing.cer"]
    assert json.loads((pkg / sign.MANIFEST).read_text())["cert"]["thumbprint_sha1"] == thumb


def test_rotation_passes_rotate_switch(win: Fakes, project: Path) -> None:
    made_cer = project / "made.cer"
    thumb = _store_cert_der(made_cer)
    cer = project / "data" / "driverpipe" / "certs" / "WazabiEDR_Test_Signing.cer"
    win.expect(
        "powershell",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-File",
        certs.PS_SCRIPT,
        "-Subject",
        "CN=WazabiEDR Test Signing",
        "-StoreName",
        "WDRTestCertStore",
        "-CerPath",
        cer,
        "-ValidDays",
        "730",
        "-Rotate",
        write=[str(cer), str(made_cer)],
        stdout=json.dumps({"thumbprint": thumb, "created": True}) + "\n",
    )
    cer.parent.mkdir(parents=True)
    ctx, _ = _ctx(project)
    cert = certs.ensure_test_cert(ctx, rotate=True, store_based=True)
    assert cert.created and cert.thumbprint == thumb and win.remaining() == []


def test_pfx_flow_dry_hides_password_and_adds_timestamp(win: Fakes, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIVERPIPE_SIGN_CERT_STORE", "")  # empty store: sign with the PFX file
    monkeypatch.setenv("DRIVERPIPE_SIGN_TIMESTAMP_URL", "http://timestamp.example.test")
    monkeypatch.setenv("DRIVERPIPE_PFX_PASSWORD", "s3cret-pfx-pass")
    pkg = _package(project)
    before = sorted(p.name for p in pkg.iterdir())
    ctx, out = _ctx(project, dry=True)
    backend, cert = sign.prepare(ctx, new_cert=False)
    assert cert.store is None and cert.pfx is not None
    sign.sign_package(ctx, pkg, NAME, backend=backend, cert=cert)
    text = "\n".join(out)
    signing = cert.key.with_name(f".{cert.key.stem}.{os.getpid()}.signing.pfx") if cert.key else None
    assert f"/f {signing} /tr http://timestamp.example.test /td sha256" in text, text
    assert "/p" not in text.split(), "no password on signtool's command line"
    assert "s3cret-pfx-pass" not in text
    assert win.calls() == []  # --dry runs nothing
    assert sorted(p.name for p in pkg.iterdir()) == before
    assert not (project / "data").exists()


def test_signtool_verify_verdicts(win: Fakes, project: Path, corpus: Path) -> None:
    pkg = _package(project)
    sys_, cat = pkg / f"{NAME}.sys", pkg / f"{NAME}.cat"
    untrusted = (
        "SignTool Error: A certificate chain processed, but terminated in a root\n"
        "        certificate which is not trusted by the trust provider.\n\nNumber of errors: 1\n"
    )
    win.expect("signtool", "verify", "/v", "/pa", sys_, stdout="Verifying: x\n" + untrusted, rc=1)
    win.expect("signtool", "verify", "/v", "/pa", "/c", cat, sys_, stdout="SignTool Error: No signature found.\nNumber of errors: 1\n", rc=1)
    ctx, out = _ctx(project)
    problems = verify._signtool_problems(ctx, win.bin / "signtool", sys_, cat)
    assert problems == [f"{NAME}.cat for {NAME}.sys: signtool verify failed: No signature found."]
    assert any("not trusted on this host (expected" in line for line in out)


@pytest.mark.parametrize(
    "name",
    [
        "msdocs_verify_kp_v_catalog_cross_certificate_chain.txt",
        "msdocs_verify_kp_v_sys_joined_lines_artifact.txt",
        "nuxeo_verify_pa_v_msi_timestamped_indented.txt",
    ],
)
def test_signtool_output_parser_reads_the_corpus(corpus: Path, name: str) -> None:
    result = parse_verify((corpus / "signtool" / name).read_text(encoding="utf-8"))
    assert result.ok and result.errors == 0 and result.files_verified == 1
    assert len(result.signing_chain) == 3 and len(result.timestamp_chain) == 3
    assert all(c.issued_to and c.issued_by and c.expires and len(c.sha1) == 40 for c in result.signing_chain)
    if name.startswith("nuxeo"):
        assert result.verified == [r"dist\nuxeo-drive-1.3.0204-win32.msi"] and result.signer == "Nuxeo" and result.cross_chain == []
    else:
        assert result.signer == "Contoso, Inc"
        assert result.signing_chain[0].issued_to == "VeriSign Class 3 Public Primary Certification Authority - G5"
        assert result.cross_chain[0].issued_to == "Microsoft Code Verification Root"
        assert [c.issued_by for c in result.cross_chain][2] == "VeriSign Class 3 Public Primary Certification Authority - G5"  # double space
    if "catalog" in name:
        assert result.catalog == "toaster.cat" and result.verified == ["toaster.inf"]
    if "joined" in name:
        assert result.verifying == ["toaster.sys"] and result.file_hash == "CCF5F5C02FEDE87D92FCB7B536DBF5D5EFDB7B41"
        assert result.timestamped == "Mon Jan 27 14:48:55 2014"


def test_forced_backends_that_are_missing(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("DRIVERPIPE_SIGN_BACKEND", "osslsigncode")
    ctx, _ = _ctx(project)
    with pytest.raises(EnvironmentProblem, match="osslsigncode is not on PATH") as info:
        sign.choose_backend(ctx)
    assert "apt-get install osslsigncode" in (info.value.hint or "")
    monkeypatch.setenv("DRIVERPIPE_SIGN_BACKEND", "signtool")
    monkeypatch.setattr(wdk, "host_is_windows", lambda: False)
    with pytest.raises(EnvironmentProblem, match="signtool runs only on Windows"):
        sign.choose_backend(_ctx(project)[0])
    monkeypatch.setattr(wdk, "host_is_windows", lambda: True)
    with pytest.raises(EnvironmentProblem, match=r"signtool\.exe not found"):
        sign.choose_backend(_ctx(project)[0])


def test_auto_on_windows_falls_back_to_osslsigncode(win: Fakes, project: Path) -> None:
    (win.bin / "signtool").unlink()
    fake_ossl = win.bin / "osslsigncode"
    fake_ossl.write_text("#!/bin/sh\nexit 0\n")
    fake_ossl.chmod(0o755)
    assert sign.choose_backend(_ctx(project)[0]).name == "osslsigncode"


def test_missing_powershell_is_explained(win: Fakes, project: Path) -> None:
    (win.bin / "powershell").unlink()
    with pytest.raises(EnvironmentProblem, match=r"powershell\.exe not found") as info:
        certs.ensure_test_cert(_ctx(project)[0], store_based=True)
    assert 'cert_store = ""' in (info.value.hint or "")
    assert os.environ["PATH"] == str(win.bin)
