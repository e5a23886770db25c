"""`invoke build` on Windows (fake cargo on PATH), --from, and the cargo-output/failure mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driverpipe.core.errors import ConfigError, EnvironmentProblem, StepFailed
from driverpipe.image import artifact, build
from fakes_build.crate import write_crate
from fakes_build.ctx import make_ctx
from fakes_build.fake_tools import FakeBin
from fakes_build.pe import ARM64, WINDOWS_GUI, make_pe

RELEASE_ARGV = ["build", "--release", "--locked", "--message-format=json-render-diagnostics"]


def cargo_messages(crate: Path, profile: str = "release") -> tuple[str, dict[Path, bytes]]:
    out = crate / "target" / profile
    dll, pdb = out / "WazabiEDR_Driver.dll", out / "WazabiEDR_Driver.pdb"
    lines = [
        {
            "reason": "compiler-artifact",
            "target": {"kind": ["custom-build"], "crate_types": ["bin"], "name": "build-script-build"},
            "filenames": [str(out / "build" / "x" / "build-script-build.exe")],
        },
        {
            "reason": "compiler-artifact",
            "target": {"kind": ["lib"], "crate_types": ["lib"], "name": "wdk_sys"},
            "filenames": [str(out / "deps" / "libwdk_sys.rlib")],
        },
        {"reason": "compiler-message", "message": {"level": "warning", "rendered": "warning: unused variable"}},
        {
            "reason": "compiler-artifact",
            "target": {"kind": ["cdylib"], "crate_types": ["cdylib"], "name": "WazabiEDR_Driver"},
            "filenames": [str(dll), str(dll) + ".lib", str(pdb)],
            "fresh": False,
        },
        {"reason": "build-finished", "success": True},
    ]
    files = {dll: make_pe(), pdb: b"PDB", out / "deps" / "WazabiEDR_Driver.map": b"MAP"}
    return "".join(json.dumps(m) + "\n" for m in lines), files


@pytest.fixture
def windows(project: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    monkeypatch.setattr("driverpipe.image.wdk.host_is_windows", lambda: True)
    for var in ("RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_PROFILE_RELEASE_PANIC", "CARGO_PROFILE_DEV_PANIC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CARGO_HOME", str(project / "cargo-home"))
    fakes = FakeBin(project / "fakebin")
    monkeypatch.setenv("PATH", fakes.path_env())
    return fakes


def test_cargo_build_records_the_cdylib_from_cargo_output(project: Path, windows: FakeBin) -> None:
    crate = write_crate(project)
    stdout, files = cargo_messages(crate)
    windows.add("cargo", argv=[*RELEASE_ARGV, "--features", "fault-injection"], stdout=stdout, stderr="   Compiling WazabiEDR_Driver v0.1.0\n", write=files)
    ctx, lines = make_ctx(project, flags={"build.features": ["fault-injection"]})
    result = build.run(ctx, from_path=None)
    assert [c["argv"] for c in windows.calls()] == [[*RELEASE_ARGV, "--features", "fault-injection"]]
    assert Path(windows.calls()[0]["cwd"]) == crate
    manifest = json.loads((crate / "target" / "release" / "driverpipe-build.json").read_text())
    assert manifest["artifact"] == str(crate / "target" / "release" / "WazabiEDR_Driver.dll")
    assert manifest["pdb"].endswith("WazabiEDR_Driver.pdb") and manifest["map"].endswith("deps/WazabiEDR_Driver.map")
    assert manifest["source"] == "cargo" and manifest["features"] == ["fault-injection"] and manifest["timestamp"]
    assert manifest["sha256"]["artifact"] == build.sha256_file(result.artifact)
    assert set(manifest["sha256"]) == {"artifact", "pdb", "map"}
    assert artifact.load_manifest(ctx).artifact == result.artifact
    assert any("recorded in" in line for line in lines)


def test_debug_profile_has_no_release_flag(project: Path, windows: FakeBin) -> None:
    crate = write_crate(project)
    stdout, files = cargo_messages(crate, "debug")
    windows.add("cargo", argv=["build", "--locked", "--message-format=json-render-diagnostics"], stdout=stdout, write=files)
    ctx, _ = make_ctx(project, flags={"build.profile": "debug"})
    assert build.run(ctx, from_path=None).artifact.parent.name == "debug"
    assert (crate / "target" / "debug" / "driverpipe-build.json").is_file()


def test_dry_prints_the_command_and_writes_nothing(project: Path, windows: FakeBin) -> None:
    crate = write_crate(project)
    windows.add("cargo", argv=None)
    ctx, lines = make_ctx(project, dry=True)
    result = build.run(ctx, from_path=None)
    assert result.dry and windows.calls() == []
    assert any("[dry] $ cargo build --release --locked --message-format=json-render-diagnostics" in line for line in lines)
    assert not (crate / "target").exists()


STATIC_CRT = (
    "error: failed to run custom build command for `WazabiEDR_Driver v0.1.0`\n\nCaused by:\n"
    "  process didn't exit successfully: `build-script-build` (exit code: 1)\n  --- stderr\n  Error: StaticCrtNotEnabled\n"
)
LIBCLANG = (
    "error: failed to run custom build command for `wdk-sys v0.5.1`\n  --- stderr\n  thread 'main' panicked at bindgen-0.71.1\\lib.rs:616:27:\n"
    "  Unable to find libclang: \"couldn't find any valid shared libraries matching: ['clang.dll', 'libclang.dll'], "
    'set the `LIBCLANG_PATH` environment variable"\n'
)
NO_WDK = (
    "  --- stderr\n  Error: WDKContentRoot should be able to be detected. Ensure that the WDK is installed, "
    "or that the environment setup scripts in the eWDK have been run.\n"
)
LNK2019 = (
    "error: linking with `link.exe` failed: exit code: 1120\n  |\n  = note: WazabiEDR_Driver.o : error LNK2019: unresolved external symbol __CxxFrameHandler3 "
    "referenced in function foo\n          WazabiEDR_Driver.dll : fatal error LNK1120: 1 unresolved externals\n"
)
LNK1169 = (
    "error: linking with `link.exe` failed\n  = note: error LNK2005: rust_begin_unwind already defined in x.o\n"
    "  fatal error LNK1169: one or more multiply defined symbols found\n"
)
COMPILE = (
    "   Compiling WazabiEDR_Driver v0.1.0\nerror[E0425]: cannot find value `devcie` in this scope\n  --> src/lib.rs:10:5\n   |\n10 |     devcie\n"
    "   |     ^^^^^^ help: a local variable with a similar name exists: `device`\n\nwarning: unused import\n"
    "error: could not compile `WazabiEDR_Driver` (lib) due to 1 previous error\n"
)
LOCKED = "error: the lock file C:\\src\\driver\\Cargo.lock needs to be updated but --locked was passed to prevent this\n"


@pytest.mark.parametrize(
    ("stderr", "kind", "needle"),
    [
        (STATIC_CRT, ConfigError, "StaticCrtNotEnabled"),
        (LIBCLANG, EnvironmentProblem, "libclang"),
        (NO_WDK, EnvironmentProblem, "cannot find the WDK"),
        (LNK2019, StepFailed, "unresolved external symbol __CxxFrameHandler3"),
        (LNK1169, StepFailed, "symbol defined twice (rust_begin_unwind)"),
        (COMPILE, StepFailed, "1 compiler error; first: error[E0425]: cannot find value `devcie` in this scope"),
        (LOCKED, ConfigError, "Cargo.lock is out of date"),
        ("error: something odd happened\n", StepFailed, "something odd happened"),
    ],
)
def test_known_failures_become_actionable_errors(project: Path, windows: FakeBin, stderr: str, kind: type, needle: str) -> None:
    crate = write_crate(project)
    windows.add("cargo", argv=RELEASE_ARGV, stdout='{"reason":"build-finished","success":false}\n', stderr=stderr, rc=101)
    ctx, lines = make_ctx(project)
    with pytest.raises(kind) as exc:
        build.run(ctx, from_path=None)
    assert needle in exc.value.message and exc.value.hint
    assert not (crate / "target" / "release" / "driverpipe-build.json").exists()
    assert (crate / "target" / "release" / artifact.CARGO_LOG_NAME).read_text() == stderr
    if kind is StepFailed and "compiler error" in needle:
        assert "  --> src/lib.rs:10:5" in lines  # the rendered error is shown readably


def test_a_user_mode_dll_is_refused(project: Path, windows: FakeBin) -> None:
    crate = write_crate(project)
    stdout, files = cargo_messages(crate)
    files[crate / "target" / "release" / "WazabiEDR_Driver.dll"] = make_pe(subsystem=WINDOWS_GUI)
    windows.add("cargo", argv=RELEASE_ARGV, stdout=stdout, write=files)
    ctx, _ = make_ctx(project)
    with pytest.raises(ConfigError, match="subsystem WINDOWS_GUI, not NATIVE"):
        build.run(ctx, from_path=None)


def test_success_without_cdylib(project: Path, windows: FakeBin) -> None:
    write_crate(project)
    windows.add("cargo", argv=RELEASE_ARGV, stdout='{"reason":"build-finished","success":true}\n')
    ctx, _ = make_ctx(project)
    with pytest.raises(StepFailed, match="no cdylib named WazabiEDR_Driver"):
        build.run(ctx, from_path=None)


def test_parse_cargo_output_ignores_other_crates_and_collects_errors() -> None:
    stdout = "\n".join(
        json.dumps(m)
        for m in [
            {"reason": "compiler-artifact", "target": {"crate_types": ["cdylib"], "name": "other"}, "filenames": ["o.dll"]},
            {"reason": "compiler-message", "message": {"level": "error", "rendered": "error: boom\n"}},
            "not json",
            {"reason": "build-finished", "success": False},
        ]
    )
    out = artifact.parse_cargo_output(stdout + "\n{broken", "WazabiEDR_Driver")
    assert out.dll is None and out.errors == ["error: boom"] and out.success is False


# ----------------------------------------------------------------------------- --from


def test_from_sys_on_any_host(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("driverpipe.image.wdk.host_is_windows", lambda: False)
    crate = write_crate(project)
    ci = project / "ci"
    ci.mkdir()
    (ci / "WazabiEDR_Driver.sys").write_bytes(make_pe(payload=b"\x90\xc3"))
    (ci / "WazabiEDR_Driver.pdb").write_bytes(b"PDB")
    ctx, _ = make_ctx(project)
    result = build.run(ctx, from_path=ci / "WazabiEDR_Driver.sys")
    assert result.source == "from" and result.artifact == crate / "target" / "release" / "from" / "WazabiEDR_Driver.sys"
    assert result.pdb is not None and result.pdb.read_bytes() == b"PDB" and result.map is None
    (ci / "WazabiEDR_Driver.sys").unlink()  # the manifest points at our own copy
    assert artifact.load_manifest(ctx).sha256["artifact"] == build.sha256_file(result.artifact)
    result.artifact.write_bytes(make_pe(payload=b"\xcc"))
    with pytest.raises(EnvironmentProblem, match="changed since"):
        artifact.load_manifest(ctx)


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("x.sys", b"hello world, not a PE" * 4, "not a PE image"),
        ("x.dll", make_pe(machine=ARM64), "not amd64"),
        ("x.zip", b"PK", "expected a .dll or .sys"),
        ("missing.sys", None, "no such file"),
    ],
)
def test_from_rejects_what_is_not_a_driver(project: Path, name: str, data: bytes | None, needle: str) -> None:
    write_crate(project)
    if data is not None:
        (project / name).write_bytes(data)
    ctx, _ = make_ctx(project)
    with pytest.raises(ConfigError, match=needle):
        build.run(ctx, from_path=project / name)


def test_from_dry_writes_nothing(project: Path) -> None:
    crate = write_crate(project)
    (project / "d.sys").write_bytes(make_pe())
    ctx, lines = make_ctx(project, dry=True)
    assert build.run(ctx, from_path=project / "d.sys").dry
    assert not (crate / "target").exists() and any("[dry] would copy" in line for line in lines)


def test_no_manifest_tells_how_to_build(project: Path) -> None:
    write_crate(project)
    ctx, _ = make_ctx(project)
    with pytest.raises(EnvironmentProblem, match="no build output") as exc:
        artifact.load_manifest(ctx)
    assert "--from" in (exc.value.hint or "")
