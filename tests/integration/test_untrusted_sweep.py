"""Bad input, round 2: what the pipeline did not make, and every file it reads back.

Each case runs `invoke ...` as a subprocess on its own copy of a project that was
really built and signed once (cargo + rust-lld, osslsigncode), with its own per-user
state and data folders and a foreign Wine prefix beside it, and asserts: the
documented exit code, exactly one `error:` line naming the key or file, no
traceback, no forbidden advice, and every file under the case's folder (the
project, the per-user folders, the foreign prefix) the same before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import need, need_tool

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "pfx-Sweep-7"
PKG = Path("driver/target/release/WazabiEDR_Driver_package")
NAME = "WazabiEDR_Driver"
pytestmark = [pytest.mark.wdm, pytest.mark.cargo, pytest.mark.osslsigncode]


def _env(base: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIVERPIPE_")}
    env.update(
        DRIVERPIPE_CONFIG=str(base / "user-config.toml"),
        DRIVERPIPE_PFX_PASSWORD=PASSWORD,
        XDG_STATE_HOME=str(base / "state"),
        XDG_DATA_HOME=str(base / "data"),
    )
    env.update(extra)
    return env


def _invoke(base: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), *args],
        cwd=base / "project",
        env=_env(base, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project built and signed for real, with a foreign Wine prefix (someone's documents) beside it."""
    need_tool("cargo")
    need_tool("osslsigncode")
    from driverpipe.image.build import target_std_installed

    need(target_std_installed("x86_64-pc-windows-msvc"), "rustup target add x86_64-pc-windows-msvc")
    base = tmp_path_factory.mktemp("untrusted")
    project = base / "project"
    project.mkdir()
    ignore = shutil.ignore_patterns("target", "__pycache__")
    shutil.copy(REPO / "pyproject.toml", project)
    for folder in ("driver", "inf"):
        shutil.copytree(REPO / folder, project / folder, ignore=ignore)
    (base / "user-config.toml").write_text("", encoding="utf-8")
    done = _invoke(base, "build", "sign")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    theirs = base / "their-prefix"
    (theirs / "drive_c" / "users" / "me" / "Documents").mkdir(parents=True)
    (theirs / "system.reg").write_text("WINE REGISTRY Version 2\n#arch=win64\n", encoding="utf-8")
    (theirs / "drive_c" / "users" / "me" / "Documents" / "thesis.odt").write_bytes(b"years of work")
    return base


@pytest.fixture
def case_dir(signed: Path, tmp_path: Path) -> Path:
    base = tmp_path / "case"
    shutil.copytree(signed, base, symlinks=True)
    return base


