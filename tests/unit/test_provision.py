"""`invoke provision` against the fake Windows guest: first run changes and reboots, second run is a no-op.

The fakes of Get-WinRMListener.ps1 and Set-TestGuestBaseline.ps1 live here; the
guest's other scripts use tests/fakes. FakeGuest checks every bound parameter
against the real shipped .ps1 (psgrammar.check_bound_params). Nothing here ran
against real Windows.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import CheckFailed, ConfigError, EnvironmentProblem, StepFailed
from driverpipe.core.scripts import script_path
from driverpipe.parse.psgrammar import check_bound_params
from driverpipe.targets import provision
from fakes.guest import DEBUG_FILTER_KEY, FakeGuest, FakeWindows, handler

CRASH_KEY = r"HKLM\SYSTEM\CurrentControlSet\Control\CrashControl"
WINLOGON_KEY = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon"
DUMP_CODES = {"none": 0, "complete": 1, "kernel": 2, "small": 3, "automatic": 7, "active": 1}


# --- fakes of this module's guest scripts (same output shape as the .ps1) --------------------------


@handler("Test-Elevation.ps1")
def _test_elevation(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    return {"elevated": m.elevated, "user": "DRV-TEST\\driverpipe"}


@handler("Get-WinRMListener.ps1")
def _get_listener(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    https = getattr(m, "winrm_https", None)
    listeners = [{"transport": "HTTP", "port": 5985, "address": "*", "hostname": "", "enabled": "true", "thumbprint": ""}]
    if https:
        listeners.append(
            {"transport": "HTTPS", "port": p.get("Port", 5986), "address": "*", "hostname": "drv-test", "enabled": "true", "thumbprint": https["thumbprint"]}
        )
    return {"computer": "DRV-TEST", "listeners": listeners, "https": https, "error": ""}


@handler("Set-TestGuestBaseline.ps1")
def _baseline(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    check = bool(p.get("CheckOnly"))
    changed: list[str] = []
    reboot = False
    wanted: list[tuple[str, str, Any, bool]] = [
        (CRASH_KEY, "CrashDumpEnabled", DUMP_CODES[p.get("CrashDump", "automatic")], True),
        (CRASH_KEY, "AutoReboot", int(p.get("AutoReboot", True)), True),
        (CRASH_KEY, "LogEvent", 1, True),
        (CRASH_KEY, "NMICrashDump", 1, True),
        (CRASH_KEY, "Overwrite", 1, False),
    ]
    if p.get("DisableAutoLogon", True):
        wanted.append((WINLOGON_KEY, "AutoAdminLogon", "0", False))
    for key, name, value, needs_reboot in wanted:
        if m.reg_get(key, name) != value:
            if not check:
                m.reg_set(key, name, value)
            changed.append(name)
            reboot = reboot or needs_reboot
    if p.get("DisableAutoLogon", True) and m.reg_get(WINLOGON_KEY, "DefaultPassword") is not None:
        if not check:
            m.reg_key(WINLOGON_KEY).pop("DefaultPassword")  # type: ignore[union-attr]
        changed.append("default_password_removed")
    return {
        "changed": changed,
        "already": [],
        "reboot_required": reboot,
        "check_only": check,
        "crash_dump": p.get("CrashDump", "automatic"),
        "debugview_present": p.get("DebugViewPath", "C:\\Tools\\Dbgview.exe") in m.files,
    }


# --- helpers ---------------------------------------------------------------------------------------


def make_cert(names: list[str]) -> bytes:
    """A self-signed server certificate like Bootstrap-TestGuest.ps1 makes (DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def listener_for(der: bytes) -> dict[str, Any]:
    return {
        "thumbprint": hashlib.sha1(der).hexdigest().upper(),
        "port": 5986,
        "hostname": "drv-test",
        "found": True,
        "subject": "CN=drv-test",
        "not_after": "2030-01-01T00:00:00Z",
        "dns_names": ["drv-test"],
        "cert_base64": base64.b64encode(der).decode(),
    }


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.01)


def fast_reboot(ctx: Any, guest: Any, timeout: float) -> None:
    from driverpipe.targets.reboot import reboot_and_wait

    clock = Clock()
    reboot_and_wait(ctx, guest, timeout, clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)


