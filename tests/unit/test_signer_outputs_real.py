"""The osslsigncode verify reader against the real tool: a PE signed with a fresh test certificate,
verified with and without trusting it, and after one byte changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import need_tool
from driverpipe.parse.signers import parse_osslsigncode_verify
from driverpipe.signing.certs import _new_key_and_cert
from pe_image import write_pe

SUBJECT = "CN=WazabiEDR Test Signing"


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, Path]:
    tool = need_tool("osslsigncode")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key_pem, cert_der = _new_key_and_cert(SUBJECT)
    crt, key = tmp_path / "t.crt", tmp_path / "t.key"
    crt.write_bytes(x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM))
    key.write_bytes(key_pem)
    out = tmp_path / "signed.sys"
    done = subprocess.run(
        [tool, "sign", "-certs", crt, "-key", key, "-h", "sha256", "-in", write_pe(tmp_path / "a.sys"), "-out", out], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return tool, out, crt


def _verify(tool: Path, *args: object) -> tuple[int, str]:
    done = subprocess.run([tool, "verify", *args], capture_output=True)
    return done.returncode, (done.stdout + b"\n" + done.stderr).decode("utf-8", "replace")


@pytest.mark.osslsigncode
def test_real_osslsigncode_verdicts_and_signer(signed: tuple[Path, Path, Path]) -> None:
    tool, sys_, crt = signed
    rc, out = _verify(tool, "-CAfile", crt, "-in", sys_)
    r = parse_osslsigncode_verify(out)
    assert rc == 0 and r.ok and r.signer == "WazabiEDR Test Signing", out
    # The same reading of its UTF-16 form (a Windows console redirect) and through a CRLF copy.
    assert parse_osslsigncode_verify(out.replace("\n", "\r\n").encode("utf-16-le").decode("latin-1")).ok
    rc, out = _verify(tool, "-in", sys_)  # the self-signed certificate is not trusted
    assert rc != 0 and not parse_osslsigncode_verify(out).ok, out
    data = bytearray(sys_.read_bytes())
    data[0x200] ^= 0xFF  # inside the signed image: the digest no longer matches
    sys_.write_bytes(bytes(data))
    rc, out = _verify(tool, "-CAfile", crt, "-in", sys_)
    r = parse_osslsigncode_verify(out)
    assert rc != 0 and not r.ok, out
