"""Remote build on a Windows build host, with an in-test Guest double (no Windows here)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from driverpipe.core.errors import ConfigError, EnvironmentProblem, StepFailed
from driverpipe.core.scripts import script_path
from driverpipe.image import build, buildhost
from driverpipe.parse.psgrammar import check_bound_params
from driverpipe.transports.base import PushResult
from fakes_build.crate import write_crate
from fakes_build.ctx import make_ctx
from fakes_build.pe import make_pe

USER_CONFIG = """
[build_hosts.winbuild]
transport = "ssh"
host = "10.0.0.9"
user = "builder"
work_dir = 'C:\\dp-build'
"""
REMOTE_OUT = "C:\\dp-build\\target\\release"


class BuildHostDouble:
    """Implements the Guest protocol; plays Invoke-RemoteCargoBuild.ps1 from the pushed zip."""

    def __init__(self, root: Path, *, exit_code: int = 0, errors: list[str] | None = None, tail: str = "", corrupt: bool = False, missing_cargo: bool = False):
        self.name = "winbuild"
        self.round_trips = 0
        self.files: dict[str, bytes] = {}
        self.root = root
        self.exit_code, self.errors, self.tail, self.corrupt, self.missing_cargo = exit_code, errors or [], tail, corrupt, missing_cargo
        self.scripts: list[tuple[str, dict[str, Any], float | None]] = []
        self.closed = False
        self.unpacked: list[str] = []

    def push(self, local: Path, remote: str) -> PushResult:
        self.round_trips += 1
        data = Path(local).read_bytes()
        self.files[remote] = data
        return PushResult(remote, hashlib.sha256(data).hexdigest(), True, len(data))

    def run_script(self, script: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        self.round_trips += 1
        params = params or {}
        assert check_bound_params(script_path(script), params) == []
        self.scripts.append((script, params, timeout))
        if self.missing_cargo:
            return {"exitCode": -1, "cargoMissing": True, "artifacts": [], "errors": [], "stderrTail": "cargo not found on PATH"}
        with zipfile.ZipFile(io.BytesIO(self.files[params["ArchivePath"]])) as zf:
            self.unpacked = sorted(zf.namelist())
        if self.exit_code:
            return {"exitCode": self.exit_code, "libName": params["LibName"], "artifacts": [], "errors": self.errors, "stderrTail": self.tail}
        dll, pdb, map_ = (f"{REMOTE_OUT}\\{params['LibName']}.dll", f"{REMOTE_OUT}\\{params['LibName']}.pdb", f"{REMOTE_OUT}\\deps\\{params['LibName']}.map")
        self.files.update({dll: make_pe(payload=b"remote"), pdb: b"PDB", map_: b"MAP"})
        return {
            "exitCode": 0,
            "libName": params["LibName"],
            "artifacts": [
                {"kind": kind, "path": path, "sha256": hashlib.sha256(self.files[path]).hexdigest().upper(), "size": len(self.files[path])}
                for kind, path in (("dll", dll), ("pdb", pdb), ("map", map_))
            ],
            "errors": [],
            "stderrTail": "",
        }

    def pull(self, remote: str, local: Path) -> None:
        self.round_trips += 1
        data = self.files[remote]
        Path(local).write_bytes(data + (b"!" if self.corrupt else b""))

    def run_batch(self, items: list[tuple[str, dict[str, Any]]], *, timeout: float | None = None) -> list[Any]:
        return [self.run_script(n, p, timeout=timeout) for n, p in items]

    def read_range(self, remote: str, offset: int, max_bytes: int) -> bytes:
        return self.files[remote][offset : offset + max_bytes]

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def remote_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (project / "user-config.toml").write_text(USER_CONFIG, encoding="utf-8")
    monkeypatch.setattr("driverpipe.image.wdk.host_is_windows", lambda: False)
    crate = write_crate(project)
    (crate / "target" / "release").mkdir(parents=True)
    (crate / "target" / "release" / "stale.dll").write_bytes(b"old")
    (crate / ".git").mkdir()
    (crate / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (crate / "src" / "target").mkdir()  # only the crate-root target/ is cargo's output
    (crate / "src" / "target" / "mod.rs").write_text("// kept\n")
    return project


def use(monkeypatch: pytest.MonkeyPatch, double: BuildHostDouble) -> None:
    monkeypatch.setattr("driverpipe.transports.connect.open_build_host", lambda ctx, section: double)


def test_remote_build_sends_sources_and_records_verified_artifacts(remote_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    double = BuildHostDouble(remote_project)
    use(monkeypatch, double)
    ctx, _ = make_ctx(remote_project, flags={"build.build_host": "winbuild", "build.features": ["fault-injection"]})
    result = build.run(ctx, from_path=None)
    assert double.unpacked == [
        "driver/.cargo/config.toml",
        "driver/Cargo.lock",
        "driver/Cargo.toml",
        "driver/build.rs",
        "driver/src/lib.rs",
        "driver/src/target/mod.rs",
        "inf/WazabiEDR_Driver.inx",
    ]
    script, params, timeout = double.scripts[0]
    assert script == "Invoke-RemoteCargoBuild.ps1" and timeout == buildhost.REMOTE_TIMEOUT
    assert params == {
        "WorkDir": "C:\\dp-build",
        "ArchivePath": "C:\\dp-build\\driverpipe-src.zip",
        "CrateDir": "driver",
        "BuildProfile": "release",
        "Features": "fault-injection",
        "LibName": "WazabiEDR_Driver",
    }
    assert result.source == "build-host:winbuild" and double.closed
    local = remote_project / "driver" / "target" / "release" / "build-host"
    assert result.artifact == local / "WazabiEDR_Driver.dll" and result.map == local / "WazabiEDR_Driver.map"
    manifest = json.loads((remote_project / "driver" / "target" / "release" / "driverpipe-build.json").read_text())
    assert manifest["source"] == "build-host:winbuild" and manifest["features"] == ["fault-injection"]
    assert sorted(p.name for p in local.iterdir()) == ["WazabiEDR_Driver.dll", "WazabiEDR_Driver.map", "WazabiEDR_Driver.pdb"]


def test_archive_is_deterministic(remote_project: Path, tmp_path: Path) -> None:
    from driverpipe.image.preflight import read_crate

    info = read_crate(remote_project / "driver", stop=remote_project)
    members, crate_rel = buildhost.archive_members(remote_project, info, remote_project / "inf" / "WazabiEDR_Driver.inx")
    assert crate_rel == "driver"
    first = buildhost.write_archive(tmp_path / "a.zip", members)
    assert buildhost.write_archive(tmp_path / "b.zip", members) == first  # unchanged tree -> push is skipped


def test_corrupted_transfer_is_caught(remote_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, BuildHostDouble(remote_project, corrupt=True))
    ctx, _ = make_ctx(remote_project, flags={"build.build_host": "winbuild"})
    with pytest.raises(StepFailed, match="arrived with SHA-256"):
        build.run(ctx, from_path=None)
    local = remote_project / "driver" / "target" / "release"
    assert not (local / "driverpipe-build.json").exists()
    assert not [p for p in (local / "build-host").iterdir()]


@pytest.mark.parametrize(
    ("double_kw", "kind", "needle"),
    [
        ({"exit_code": 101, "tail": "error: failed to run custom build command\n  Error: StaticCrtNotEnabled\n"}, ConfigError, "StaticCrtNotEnabled"),
        (
            {"exit_code": 101, "tail": "   Compiling x\nerror[E0308]: mismatched types\n --> src/lib.rs:3:1\n"},
            StepFailed,
            "first: error[E0308]: mismatched types",
        ),
        ({"exit_code": 101, "errors": ["error: from json\n"]}, StepFailed, "cargo build on winbuild: 1 compiler error"),
        ({"missing_cargo": True}, ConfigError, "cargo is not installed"),
    ],
)
def test_remote_failures_are_mapped(remote_project: Path, monkeypatch: pytest.MonkeyPatch, double_kw: dict[str, Any], kind: type, needle: str) -> None:
    use(monkeypatch, BuildHostDouble(remote_project, **double_kw))
    ctx, _ = make_ctx(remote_project, flags={"build.build_host": "winbuild"})
    with pytest.raises(kind) as exc:
        build.run(ctx, from_path=None)
    assert needle in exc.value.message


def test_unknown_build_host_name(remote_project: Path) -> None:
    ctx, _ = make_ctx(remote_project, flags={"build.build_host": "nope"})
    with pytest.raises(ConfigError, match=r"build_hosts\.nope"):
        build.run(ctx, from_path=None)


def test_workspace_member_cannot_be_sent_alone(remote_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (remote_project / "Cargo.toml").write_text('[workspace]\nmembers = ["driver"]\n[profile.dev]\npanic = "abort"\n[profile.release]\npanic = "abort"\n')
    shutil.move(remote_project / "driver" / "Cargo.lock", remote_project / "Cargo.lock")
    use(monkeypatch, BuildHostDouble(remote_project))
    ctx, _ = make_ctx(remote_project, flags={"build.build_host": "winbuild"})
    with pytest.raises(ConfigError, match="member of the workspace"):
        build.run(ctx, from_path=None)


def test_local_environment_does_not_count_for_remote_preflight(remote_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (remote_project / "driver" / ".cargo" / "config.toml").unlink()
    monkeypatch.setenv("RUSTFLAGS", "-C target-feature=+crt-static")  # not shipped to the build host
    use(monkeypatch, BuildHostDouble(remote_project))
    ctx, _ = make_ctx(remote_project, flags={"build.build_host": "winbuild"})
    with pytest.raises(ConfigError, match=r"\+crt-static"):
        build.run(ctx, from_path=None)


def test_dry_shows_the_script_and_writes_nothing(remote_project: Path) -> None:
    ctx, lines = make_ctx(remote_project, dry=True, flags={"build.build_host": "winbuild"})
    result = build.run(ctx, from_path=None)
    assert result.dry
    text = "\n".join(lines)
    assert "Invoke-RemoteCargoBuild.ps1" in text and "push" in text and "would archive" in text
    assert not (remote_project / "driver" / "target" / "release" / "driverpipe-build.json").exists()
    assert not (remote_project / "driver" / "target" / "release" / "build-host").exists()


def test_no_build_host_and_no_from(remote_project: Path) -> None:
    ctx, _ = make_ctx(remote_project, flags={"build.model": "kmdf"})
    with pytest.raises(EnvironmentProblem, match="cannot build a KMDF driver on this host"):
        build.run(ctx, from_path=None)