USER_CONFIG = """
default_target = "q"
[targets.q]
transport = "winrm"
host = "127.0.0.1"
port = 55986
user = "driverpipe"
password_env = "Q_PASSWORD"
test_machine = true
vm_host = "qm"
[targets.hv]
transport = "winrm"
host = "drv-test"
user = "driverpipe"
password_env = "HV_PASSWORD"
test_machine = true
vm_host = "hyperv"
vm_name = "drv-win11"
[targets.prod]
transport = "local"
[vm_hosts.qm]
kind = "qemu"
[vm_hosts.hyperv]
kind = "hyperv"
"""


@pytest.fixture
def env(project: Path) -> dict[str, Any]:
    (project / "user-config.toml").write_text(USER_CONFIG, encoding="utf-8")
    out: list[str] = []
    ctx = RunContext(config=load(root=project), echo=out.append, progress=out.append)
    cer = project / "test.cer"
    cer.write_bytes(make_cert(["WazabiEDR Test Signing"]))
    return {"ctx": ctx, "out": out, "cer": cer, "project": project}


def fresh_machine(listener_names: tuple[str, ...] = ("drv-test", "localhost", "127.0.0.1")) -> FakeWindows:
    m = FakeWindows()
    m.winrm_https = listener_for(make_cert(list(listener_names)))  # type: ignore[attr-defined]
    m.files["C:\\Tools\\Dbgview.exe"] = b"MZ dbgview"
    m.reg_set(WINLOGON_KEY, "AutoAdminLogon", "1")
    m.reg_set(WINLOGON_KEY, "DefaultPassword", "lab-password")
    return m


def run_provision(env: dict[str, Any], m: FakeWindows, target: str = "q") -> tuple[FakeGuest, provision.Outcome]:
    ctx = env["ctx"]
    section = ctx.config.target(target)
    guest = FakeGuest(m, name=target)
    outcome = provision.provision_guest(ctx, guest, section, cert_file=env["cer"], reboot=fast_reboot)
    return guest, outcome


# --- tests -----------------------------------------------------------------------------------------


def test_first_run_prepares_pins_and_reboots_second_run_changes_nothing(env: dict[str, Any]) -> None:
    m = fresh_machine()
    guest, first = run_provision(env, m)
    assert {"testsigning", "debug_filter", "cert_Root", "cert_TrustedPublisher", "CrashDumpEnabled", "AutoAdminLogon", "default_password_removed"} <= set(
        first.changed
    )
    assert "winrm.ca_bundle (host config)" in first.changed
    assert first.rebooted and m.boot_count == 1
    assert m.bcd_active["testsigning"] == "Yes"
    assert m.reg_get(DEBUG_FILTER_KEY, "DEFAULT") == 0xF
    assert m.reg_get(CRASH_KEY, "CrashDumpEnabled") == 7 and m.reg_get(CRASH_KEY, "AutoReboot") == 1
    assert m.reg_get(WINLOGON_KEY, "DefaultPassword") is None
    thumb = hashlib.sha1(env["cer"].read_bytes()).hexdigest().upper()
    assert thumb in m.cert_stores["Root"] and thumb in m.cert_stores["TrustedPublisher"]
    # After the reboot the baseline is re-read in check-only mode.
    assert ("Set-TestGuestBaseline.ps1", {**guest.calls[-1][1]}) == guest.calls[-1] and guest.calls[-1][1]["CheckOnly"] is True

    # The listener certificate is pinned in the user config, as PEM, by thumbprint.
    user = (env["project"] / "user-config.toml").read_text(encoding="utf-8")
    pem = provision.pin_path("q")
    assert pem.is_file() and f'ca_bundle = "{pem}"' in user
    assert provision.pem_thumbprints(pem.read_bytes()) == {m.winrm_https["thumbprint"]}  # type: ignore[attr-defined]
    assert first.thumbprint == m.winrm_https["thumbprint"]  # type: ignore[attr-defined]

    # Second run: config reloaded (it now has ca_bundle), nothing changes, no reboot.
    env["ctx"] = RunContext(config=load(root=env["project"]), echo=env["out"].append, progress=env["out"].append)
    guest2, second = run_provision(env, m)
    assert second.changed == [] and not second.rebooted and m.boot_count == 1
    assert guest2.round_trips == 4  # elevation, listener, state, one batch
    assert any("is the pinned one" in line for line in env["out"])


