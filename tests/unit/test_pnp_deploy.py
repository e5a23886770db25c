"""RustEcho's PnP INF on the Windows route, against the fake guest (tests/fakes/pnp.py keeps Windows' rules).

A PnP package is staged by pnputil under an oemNN.inf name, its root-enumerated
device node is created once through SetupAPI and the driver installed on it (only
then does the service exist); unload removes that device and delete removes only
the driver-store package this pipeline published. Never run on real Windows.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from test_deploy import Clock

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import PipelineError
from driverpipe.targets import deploy, operations, pnp
from fakes import pnp as fake_pnp
from fakes.guest import FakeCapture, FakeGuest, FakeWindows
from fakes.package import StubPackage

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "rust-echo"
GUEST_DIR = "C:\\RustEcho"
RECORD = fake_pnp.record_path("RustEcho")
OURS = "oem4.inf"  # the next free name after the other vendor's oem3.inf


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    project = tmp_path / "rust-echo"
    project.mkdir()
    shutil.copy(EXAMPLE / "pyproject.toml", project)
    shutil.copytree(EXAMPLE / "inf", project / "inf")
    user = tmp_path / "user-config.toml"
    user.write_text("default_target = 'vm'\n[targets.vm]\ntransport = 'local'\ntest_machine = true\n", encoding="utf-8")
    monkeypatch.setenv("DRIVERPIPE_CONFIG", str(user))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(project)
    out: list[str] = []
    ctx = RunContext(config=load(root=project), echo=out.append, progress=lambda _line: None)
    pkgdir = project / "artifacts" / "package"
    pkgdir.mkdir(parents=True)
    inf = (EXAMPLE / "inf" / "RustEcho.inx").read_text(encoding="utf-8").replace("$ARCH$", "amd64")
    files = []
    for name, data in (("echodrv.sys", b"MZ echo v1"), ("echodrv.inf", inf.encode()), ("echodrv.cat", b"0\x82cat")):
        (pkgdir / name).write_bytes(data)
        files.append(pkgdir / name)
    cer = pkgdir / "RustEcho_Test.cer"
    cer.write_bytes(b"0\x82\x01\x0afake DER certificate")
    thumb = hashlib.sha1(cer.read_bytes()).hexdigest().upper()
    return {"ctx": ctx, "out": out, "pkg": StubPackage(pkgdir, "echodrv", files, cer), "thumb": thumb}


def _machine(env: dict[str, Any], **kw: Any) -> FakeWindows:
    """A prepared guest whose RustEcho answers its declared device checks as declared."""
    m = FakeWindows.prepared(env["thumb"], service_name="RustEcho", device_path="\\\\.\\RustEcho", log_prefix="[RustEcho]", **kw)
    table = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["driverpipe"]["device_check"]
    for check in table:
        output = check.get("expect_output", "")
        m.device_answers[check["name"]] = {"error": check.get("expect_error", 0), "returned": check.get("expect_returned", len(output) // 2), "output": output}
    # Another vendor's package is in the store already: never ours to delete.
    m.files[fake_pnp.INF_DIR + "oem3.inf"] = b"[Version]\r\nProvider = Someone Else\r\n"
    m.driver_store.append(("oem3.inf", "theirs.inf", "Someone Else"))
    return m


def _deploy(env: dict[str, Any], m: FakeWindows) -> tuple[FakeGuest, int]:
    guest = FakeGuest(m, name="vm")
    clock = Clock()
    code = deploy.deploy_to(
        env["ctx"],
        guest,
        env["pkg"],
        env["ctx"].config.target("vm"),
        capture_factory=lambda c, g, run_id: FakeCapture(g, "[RustEcho]"),
        clock=clock,
        sleep=clock.sleep,
    )
    return guest, code


def test_the_route_is_pnp_for_rust_echo_and_legacy_for_wazabi(env: dict[str, Any], tmp_path: Path) -> None:
    assert pnp.package_route(env["pkg"]) == ("echodrv.inf", "Root\\RustEcho")
    assert pnp.project_hardware_id(env["ctx"]) == "Root\\RustEcho"
    legacy = tmp_path / "WazabiEDR_Driver.inf"
    shutil.copy(REPO / "inf" / "WazabiEDR_Driver.inx", legacy)  # UTF-16 with a BOM, a DefaultInstall INF
    assert pnp.package_route(StubPackage(tmp_path, "w", [legacy], legacy)) is None


def test_the_service_exists_only_once_the_driver_is_installed_on_a_device_node() -> None:
    m = FakeWindows.prepared()
    inf = (EXAMPLE / "inf" / "RustEcho.inx").read_text(encoding="utf-8").replace("$ARCH$", "amd64")
    m.files[GUEST_DIR + "\\echodrv.inf"] = inf.encode()
    m.files[GUEST_DIR + "\\echodrv.sys"] = b"MZ echo"
    rc, text = fake_pnp.add_driver(m, GUEST_DIR + "\\echodrv.inf", install=True)
    assert rc == 0 and "Published Name:         oem5.inf" in text
    assert "RustEcho" not in m.services, "no device node yet: staging creates no service"
    assert fake_pnp.add_driver(m, GUEST_DIR + "\\echodrv.inf", install=True)[1].count("oem5.inf") == 1, "an identical package keeps its name"
    assert fake_pnp.published_infs(m) == {"oem5.inf"}


def test_first_deploy_stages_with_pnputil_creates_the_root_device_once_and_records_what_it_added(env: dict[str, Any]) -> None:
    m = _machine(env)
    guest, code = _deploy(env, m)
    assert code == 0, "\n".join(env["out"])
    load = next(params for script, params in guest.calls if script == "Invoke-DriverLoad.ps1")
    assert load["InfPath"] == GUEST_DIR + "\\echodrv.inf" and load["HardwareId"] == "Root\\RustEcho"
    assert not [c for c in m.sc_log if c.startswith(("create", "config"))], "a PnP package never goes through sc create/config"
    assert [d["hwid"] for d in m.pnp_devices.values()] == ["Root\\RustEcho"]
    svc = m.services["RustEcho"]
    assert svc.state == 4 and svc.binpath == "\\SystemRoot\\System32\\drivers\\echodrv.sys"
    assert json.loads(m.files[RECORD]) == {"published": [OURS], "devices": ["ROOT\\SYSTEM\\0000"]}
    assert any("device check echo_buffered: ok" in line for line in env["out"])
    assert any("deploy ok" in line for line in env["out"])

    again_guest, again = _deploy(env, m)  # unchanged: the device and the package are reused
    assert again == 0, "\n".join(env["out"])
    assert [s for s, _ in again_guest.calls].count("Invoke-DriverLoad.ps1") == 1
    assert len(m.pnp_devices) == 1 and fake_pnp.published_infs(m) == {"oem3.inf", OURS}
    assert json.loads(m.files[RECORD]) == {"published": [OURS], "devices": ["ROOT\\SYSTEM\\0000"]}


def test_unload_removes_our_device_and_delete_removes_only_the_package_we_published(env: dict[str, Any]) -> None:
    m = _machine(env)
    assert _deploy(env, m)[1] == 0
    guest = FakeGuest(m, name="vm")
    result = operations.unload_driver(env["ctx"], guest)
    assert result.stopped and result.device_gone and not result.message, result.message
    assert not m.pnp_devices and m.services["RustEcho"].state == 1
    assert OURS in fake_pnp.published_infs(m), "a plain unload keeps the staged package"

    result = operations.unload_driver(env["ctx"], guest, delete=True)
    assert result.deleted and not result.message, result.message
    assert fake_pnp.published_infs(m) == {"oem3.inf"}, "the other vendor's package stays"
    assert RECORD not in m.files
    deleted = [params for script, params in guest.calls if script == "Invoke-DriverUnload.ps1"]
    assert all(p["HardwareId"] == "Root\\RustEcho" for p in deleted)


def test_a_device_that_was_there_before_is_reused_and_never_removed(env: dict[str, Any]) -> None:
    m = _machine(env)
    m.pnp_devices["ROOT\\SYSTEM\\0007"] = {"hwid": "Root\\RustEcho", "driver": None}
    assert _deploy(env, m)[1] == 0, "\n".join(env["out"])
    assert list(m.pnp_devices) == ["ROOT\\SYSTEM\\0007"] and m.pnp_devices["ROOT\\SYSTEM\\0007"]["driver"] == OURS
    assert json.loads(m.files[RECORD]) == {"published": [OURS], "devices": []}
    operations.unload_driver(env["ctx"], FakeGuest(m, name="vm"), delete=True)
    assert "ROOT\\SYSTEM\\0007" in m.pnp_devices


def test_a_package_pnputil_refuses_fails_the_load_with_pnputils_reason(env: dict[str, Any]) -> None:
    m = _machine(env, driver_signed=False)
    with pytest.raises(PipelineError) as failed:
        _deploy(env, m)
    assert (
        failed.value.message
        == "vm: pnputil /add-driver echodrv.inf /install failed (exit 1): The third-party INF does not contain digital signature information."
    )
    assert "RustEcho" not in m.services


def test_an_unreadable_record_is_left_alone_and_removes_nothing(env: dict[str, Any]) -> None:
    m = _machine(env)
    assert _deploy(env, m)[1] == 0
    m.files[RECORD] = b"{not json"
    result = operations.unload_driver(env["ctx"], FakeGuest(m, name="vm"), delete=True)
    assert "record of what this pipeline added is unreadable" in result.message and result.deleted is False
    assert m.files[RECORD] == b"{not json" and OURS in fake_pnp.published_infs(m) and len(m.pnp_devices) == 1
