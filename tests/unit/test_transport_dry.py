"""--dry guests connect to nothing and show scripts with redacted params; transports bind what scripts declare."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import ConfigError
from driverpipe.core.scripts import script_path
from driverpipe.core.secrets import REDACT
from driverpipe.parse.psgrammar import check_bound_params
from driverpipe.transports.connect import open_build_host, open_guest, require_admin
from driverpipe.transports.dry import DryGuest

USER_CONFIG = """
[targets.win11]
transport = "winrm"
host = "10.1.2.3"
user = "Administrator"
password_env = "DP_TEST_WINRM_PASSWORD_UNSET"

[targets.sshbox]
transport = "ssh"
host = "10.1.2.4"
user = "Administrator"

[build_hosts.wdk]
host = "10.1.2.5"
user = "builder"
"""


@pytest.fixture
def dry_ctx(project: Path) -> tuple[RunContext, list[str]]:
    (project / "user-config.toml").write_text(USER_CONFIG)
    lines: list[str] = []
    ctx = RunContext(config=load(root=project), dry=True, echo=lines.append)
    return ctx, lines


def test_dry_guest_connects_to_nothing_and_resolves_no_password(dry_ctx: tuple[RunContext, list[str]]) -> None:
    ctx, lines = dry_ctx
    os.environ.pop("DP_TEST_WINRM_PASSWORD_UNSET", None)  # would fail if it were resolved
    guest = open_guest(ctx, ctx.config.target("win11"))
    assert isinstance(guest, DryGuest)
    assert guest.run_script("Get-FileSha256.ps1", {"Path": "C:\\WazabiEDR\\x.sys"}) is None
    assert any("winrm https://10.1.2.3:5986" in line and "Get-FileSha256.ps1" in line for line in lines)
    assert any(line.startswith("[dry]   | ") for line in lines), "the script text is shown"
    assert guest.round_trips == 0


def test_dry_params_are_redacted(dry_ctx: tuple[RunContext, list[str]]) -> None:
    ctx, lines = dry_ctx
    REDACT.add("hunter2-secret-value")
    guest = open_guest(ctx, ctx.config.target("sshbox"))
    guest.run_script("Get-FileSha256.ps1", {"Path": "C:\\hunter2-secret-value", "Password": "plain"})
    text = "\n".join(lines)
    assert "hunter2-secret-value" not in text and "plain" not in text
    assert "ssh Administrator@10.1.2.4:22" in text


def test_dry_batch_push_pull(dry_ctx: tuple[RunContext, list[str]], tmp_path: Path) -> None:
    ctx, lines = dry_ctx
    guest = open_build_host(ctx, ctx.config.named("build_hosts", "wdk", "test"))
    assert guest.run_batch([("Test-Elevation.ps1", {}), ("Get-FileSha256.ps1", {"Path": "C:\\a"})]) == [None, None]
    result = guest.push(tmp_path / "not-built-yet.sys", "C:\\WazabiEDR\\x.sys")
    assert result.remote_path == "C:\\WazabiEDR\\x.sys"
    guest.pull("C:\\Windows\\MEMORY.DMP", tmp_path / "dump")
    assert guest.read_range("C:\\log.txt", 0, 10) == b""
    require_admin(guest)  # nothing to check under --dry
    assert guest.run_script_path(script_path("Test-Elevation.ps1"), {"X": 1}) is None  # type: ignore[attr-defined]
    text = "\n".join(lines)
    assert "batch of 2 scripts" in text and "push" in text and "MEMORY.DMP" in text
    assert not (tmp_path / "dump").exists()


def test_basic_over_http_refused_by_the_transport_too() -> None:
    from driverpipe.transports.winrm import WinRMGuest

    with pytest.raises(ConfigError, match="clear text"):
        WinRMGuest(name="t", host="127.0.0.1", user="u", password="p", ssl=False, auth="basic", connect=False)
    said: list[str] = []
    g = WinRMGuest(name="t", host="127.0.0.1", user="u", password="p", ssl=False, auth="basic", allow_basic_http=True, connect=False, say=said.append)
    assert g.ep.where == "winrm http://127.0.0.1:5985" and any("clear text" in s for s in said)
    with pytest.raises(ConfigError, match="operation_timeout"):
        WinRMGuest(name="t", host="h", user="u", password="p", read_timeout=10, operation_timeout=10, connect=False)


class _Recorder:
    """Answers scripts like a guest would, recording what Python binds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.files: dict[str, bytes] = {}

    def __call__(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        import hashlib

        p = dict(params or {})
        self.calls.append((script, p))
        if script == "Get-FileSha256.ps1":
            data = self.files.get(p["Path"])
            return {"exists": data is not None, "sha256": hashlib.sha256(data or b"").hexdigest(), "size": len(data or b"")}
        if script == "Write-FileChunk.ps1":
            current = self.files.get(p["Path"], b"") if p["Offset"] else b""
            assert len(current) == p["Offset"]
            self.files[p["Path"]] = current + base64.b64decode(p["Base64"])
            return {"size": len(self.files[p["Path"]])}
        if script == "Complete-FileUpload.ps1":
            if p.get("Discard"):
                self.files.pop(p["Partial"], None)
                return {"discarded": True}
            data = self.files.pop(p["Partial"])
            replaced = self.files.get(p["Path"]) != data
            self.files[p["Path"]] = data
            return {"sha256": p["Sha256"], "size": len(data), "replaced": replaced}
        if script == "Read-FileRange.ps1":
            data = self.files.get(p["Path"])
            if data is None:
                return {"exists": False}
            part = data[p["Offset"] : p["Offset"] + p["Count"]]
            return {"exists": True, "size": len(data), "offset": p["Offset"], "base64": base64.b64encode(part).decode()}
        if script == "Test-Elevation.ps1":
            return {"elevated": False, "user": "GUEST\\bob"}
        if script == "Invoke-Batch.ps1":
            import json

            from driverpipe.core.scripts import SCRIPTS_DIR, script_text

            names = {script_text(path.name): path.name for path in SCRIPTS_DIR.glob("*.ps1")}
            return [{"ok": True, "result": self(names[item["script"]], item["params"])} for item in json.loads(p["ItemsJson"])]
        raise AssertionError(script)


def test_winrm_file_ops_bind_what_the_scripts_declare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WinRM push/pull logic end to end against a recording stand-in for the PSRP call."""
    from driverpipe.core.errors import EnvironmentProblem
    from driverpipe.transports.winrm import WinRMGuest

    g = WinRMGuest(name="t", host="h", user="u", password="p", connect=False)
    rec = _Recorder()
    monkeypatch.setattr(g, "run_script", rec)
    src = tmp_path / "driver.sys"
    src.write_bytes(os.urandom(g.chunk_size() * 2 + 123))
    assert g.push(src, "C:\\WazabiEDR\\driver.sys").copied
    assert rec.files["C:\\WazabiEDR\\driver.sys"] == src.read_bytes()
    assert [name for name, _ in rec.calls].count("Write-FileChunk.ps1") == 3
    assert not g.push(src, "C:\\WazabiEDR\\driver.sys").copied
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert g.push(empty, "C:\\e.txt").copied and rec.files["C:\\e.txt"] == b""
    # A file that fits one chunk: written and completed in one batch; an identical one is left alone.
    calls = len(rec.calls)
    assert not g.push(empty, "C:\\e.txt").copied
    assert [name for name, _ in rec.calls[calls:]] == ["Invoke-Batch.ps1", "Write-FileChunk.ps1", "Complete-FileUpload.ps1"]
    g.pull("C:\\WazabiEDR\\driver.sys", tmp_path / "back.sys")
    assert (tmp_path / "back.sys").read_bytes() == src.read_bytes()
    assert g.read_range("C:\\WazabiEDR\\driver.sys", 5, 7) == src.read_bytes()[5:12]
    with pytest.raises(EnvironmentProblem, match="LocalAccountTokenFilterPolicy"):
        require_admin(g)
    for name, params in rec.calls:
        assert check_bound_params(script_path(name), params) == [], (name, params)


def test_winrm_chunk_fits_the_envelope() -> None:
    from driverpipe.transports.winrm import WinRMGuest

    g = WinRMGuest(name="t", host="h", user="u", password="p", connect=False)
    # base64 of one chunk plus the script stays inside one envelope payload at the default size.
    assert len(base64.b64encode(b"x" * g.chunk_size())) + 6000 < g.max_payload_size