def _snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and not p.is_symlink() and not rel.startswith(skip):
            out[rel] = (p.stat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
        elif p.is_dir() and not any(p.iterdir()) and not rel.startswith(skip):
            out[rel + "/"] = (0, "")
    return out


# ----------------------------------------------------------------------------- case set-ups


def _user(text: str) -> Callable[[Path], None]:
    return lambda base: (base / "user-config.toml").write_text(text.replace("BASE", str(base)), encoding="utf-8")


def _wine_target(prefix: str, **wine: str) -> Callable[[Path], None]:
    extra = "".join(f'{k} = "{v}"\n' for k, v in wine.items())
    return _user(f'[targets.w]\ntransport = "wine"\n[targets.w.wine]\nprefix = "{prefix}"\n{extra}')


def _edit_toml(rel: str, edit: Callable[[dict], None]) -> Callable[[Path], None]:  # type: ignore[type-arg]
    def apply(base: Path) -> None:
        import tomlkit

        path = base / "project" / rel
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
        edit(doc)
        path.write_text(tomlkit.dumps(doc), encoding="utf-8")

    return apply


def _fault_steps(value: object) -> Callable[[Path], None]:
    return _edit_toml("pyproject.toml", lambda doc: doc["tool"]["driverpipe"]["regress"].__setitem__("fault_steps", value))


def _crate(table: str, key: str, value: object) -> Callable[[Path], None]:
    return _edit_toml("driver/Cargo.toml", lambda doc: doc.setdefault(table, {}).__setitem__(key, value))


def _write(rel: str, data: bytes, mode: int | None = None) -> Callable[[Path], None]:
    def apply(base: Path) -> None:
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if mode is not None:
            path.chmod(mode)

    return apply


def _tamper(member: str, offset: int) -> Callable[[Path], None]:
    """Flip one byte of a signed package file and edit the signing record to match (what a hostile edit does)."""

    def apply(base: Path) -> None:
        pkg = base / "project" / PKG
        path = pkg / member
        data = bytearray(path.read_bytes())
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
        record = json.loads((pkg / "driverpipe-sign.json").read_text(encoding="utf-8"))
        record["files"][member] = hashlib.sha256(bytes(data)).hexdigest()
        (pkg / "driverpipe-sign.json").write_text(json.dumps(record), encoding="utf-8")

    return apply


def _sign_record(edit: Callable[[dict], None]) -> Callable[[Path], None]:  # type: ignore[type-arg]
    def apply(base: Path) -> None:
        path = base / "project" / PKG / "driverpipe-sign.json"
        record = json.loads(path.read_text(encoding="utf-8"))
        edit(record)
        path.write_text(json.dumps(record), encoding="utf-8")

    return apply


def _foreign_package(base: Path) -> None:
    pkg = base / "project" / PKG
    shutil.rmtree(pkg)
    pkg.mkdir()
    (pkg / "notes.txt").write_text("mine, not the pipeline's\n", encoding="utf-8")


def _foreign_staging(base: Path) -> None:
    staging = base / "project" / PKG.with_name(f".{PKG.name}.staging")
    staging.mkdir()
    (staging / "notes.txt").write_text("a folder of mine with an unlucky name\n", encoding="utf-8")


def _remove(rel: str) -> Callable[[Path], None]:
    return lambda base: (base / rel).unlink()


def _all(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda base: [step(base) for step in steps] and None


@dataclass
class Case:
    id: str
    argv: list[str]
    setup: Callable[[Path], None]
    code: int
    says: str
    env: dict[str, str] = field(default_factory=dict)
    forbid: tuple[str, ...] = ("vm.revert", "delete", "rm -")


THEIRS = "BASE/their-prefix"
CASES = [
    # 1. delete only what the pipeline made: a foreign Wine prefix is refused, --force or not, and no fix deletes it
    Case("prefix-foreign-deploy", ["deploy", "--target", "w"], _wine_target(THEIRS), 2, "targets.w.wine.prefix"),
    Case("prefix-foreign-revert", ["vm.revert", "--target", "w"], _wine_target(THEIRS), 2, "was not made by driverpipe"),
    Case("prefix-foreign-revert-force", ["vm.revert", "--target", "w", "--force"], _wine_target(THEIRS), 2, "never changes or deletes it"),
    Case("prefix-foreign-snapshot", ["vm.snapshot", "--target", "w", "--name", "x"], _wine_target(THEIRS), 2, "targets.w.wine.prefix"),
    Case(
        "prefix-marker-garbage",
        ["vm.revert", "--target", "w"],
        _all(_wine_target(THEIRS), _write("their-prefix/.driverpipe/prefix.json", b"{not json")),
        2,
        "no .driverpipe/prefix.json",
    ),
    Case(
        "prefix-marker-wrong-shape",
        ["vm.revert", "--target", "w", "--force"],
        _all(_wine_target(THEIRS), _write("their-prefix/.driverpipe/prefix.json", b'{"format": 1, "wine": 7, "created": "yesterday"}')),
        2,
        "was not made by driverpipe",
    ),
    Case("package-foreign-folder", ["package"], _foreign_package, 2, f"{NAME}_package was not made by driverpipe"),
    Case(
        "package-foreign-staging",
        ["package"],
        _foreign_staging,
        2,
        f".{NAME}_package.staging was not made by driverpipe",
        env={"DRIVERPIPE_BUILD_DRIVER_VERSION": "1.2.3.4"},  # settings changed: the package is made again
    ),
    # 2. every file read back is untrusted: the build record, the signing record
    Case("build-record-garbage", ["package"], _write("project/driver/target/release/driverpipe-build.json", b"[1, 2"), 3, "unreadable build record"),
    Case(
        "build-record-elsewhere",
        ["sign"],
        _write(
            "project/driver/target/release/driverpipe-build.json",
            json.dumps({"format": 1, "artifact": "/etc/passwd", "sha256": {"artifact": "0" * 64}, "source": "cargo"}).encode(),
        ),
        3,
        "driverpipe-build.json: unreadable build record",
    ),
    Case(
        "sign-record-garbage",
        ["deploy", "--target", "w"],
        _all(_wine_target("BASE/p"), _write(f"project/{PKG}/driverpipe-sign.json", b"\xff\xfe")),
        1,
        "unreadable",
    ),
    Case(
        "sign-record-escapes",
        ["deploy", "--target", "w"],
        _all(_wine_target("BASE/p"), _sign_record(lambda r: r["files"].__setitem__("../../../../../user-config.toml", "0" * 64))),
        1,
        "driverpipe-sign.json is unreadable",
    ),
    Case(
        "sign-record-cert-escapes",
        ["deploy", "--target", "w"],
        _all(_wine_target("BASE/p"), _sign_record(lambda r: r["cert"].__setitem__("file", "../../x.cer"))),
        1,
        "unreadable",
    ),
    # 3. names from Cargo.toml are names
    Case("crate-name-dotdot", ["package"], _crate("package", "name", "../../../../evil"), 2, "[package] name '../../../../evil' is not a crate name"),
    Case("crate-name-slash", ["build"], _crate("package", "name", "a/b"), 2, "is not a crate name"),
    Case("lib-name-number", ["package"], _crate("lib", "name", 42), 2, "[lib] name 42 is not an identifier"),
    Case("lib-name-dash", ["build"], _crate("lib", "name", "wazabi-driver"), 2, "is not an identifier"),
    # 4. config checked at load, naming the key
    Case("host-syntax", ["doctor"], _user("[targets.a]\nhost = 'not a host!'\n"), 2, "targets.a.host: 'not a host!' is not a host name or IP address"),
    Case("host-syntax-unload", ["unload", "--target", "a"], _user("[targets.a]\nhost = 'h;rm'\npassword_env = 'P'\n"), 2, "targets.a.host"),
    Case("host-target-add", ["target-add", "--name", "x", "--host", "not a host!"], _user(""), 2, "host: 'not a host!' is not a host name"),
    Case("build-host-syntax", ["doctor"], _user("[build_hosts.b]\nhost = 'a b'\nuser = 'u'\n"), 2, "build_hosts.b.host"),
    Case("prefix-is-a-file", ["deploy", "--target", "w"], _all(_wine_target("BASE/afile"), _write("afile", b"x")), 2, "targets.w.wine.prefix"),
    Case(
        "wine-not-executable",
        ["deploy", "--target", "w"],
        _all(_wine_target("BASE/p", wine="BASE/notexec"), _write("notexec", b"#!/bin/sh\n", mode=0o644)),
        2,
        "targets.w.wine.wine",
    ),
    Case("wine-missing-file", ["vm.status", "--target", "w"], _wine_target("BASE/p", wine="BASE/nowhere/wine"), 2, "targets.w.wine.wine"),
    Case("wineserver-not-on-path", ["deploy", "--target", "w"], _wine_target("BASE/p", wineserver="wineserver-9"), 2, "targets.w.wine.wineserver"),
    Case("fault-steps-garbage", ["--dry", "regress"], _fault_steps(["IoCreateDevice", "rm -rf /"]), 2, "regress.fault_steps: 'rm -rf /' is not a step name"),
    Case("fault-steps-empty", ["doctor"], _fault_steps([]), 2, "regress.fault_steps: the list is empty"),
    Case("fault-steps-blank", ["doctor"], _fault_steps([""]), 2, "regress.fault_steps"),
    Case("pfx-corrupt", ["sign"], _write("data/driverpipe/certs/WazabiEDR_Test_Signing.pfx", b"0\x82garbage", mode=0o600), 2, "WazabiEDR_Test_Signing.pfx"),
    # A signed, unchanged package needs no key (sign is a no-op), so this one was never signed.
    Case(
        "pfx-wrong-password",
        ["sign"],
        _remove(f"project/{PKG}/driverpipe-sign.json"),
        3,
        "does not open it",
        env={"DRIVERPIPE_PFX_PASSWORD": "not-the-password"},
    ),
    # 6. the pre-deploy check verifies signatures, not records; --dry reports a tampered package too
    Case("tampered-sys-dry", ["--dry", "deploy", "--target", "w"], _all(_wine_target("BASE/p"), _tamper(f"{NAME}.sys", 0x400)), 1, "Authenticode digest"),
    Case("tampered-sys-wine", ["deploy", "--target", "w"], _all(_wine_target("BASE/p"), _tamper(f"{NAME}.sys", 0x400)), 1, f"{NAME}.sys"),
    Case(
        "tampered-sys-winrm-dry",
        ["--dry", "deploy", "--target", "r"],
        _all(_user("[targets.r]\nhost = '192.0.2.7'\npassword_env = 'P'\n"), _tamper(f"{NAME}.sys", 0x400)),
        1,
        f"{NAME}.sys",
    ),
    Case("tampered-catalog-dry", ["--dry", "deploy", "--target", "w"], _all(_wine_target("BASE/p"), _tamper(f"{NAME}.cat", 0x60)), 1, f"{NAME}.cat"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_untrusted_input_is_one_line_and_changes_nothing(case_dir: Path, case: Case) -> None:
    base = case_dir
    case.setup(base)
    argv = [a.replace("BASE", str(base)) for a in case.argv]
    before = _snapshot(base)
    done = _invoke(base, *argv, **case.env)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, f"expected one error line, got:\n{done.stderr}"
    assert case.says in errors[0], errors[0]
    assert done.returncode == case.code, errors[0]
    fix = errors[0].split("(fix:", 1)[1] if "(fix:" in errors[0] else ""
    for advice in case.forbid:
        assert advice not in fix, f"the fix suggests {advice!r}: {errors[0]}"
    assert _snapshot(base) == before, "untrusted input must change nothing"
    assert (base / "their-prefix" / "drive_c" / "users" / "me" / "Documents" / "thesis.odt").read_bytes() == b"years of work"
    assert not (base / "evil_package").exists() and not (base.parent / "evil_package").exists()


# ----------------------------------------------------------------------------- cases that need Wine running


@pytest.fixture
def wine_case(case_dir: Path) -> Iterator[Path]:
    need_tool("wine")
    need_tool("wineserver")
    yield case_dir
    from driverpipe.targets.wine.prefix import WinePrefix

    for prefix in (case_dir / "state" / "driverpipe" / "wine").glob("*"):
        WinePrefix(prefix, say=lambda _line: None).stop(force=True)


@pytest.mark.wine
def test_cargo_missing_on_the_wine_route_is_a_missing_tool_not_a_lost_connection(wine_case: Path) -> None:
    """7. The Wine agent is built with cargo at load; without cargo that is exit 3 with the install line."""
    base = wine_case
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for tool in ("wine", "wine64", "wineserver", "osslsigncode"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    before = _snapshot(base, skip=("state",))
    # An empty agent cache: a build of the agent left by another run would need no cargo.
    done = _invoke(base, "deploy", PATH=str(bin_dir), XDG_CACHE_HOME=str(base / "cache"), timeout=600)
    assert "Traceback" not in done.stderr, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert done.returncode == 3, errors[0]
    assert "cargo is not installed" in errors[0] and "rustup" in errors[0], errors[0]
    assert "connection lost" not in errors[0] and "bugcheck" not in errors[0], errors[0]
    assert _snapshot(base, skip=("state",)) == before, "only the pipeline's own prefix (per-user state) may change"


@pytest.mark.wine
def test_vm_revert_resets_our_own_prefix_whose_creation_was_interrupted(wine_case: Path) -> None:
    """1. A prefix that holds our marker (here: "ready": false, an interrupted creation) is ours to reset."""
    base = wine_case
    prefix = base / "state" / "driverpipe" / "wine" / "wine"
    (prefix / ".driverpipe").mkdir(parents=True)
    (prefix / ".driverpipe" / "prefix.json").write_text(json.dumps({"format": 1, "wine": "wine-0", "created": 1.0, "ready": False}), encoding="utf-8")
    (prefix / "half-made").write_text("left by an interrupted wineboot\n", encoding="utf-8")
    status = _invoke(base, "vm.status")
    assert status.returncode == 0 and "creation was interrupted" in status.stdout and "vm.revert" in status.stdout, status.stdout + status.stderr
    done = _invoke(base, "vm.revert", timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert not (prefix / "half-made").exists() and (prefix / "system.reg").is_file()
    marker = json.loads((prefix / ".driverpipe" / "prefix.json").read_text(encoding="utf-8"))
    assert marker["ready"] is True and marker["wine"] != "wine-0"
