"""The main job as a user runs it on Linux against a remote guest: `invoke build sign deploy`.

Real: Invoke, the WDM image built by cargo + rust-lld, INF stamping, the
built-in catalog, osslsigncode signing and verification. The deploy stops at
the WinRM boundary (nothing listens on loopback here), which must be one clear
line with exit 3.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import need, need_tool, run_invoke
from sshd_server import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.osslsigncode, pytest.mark.wdm, pytest.mark.cargo]


@pytest.fixture
def checkout(project: Path) -> Path:
    shutil.copytree(REPO / "driver", project / "driver", ignore=shutil.ignore_patterns("target"))
    shutil.copytree(REPO / "inf", project / "inf")
    (project / "user-config.toml").write_text(
        f'[targets.win11]\nhost = "127.0.0.1"\nport = {free_port()}\nuser = "Administrator"\npassword_env = "WIN11_PW"\ntest_machine = true\n'
        "[targets.win11.winrm]\nconnection_timeout = 3\n",
        encoding="utf-8",
    )
    return project


def invoke(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_invoke(cwd, *args, env=env, timeout=300)


def test_build_sign_then_deploy_to_an_unreachable_guest(checkout: Path, tmp_path: Path) -> None:
    need_tool("osslsigncode")
    from driverpipe.image.build import target_std_installed

    need(target_std_installed("x86_64-pc-windows-msvc"), "rustup target add x86_64-pc-windows-msvc")
    env = dict(os.environ, WIN11_PW="Hunter2-secret", DRIVERPIPE_PFX_PASSWORD="pfx-Secret-42")

    dry = invoke(checkout, "--dry", "build", "sign", "deploy", "--target", "win11", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "Get-GuestState.ps1" in dry.stdout and "Invoke-DriverLoad.ps1" in dry.stdout
    assert "Hunter2-secret" not in dry.stdout + dry.stderr and "pfx-Secret-42" not in dry.stdout + dry.stderr
    assert not (checkout / "driver" / "target").exists(), "--dry must write nothing"

    done = invoke(checkout, "build", "sign", "deploy", "--target", "win11", env=env)
    pkg = checkout / "driver" / "target" / "release" / "WazabiEDR_Driver_package"
    assert {p.name for p in pkg.iterdir()} >= {"WazabiEDR_Driver.sys", "WazabiEDR_Driver.inf", "WazabiEDR_Driver.cat", "driverpipe-sign.json"}
    # osslsigncode wants the CA file as PEM; the .cer shipped to the guest is DER.
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = tmp_path / "cert.pem"
    pem.write_bytes(x509.load_der_x509_certificate(next(pkg.glob("*.cer")).read_bytes()).public_bytes(Encoding.PEM))
    verify = subprocess.run(
        ["osslsigncode", "verify", "-CAfile", str(pem), "-in", str(pkg / "WazabiEDR_Driver.sys")], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert done.returncode == 3, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "connection refused" in errors[0]
    assert "Traceback" not in done.stderr
    assert "Hunter2-secret" not in done.stdout + done.stderr and "pfx-Secret-42" not in done.stdout + done.stderr

    again = invoke(checkout, "sign", env=env)
    assert again.returncode == 0, again.stderr
    tampered = pkg / "WazabiEDR_Driver.sys"
    data = bytearray(tampered.read_bytes())
    data[0x200] ^= 0xFF
    tampered.write_bytes(bytes(data))
    refused = invoke(checkout, "deploy", "--target", "win11", env=env)
    assert refused.returncode == 1, refused.stderr
    assert "WazabiEDR_Driver.sys" in refused.stderr and "invoke sign" in refused.stderr
