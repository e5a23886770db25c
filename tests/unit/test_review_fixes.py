"""The low-severity findings of the Windows-side review, one test each where it can run here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.errors import EnvironmentProblem
from driverpipe.transports.winrm import MAX_CHUNK, WinRMGuest

SCRIPTS = Path(__file__).resolve().parents[2] / "src" / "driverpipe" / "scripts" / "guest"


def _guest(**kw: Any) -> WinRMGuest:
    return WinRMGuest(name="lab", host="127.0.0.1", user="u", password="p", connect=False, **kw)


def test_chunks_are_capped_whatever_envelope_the_listener_allows() -> None:
    g = _guest()

    class Huge:
        max_payload_size = 512 * 1024 * 1024

    g._wsman = Huge()
    assert g.chunk_size() == MAX_CHUNK
    assert MAX_CHUNK * 4 // 3 <= 4 * 1024 * 1024  # 4 MiB once base64-encoded


def test_winrm_bypasses_http_proxies_unless_told_to_use_them() -> None:
    assert _guest()._kwargs["no_proxy"] is True
    assert _guest(use_proxy=True)._kwargs["no_proxy"] is False


def test_a_tls_name_mismatch_is_not_called_an_untrusted_certificate() -> None:
    import requests.exceptions

    from driverpipe.transports.errors import Endpoint, translate_winrm

    exc = requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, certificate is not valid for '10.0.0.5'")
    ep = Endpoint("lab", "10.0.0.5", 5986, "winrm", scheme="https", user="u", auth="negotiate")
    err = translate_winrm(exc, ep, connect_timeout=30, read_timeout=30)
    assert "does not name 10.0.0.5 (name mismatch)" in err.message


def test_a_missing_auth_extra_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import pypsrp.wsman

    def needs_credssp(**_kw: Any) -> Any:
        raise ImportError("No module named 'requests_credssp'", name="requests_credssp")

    monkeypatch.setattr(pypsrp.wsman, "WSMan", needs_credssp)
    g = _guest(auth="credssp")
    with pytest.raises(EnvironmentProblem) as err:
        g.connect()
    assert "pypsrp[credssp]" in (err.value.hint or "")


def test_a_failed_pool_open_deletes_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    import pypsrp.powershell
    import pypsrp.wsman

    closed: list[str] = []

    class WSMan:
        def __init__(self, **_kw: Any) -> None:
            class Transport:
                def send(self, message: bytes, **_kw: Any) -> bytes:
                    return b""

            self.transport = Transport()
            self.max_envelope_size = 153600

        def update_max_payload_size(self) -> None: ...

        def close(self) -> None:
            closed.append("wsman")

    class Pool:
        def __init__(self, _wsman: Any) -> None: ...

        def open(self) -> None:
            raise RuntimeError("runspace pool refused")

        def close(self) -> None:
            closed.append("pool")

    monkeypatch.setattr(pypsrp.wsman, "WSMan", WSMan)
    monkeypatch.setattr(pypsrp.powershell, "RunspacePool", Pool)
    with pytest.raises(Exception):  # noqa: B017 - whatever the translation, the shell must be gone
        _guest().connect()
    assert closed == ["pool", "wsman"]


def test_an_empty_chunk_is_allowed() -> None:
    text = (SCRIPTS / "Write-FileChunk.ps1").read_text(encoding="utf-8-sig")
    assert "[Parameter(Mandatory)][AllowEmptyString()][string]$Base64" in text


def test_unload_waits_when_the_service_is_already_stopping() -> None:
    text = (SCRIPTS / "Invoke-DriverUnload.ps1").read_text(encoding="utf-8-sig")
    assert "($stop.rc -eq 1061)" in text


def test_scripts_run_in_a_local_scope_in_the_shared_pool() -> None:
    source = (Path(__file__).resolve().parents[2] / "src" / "driverpipe" / "transports" / "winrm.py").read_text(encoding="utf-8")
    assert "add_script(load_script(path), use_local_scope=True)" in source