def test_secure_boot_on_stops_with_the_hypervisor_fix(env: dict[str, Any]) -> None:
    m = fresh_machine(("drv-test",))
    m.secure_boot = True
    with pytest.raises(EnvironmentProblem) as info:
        run_provision(env, m, target="hv")
    assert "Secure Boot is on" in info.value.message and "Set-VMFirmware -VMName drv-win11 -EnableSecureBoot Off" in str(info.value.hint)
    assert m.bcd["testsigning"] == "No"


def test_hvci_on_stops(env: dict[str, Any]) -> None:
    m = fresh_machine()
    m.hvci = True
    with pytest.raises(EnvironmentProblem, match="HVCI"):
        run_provision(env, m)


def test_without_test_certificate_the_rest_is_still_provisioned(env: dict[str, Any]) -> None:
    m = fresh_machine()
    ctx = env["ctx"]
    guest = FakeGuest(m, name="q")
    out = provision.provision_guest(ctx, guest, ctx.config.target("q"), cert_file=None, reboot=fast_reboot)
    assert "testsigning" in out.changed and not any(c.startswith("cert_") for c in out.changed)
    assert m.cert_stores["Root"] == set()


def test_test_cert_lookup_is_graceful(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = env["ctx"]
    fake = types.ModuleType("driverpipe.signing.certs")
    fake.ensure_test_cert = lambda c: types.SimpleNamespace(cer=env["cer"])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "driverpipe.signing.certs", fake)
    assert provision.test_cert(ctx) == env["cer"]

    def missing(c: Any) -> Any:
        raise ConfigError("no test certificate yet")

    fake.ensure_test_cert = missing  # type: ignore[attr-defined]
    env["out"].clear()
    assert provision.test_cert(ctx) is None
    assert any("no test certificate yet" in line and "invoke sign" in line for line in env["out"])


def test_a_different_pinned_certificate_is_never_replaced_silently(env: dict[str, Any]) -> None:
    other = env["project"] / "old.pem"
    other.write_text(provision.der_to_pem(make_cert(["drv-test"])), encoding="ascii")
    (env["project"] / "user-config.toml").write_text(
        USER_CONFIG.replace('vm_host = "qm"\n', f'vm_host = "qm"\nwinrm.ca_bundle = "{other}"\n', 1), encoding="utf-8"
    )
    env["ctx"] = RunContext(config=load(root=env["project"]), echo=env["out"].append, progress=env["out"].append)
    m = fresh_machine()
    _, out = run_provision(env, m)
    assert any("does not hold the listener's certificate" in n for n in out.notes)
    assert str(other) in (env["project"] / "user-config.toml").read_text(encoding="utf-8")


def test_listener_certificate_problems(env: dict[str, Any]) -> None:
    m = fresh_machine(("some-other-name",))
    _, out = run_provision(env, m)
    assert any("not 127.0.0.1" in n and "-RenewCertificate" in n for n in out.notes)

    m2 = fresh_machine()
    m2.winrm_https["thumbprint"] = "00" * 20  # type: ignore[attr-defined]
    with pytest.raises(StepFailed, match="not the listener's thumbprint"):
        run_provision(env, m2)

    m3 = fresh_machine()
    m3.winrm_https = None  # type: ignore[attr-defined]
    _, out3 = run_provision(env, m3)
    assert any("Bootstrap-TestGuest.ps1" in n for n in out3.notes)


