"""PnP driver INFs as projects write them (Manufacturer / models / DDInstall / .Services), next to primitive ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverpipe.image import inf
from driverpipe.targets.wine import inf_install

REPO = Path(__file__).resolve().parents[2]
ECHO_INX = REPO / "examples" / "rust-echo" / "inf" / "RustEcho.inx"
WAZABI_INX = REPO / "inf" / "WazabiEDR_Driver.inx"


def text(path: Path) -> str:
    return inf.decode(path.read_bytes(), str(path)).text


def test_a_root_enumerated_pnp_inf_lints_clean_and_names_its_parts() -> None:
    source = text(ECHO_INX)
    assert inf.lint(source, stamped=False) == []
    assert inf.install_section_name(source) == "RustEcho_Device.NT"
    assert inf.service_names(source) == ["RustEcho"], "the service comes from AddService, not the crate or the binary"
    assert inf.driver_binary(source) == "echodrv.sys"


def test_the_primitive_inf_still_names_default_install() -> None:
    source = text(WAZABI_INX)
    assert inf.install_section_name(source) == "DefaultInstall.NT$ARCH$"
    assert inf.service_names(source) == ["WazabiEDR"] and inf.driver_binary(source) == "WazabiEDR_Driver.sys"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_the_wine_install_picks_the_ddinstall_section_in_either_encoding(tmp_path: Path, encoding: str) -> None:
    stamped = inf.stamp_text(text(ECHO_INX), arch="amd64", catalog="echodrv.cat", date=__import__("datetime").date(2026, 1, 2), version="0.2.0.0")
    path = tmp_path / "echodrv.inf"
    path.write_bytes(stamped.encode(encoding))
    assert inf_install.section_for(path) == "RustEcho_Device.NT"
    path.write_bytes(text(WAZABI_INX).encode(encoding))
    assert inf_install.section_for(path) == "DefaultInstall"
    calls: list[list[str]] = []
    inf_install.install(lambda argv, during: calls.append(argv), path, "C:\\X\\x.inf")
    assert calls == [["rundll32", "setupapi.dll,InstallHinfSection", "DefaultInstall", "128", "C:\\X\\x.inf"]]


def test_a_manufacturer_next_to_default_install_and_a_dangling_models_section_are_named() -> None:
    both = text(ECHO_INX).replace("[Strings]", "[DefaultInstall.NT$ARCH$]\nCopyFiles = X\n[Strings]")
    assert "manufacturer" in {p.rule for p in inf.lint(both, stamped=False)}
    dangling = text(ECHO_INX).replace("%DeviceDesc% = RustEcho_Device, Root\\RustEcho", "%DeviceDesc% = Nowhere, Root\\RustEcho")
    assert [p.rule for p in inf.lint(dangling, stamped=False)] == ["models"]
    no_service = text(ECHO_INX).replace("AddService = RustEcho, 0x00000002, RustEcho_Service", "")
    assert "add-service" in {p.rule for p in inf.lint(no_service, stamped=False)}
