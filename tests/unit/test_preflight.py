"""Cargo.toml / crate preflight: each broken variant gives one clear ConfigError with its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverpipe.core.errors import ConfigError, EnvironmentProblem
from driverpipe.image import preflight
from fakes_build.crate import CARGO_TOML, inx_bytes, write_crate
from fakes_build.ctx import make_ctx


def problems(root: Path, env: dict[str, str] | None = None, **kw: object) -> list[ConfigError]:
    crate = write_crate(root, **kw)  # type: ignore[arg-type]
    return preflight.inspect(crate, root / "inf" / "WazabiEDR_Driver.inx", env=env or {}, stop=root).problems


def one(found: list[ConfigError], needle: str) -> ConfigError:
    hits = [p for p in found if needle in p.message]
    assert len(hits) == 1, [p.message for p in found]
    assert hits[0].hint and "\n" not in hits[0].message
    return hits[0]


def test_a_good_crate_passes_and_is_described(tmp_path: Path) -> None:
    crate = write_crate(tmp_path)
    report = preflight.inspect(crate, tmp_path / "inf" / "WazabiEDR_Driver.inx", env={}, stop=tmp_path)
    assert report.problems == []
    info = report.info
    assert info is not None
    assert (info.name, info.lib_name, info.version, info.kmdf, info.driver_type) == ("WazabiEDR_Driver", "WazabiEDR_Driver", "0.1.0", (1, 33), "KMDF")
    assert info.package_name == "WazabiEDR_Driver" and info.workspace_root == crate


def test_missing_metadata_block(tmp_path: Path) -> None:
    toml = CARGO_TOML.replace("[package.metadata.wdk.driver-model]", "[package.metadata.other]")
    p = one(problems(tmp_path, cargo_toml=toml), "no [package.metadata.wdk.driver-model]")
    assert "links but won't load" in p.message and "kmdf-version-major" in (p.hint or "")


def test_unknown_metadata_key_and_an_unknown_driver_model(tmp_path: Path) -> None:
    toml = CARGO_TOML.replace('driver-type              = "KMDF"', 'driver-type = "UMDF"\nkmdf-version = 1')
    found = problems(tmp_path, cargo_toml=toml)
    one(found, "unknown key(s) kmdf-version")
    one(found, "this pipeline builds KMDF and WDM drivers")


def test_kmdf_versions_must_be_integers(tmp_path: Path) -> None:
    one(problems(tmp_path, cargo_toml=CARGO_TOML.replace("= 33", '= "33"')), "must be integers")


@pytest.mark.parametrize(
    ("old", "new", "profile"),
    [
        ('[profile.release]\npanic = "abort"', "[profile.release]\nlto = true", "release"),
        ('[profile.dev]\npanic = "abort"', '[profile.dev]\npanic = "unwind"', "dev"),
    ],
)
def test_panic_must_abort_in_both_profiles(tmp_path: Path, old: str, new: str, profile: str) -> None:
    p = one(problems(tmp_path, cargo_toml=CARGO_TOML.replace(old, new)), f"[profile.{profile}] panic")
    assert 'panic = "abort"' in (p.hint or "")


def test_panic_from_cargo_config_or_env_counts(tmp_path: Path) -> None:
    toml = CARGO_TOML.replace('[profile.release]\npanic = "abort"', "")
    cfg = '[build]\nrustflags = ["-C", "target-feature=+crt-static"]\n[profile.release]\npanic = "abort"\n'
    assert problems(tmp_path, cargo_toml=toml, cargo_config=cfg) == []
    assert problems(tmp_path / "b", cargo_toml=toml, env={"CARGO_PROFILE_RELEASE_PANIC": "abort"}) == []


def test_workspace_root_profiles_are_the_ones_that_count(tmp_path: Path) -> None:
    (tmp_path / "Cargo.toml").write_text('[workspace]\nmembers = ["driver"]\n[profile.dev]\npanic = "abort"\n', encoding="utf-8")
    (tmp_path / "Cargo.lock").write_text("version = 4\n", encoding="utf-8")
    found = problems(tmp_path, lock=False)
    p = one(found, "[profile.release] panic")
    assert str(tmp_path / "Cargo.toml") in p.message
    assert not any("Cargo.lock" in f.message for f in found)


def test_crate_type_must_be_cdylib(tmp_path: Path) -> None:
    p = one(problems(tmp_path, cargo_toml=CARGO_TOML.replace('["cdylib"]', '["rlib"]')), "crate-type")
    assert "cdylib" in (p.hint or "")


def test_build_rs_missing_or_not_calling_wdk_build(tmp_path: Path) -> None:
    one(problems(tmp_path, build_rs=None), "no build script")
    one(problems(tmp_path / "b", build_rs="fn main() {}\n"), "does not call wdk_build::configure_wdk_binary_build()")
    one(problems(tmp_path / "c", cargo_toml=CARGO_TOML.replace("[build-dependencies]\nwdk-build", "[build-dependencies]\nother")), "wdk-build is not in")


def test_crt_static_needed(tmp_path: Path) -> None:
    p = one(problems(tmp_path, cargo_config=None), "+crt-static is not enabled")
    assert "target-feature=+crt-static" in (p.hint or "")
    # RUSTFLAGS in the environment replaces the config file's flags, as cargo does.
    one(problems(tmp_path / "b", env={"RUSTFLAGS": "-C opt-level=2"}), "RUSTFLAGS")
    assert problems(tmp_path / "c", cargo_config=None, env={"RUSTFLAGS": "-C target-feature=+crt-static"}) == []
    target_cfg = '[target.x86_64-pc-windows-msvc]\nrustflags = "-Ctarget-feature=+crt-static"\n'
    assert problems(tmp_path / "d", cargo_config=target_cfg) == []


def test_project_level_cargo_config_counts(tmp_path: Path) -> None:
    (tmp_path / ".cargo").mkdir()
    (tmp_path / ".cargo" / "config.toml").write_text('[build]\nrustflags = ["-C", "target-feature=+crt-static"]\n', encoding="utf-8")
    assert problems(tmp_path, cargo_config=None) == []


def test_lockfile_and_inx(tmp_path: Path) -> None:
    one(problems(tmp_path, lock=False), "no Cargo.lock")
    crate = write_crate(tmp_path / "b")
    (tmp_path / "b" / "inf" / "WazabiEDR_Driver.inx").unlink()
    found = preflight.inspect(crate, tmp_path / "b" / "inf" / "WazabiEDR_Driver.inx", env={}, stop=tmp_path / "b").problems
    one(found, "INF template (.inx) not found")
    one(problems(tmp_path / "c", inx=inx_bytes("[Strings]\na=b\n")), "no [Version] section")
    one(problems(tmp_path / "d", inx=b"[Version]\n\xff\xfd garbage"), "not valid UTF-8")


def test_no_cargo_toml(tmp_path: Path) -> None:
    found = preflight.inspect(tmp_path / "driver", None, env={}).problems
    assert "no Cargo.toml" in found[0].message


def test_build_task_reports_first_problem_and_lists_the_rest(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_crate(project, cargo_config=None, build_rs=None)
    ctx, lines = make_ctx(project)
    monkeypatch.setattr("driverpipe.image.wdk.host_is_windows", lambda: True)
    monkeypatch.delenv("RUSTFLAGS", raising=False)
    monkeypatch.delenv("CARGO_ENCODED_RUSTFLAGS", raising=False)
    from driverpipe.image import build

    with pytest.raises(ConfigError) as exc:
        build.run(ctx, from_path=None)
    assert "no build script" in exc.value.message and "(and 1 more problem listed above)" in exc.value.message
    assert any("+crt-static" in line for line in lines)


def test_linux_kmdf_without_build_host_explains_every_option(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_crate(project)
    ctx, _ = make_ctx(project, flags={"build.model": "kmdf"})
    monkeypatch.setattr("driverpipe.image.wdk.host_is_windows", lambda: False)
    from driverpipe.image import build

    with pytest.raises(EnvironmentProblem) as exc:
        build.run(ctx, from_path=None)
    hint = exc.value.hint or ""
    assert "build_hosts" in hint and "--from PATH" in hint and "--model wdm" in hint


@pytest.mark.parametrize(
    ("windows", "host", "wanted", "model"),
    [
        (False, "", "auto", "wdm"),
        (False, "bh", "auto", "kmdf"),
        (True, "", "auto", "kmdf"),
        (True, "", "wdm", "wdm"),
        (False, "", "kmdf", "kmdf"),
    ],
)
def test_model_route(project: Path, monkeypatch: pytest.MonkeyPatch, windows: bool, host: str, wanted: str, model: str) -> None:
    """Windows keeps the article's KMDF build as the default; Linux without a build host takes the WDM route."""
    write_crate(project)
    ctx, _ = make_ctx(project, flags={"build.model": wanted, "build.build_host": host or None})
    monkeypatch.setattr("driverpipe.image.wdk.host_is_windows", lambda: windows)
    from driverpipe.image import build

    got, why = build.choose_model(ctx)
    assert got == model and why


def test_a_wdm_driver_type_is_accepted(project: Path) -> None:
    crate = write_crate(project, cargo_toml=CARGO_TOML.replace('driver-type              = "KMDF"', 'driver-type = "WDM"'))
    info = preflight.read_crate(crate)
    assert info.driver_type == "WDM" and info.kmdf is None