def test_values_that_do_not_survive_the_reboot_fail(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    m = fresh_machine()

    def reboot_and_reset(ctx: Any, guest: Any, timeout: float) -> None:
        fast_reboot(ctx, guest, timeout)
        m.reg_set(CRASH_KEY, "CrashDumpEnabled", 3)  # e.g. a policy resets it at boot

    ctx = env["ctx"]
    with pytest.raises(CheckFailed, match="CrashDumpEnabled"):
        provision.provision_guest(ctx, FakeGuest(m, name="q"), ctx.config.target("q"), cert_file=env["cer"], reboot=reboot_and_reset)


def test_guest_side_port_and_refusal_on_non_test_machines(env: dict[str, Any]) -> None:
    ctx = env["ctx"]
    assert provision.guest_winrm_port(ctx, ctx.config.target("q")) == 5986  # 55986 is QEMU's host-side forward
    with pytest.raises(ConfigError, match="test_machine"):
        provision.run(ctx, target="prod")


def test_dry_run_prints_the_plan_and_writes_nothing(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("Q_PASSWORD", "never-used")
    out: list[str] = []
    ctx = RunContext(config=load(root=env["project"]), dry=True, echo=out.append, progress=out.append)
    assert provision.run(ctx, target="q") == 0
    text = "\n".join(out)
    for script in (
        "Test-Elevation.ps1",
        "Get-WinRMListener.ps1",
        "Get-GuestState.ps1",
        "Set-GuestPrepared.ps1",
        "Set-TestGuestBaseline.ps1",
        "Restart-Guest.ps1",
    ):
        assert script in text
    assert "never-used" not in text
    assert not provision.pin_path("q").exists()
    assert "ca_bundle" not in (env["project"] / "user-config.toml").read_text(encoding="utf-8")


def test_bound_parameters_match_the_scripts() -> None:
    baseline = {"CrashDump": "automatic", "AutoReboot": True, "DisableAutoLogon": True, "DebugViewPath": "C:\\Tools\\Dbgview.exe", "CheckOnly": True}
    assert check_bound_params(script_path("Set-TestGuestBaseline.ps1"), baseline) == []
    assert check_bound_params(script_path("Get-WinRMListener.ps1"), {"Port": 5986}) == []


def test_pem_helpers_round_trip() -> None:
    der = make_cert(["a.example", "10.0.0.5"])
    pem = provision.der_to_pem(der).encode()
    assert provision.pem_thumbprints(pem + pem) == {hashlib.sha1(der).hexdigest().upper()}
    assert provision.pem_thumbprints(der) == {hashlib.sha1(der).hexdigest().upper()}
    assert provision.cert_names(der) == ["a.example", "10.0.0.5"]


# --- vm/ examples ----------------------------------------------------------------------------------

VM_DIR = Path(__file__).resolve().parents[2] / "vm"


@pytest.mark.parametrize("example", ["config.example.toml", "qemu/vm_host.example.toml"])
def test_config_examples_validate(project: Path, example: str) -> None:
    cfg = load(root=project, user_path=VM_DIR / example)
    assert cfg.user.targets and cfg.user.vm_hosts
    text = (VM_DIR / example).read_text(encoding="utf-8")
    assert "password =" not in text  # secrets by env var / keyring name only (the loader refuses them too)
    for name in cfg.user.targets:
        assert cfg.target(name).test_machine or cfg.target(name).transport == "local"


def test_unattend_is_xml_with_placeholders_only() -> None:
    import xml.etree.ElementTree as ET

    path = VM_DIR / "unattend" / "autounattend.xml"
    root = ET.parse(path).getroot()
    ns = "{urn:schemas-microsoft-com:unattend}"
    values = [v.text for v in root.iter(f"{ns}Value")]
    passwords = [v for v in values if v and "PASSWORD" in v]
    assert passwords and set(passwords) == {"REPLACE-WITH-A-LAB-PASSWORD"}
    text = path.read_text(encoding="utf-8")
    for lab in ("BypassTPMCheck", "BypassSecureBootCheck", "Bootstrap-TestGuest.ps1", "<LogonCount>1</LogonCount>"):
        assert lab in text


def test_make_base_image_plans_a_non_secure_boot_install(tmp_path: Path) -> None:
    import shutil
    import subprocess

    script = VM_DIR / "qemu" / "make-base-image.sh"
    bash = shutil.which("bash")
    assert bash
    assert subprocess.run([bash, "-n", str(script)], check=False).returncode == 0
    code = tmp_path / "OVMF_CODE_4M.fd"
    vars_ = tmp_path / "OVMF_VARS_4M.fd"
    code.write_bytes(b"code")
    vars_.write_bytes(b"vars")
    argv = [bash, str(script), "install", "--dry", "--iso", "w.iso", "--dir", str(tmp_path / "vm"), "--ovmf-code", str(code), "--ovmf-vars", str(vars_)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "qemu-img create" in done.stdout and "e1000" in done.stdout and "hostfwd=tcp:127.0.0.1:55986-:5986" in done.stdout
    assert not (tmp_path / "vm").exists()  # --dry runs nothing
    bad = subprocess.run(
        [*argv[:-4], "--ovmf-code", str(tmp_path / "OVMF_CODE_4M.secboot.fd"), "--ovmf-vars", str(vars_)], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "Secure Boot" in bad.stderr
