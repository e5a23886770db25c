"""The tier-0 Wine target, for real: Debian's Wine loads the Linux-built WDM image.

Real: cargo + rust-lld (driver image and the Windows client), osslsigncode,
Wine 8 (wineboot, wineserver, services, winedevice.exe, sc.exe, reg.exe,
setupapi, wintrust), Invoke in subprocesses. The driver's DriverEntry, its
dispatch routines and DriverUnload really run inside winedevice.exe and their
DbgPrint lines are read from Wine's debug channel.

What this proves and what it does not: see the README's "Verified where" (Wine
is user-mode NT emulation: no IRQL, no signature enforcement, no bugchecks).
Marker `wine`: in CI a missing Wine fails these tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import need, need_tool, run_invoke

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.wine, pytest.mark.wdm, pytest.mark.cargo, pytest.mark.osslsigncode]


@pytest.fixture(scope="module")
def wine_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One per-user state dir (so one prefix, created once) for the module's tests."""
    yield from wine_state_folder(tmp_path_factory, "wine-state")


def wine_state_folder(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A per-user state folder for one test module (Wine and the signing tool required); its prefixes stopped at the end."""
    need_tool("wine")
    need_tool("wineserver")
    need_tool("osslsigncode")
    from driverpipe.image.build import target_std_installed

    need(target_std_installed("x86_64-pc-windows-msvc"), "rustup target add x86_64-pc-windows-msvc")
    state = factory.mktemp(name)
    yield state
    for prefix in (state / "driverpipe" / "wine").glob("*"):
        _stop(prefix)


def _stop(prefix: Path) -> None:
    from driverpipe.targets.wine.prefix import WinePrefix

    WinePrefix(prefix, say=lambda _line: None).stop(force=True)


def _copy_checkout(project: Path) -> None:
    ignore = shutil.ignore_patterns("target", "__pycache__")
    shutil.copytree(REPO / "driver", project / "driver", ignore=ignore)
    shutil.copytree(REPO / "inf", project / "inf")
    shutil.copytree(REPO / "tests" / "vm", project / "tests" / "vm", ignore=ignore)


@pytest.fixture
def checkout(project: Path, wine_state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    _copy_checkout(project)
    monkeypatch.setenv("XDG_STATE_HOME", str(wine_state))
    yield project
    for prefix in (wine_state / "driverpipe" / "wine").glob("*"):
        _stop(prefix)


def invoke(cwd: Path, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return run_invoke(cwd, *args, env=dict(os.environ, DRIVERPIPE_PFX_PASSWORD="pfx-Secret-42", **env), timeout=timeout)


def prefix_of(wine_state: Path, name: str = "wine") -> Path:
    return wine_state / "driverpipe" / "wine" / name


def wine_processes(prefix: Path) -> dict[int, str]:
    from driverpipe.targets.wine.prefix import WinePrefix

    return WinePrefix(prefix).processes()


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


# ----------------------------------------------------------------------------- the main job


def test_build_sign_deploy_then_unload_on_the_builtin_wine_target(checkout: Path, wine_state: Path) -> None:
    done = invoke(checkout, "build", "sign", "deploy")
    out = done.stdout + done.stderr  # progress lines (==>) go to stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "driver model wdm" in out and "[wdm model]" in out
    assert "wine: TESTSIGNING: not applicable on wine" in out and "reboot: not applicable on wine" in out
    assert "install WazabiEDR from WazabiEDR_Driver.inf (setupapi DefaultInstall)" in out
    assert "signature: WinVerifyTrust S_OK" in out
    assert "wine: WazabiEDR is RUNNING" in out
    assert "smoke test ok: CreateFileW ok, DeviceIoControl -> 1, ReadFile -> 1, CloseHandle -> 0" in out
    assert "load: PASS: 2/2 lines in order" in out and "[WazabiEDR] DriverEntry called" in out
    assert "deploy ok: WazabiEDR_Driver loaded on wine" in out
    prefix = prefix_of(wine_state)
    assert (prefix / "drive_c" / "WazabiEDR" / "WazabiEDR_Driver.sys").is_file()
    assert wine_processes(prefix), "deploy leaves the driver loaded (documented): Wine keeps running"
    log = (prefix / ".driverpipe" / "dbgprint.log").read_text(encoding="utf-8")
    assert "\t[WazabiEDR] ready (device \\Device\\WazabiEDR, symlink \\DosDevices\\WazabiEDR)" in log

    started = prefix / ".driverpipe" / "processes.log"  # one line per Wine process a task starts
    before = len(started.read_text(encoding="utf-8").splitlines())
    again = invoke(checkout, "deploy")
    assert again.returncode == 0, again.stderr
    assert "==> push" not in again.stderr and "install WazabiEDR from" not in again.stderr, "an unchanged redeploy copies and installs nothing"
    new = [line.split("\t")[2] for line in started.read_text(encoding="utf-8").splitlines()[before:]]
    assert new == ["wazabi-wine-client.exe"], f"an unchanged redeploy starts ONE Wine process (the agent), not {new}"

    verify = invoke(checkout, "verify")
    assert verify.returncode == 0 and "load: PASS" in verify.stdout, verify.stdout + verify.stderr

    unload = invoke(checkout, "unload")
    assert unload.returncode == 0, unload.stderr
    assert "unload: PASS: 2/2 lines in order" in unload.stdout and "[WazabiEDR] DriverUnload called" in unload.stdout
    assert "\\\\.\\WazabiEDR is gone" in unload.stdout
    assert not wine_processes(prefix), "unload ends the Wine processes"
    logs = invoke(checkout, "logs")
    assert logs.returncode == 0 and (checkout / "artifacts" / "logs" / "wine" / "dbgprint.log").is_file()


def test_dry_run_prints_the_wine_commands_and_creates_nothing(checkout: Path, wine_state: Path) -> None:
    fresh = wine_state.parent / "fresh-dry-state"  # outside the project (the checkout is tmp_path)
    done = invoke(checkout, "--dry", "build", "sign", "deploy", XDG_STATE_HOME=str(fresh))
    assert done.returncode == 0, done.stderr
    assert "[dry] wine wazabi-wine-client.exe start WazabiEDR" in done.stdout + done.stderr and "setupapi.dll,InstallHinfSection" in done.stdout + done.stderr
    assert "pfx-Secret-42" not in done.stdout + done.stderr
    assert not fresh.exists() and not (checkout / "driver" / "target").exists()


# ----------------------------------------------------------------------------- regression


def test_regress_three_cycles_and_the_fault_sweep(checkout: Path, wine_state: Path) -> None:
    built = invoke(checkout, "build", "--features", "fault-injection", "sign")
    assert built.returncode == 0, built.stderr
    done = invoke(checkout, "regress", "--cycles", "3", "--verifier")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    report_dir = next((checkout / "artifacts" / "regress").glob("wine-*"))
    data = json.loads((report_dir / "regress.json").read_text(encoding="utf-8"))
    status = {p["name"]: p["status"] for p in data["phases"]}
    assert status == {
        "test_revert_to_clean_state": "pass",
        "test_deploy_and_smoke_test": "pass",
        "test_load_unload_cycles": "pass",
        "test_fault_injection[IoCreateDevice]": "pass",
        "test_fault_injection[IoCreateSymbolicLink]": "pass",
        "test_driver_verifier": "n/a",
    }
    env = data["environment"]
    assert env["target_kind"] == "wine" and env["driver_model"] == "wdm" and "bugcheck detection" in env["not_applicable"]
    lines = [text for p in data["phases"] for _, text in p["dbgprint"]]
    assert "[WazabiEDR] fault injection: failing step 2 (IoCreateSymbolicLink)" in lines
    assert "[WazabiEDR] IoCreateSymbolicLink failed (status 0xC0000001)" in lines
    assert lines.count("[WazabiEDR] DriverUnload called") >= 3
    assert (report_dir / "regress.junit.xml").is_file() and (report_dir / "regress.html").is_file()
    assert not wine_processes(prefix_of(wine_state)), "regress leaves the target stopped"


def _patch_driver(checkout: Path, old: str, new: str) -> None:
    lib = checkout / "driver" / "src" / "lib.rs"
    text = lib.read_text(encoding="utf-8")
    assert old in text
    lib.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_leaky_unwind_is_caught_from_wines_traces(checkout: Path) -> None:
    """On Wine a reload after a leaky unwind still works (Wine deletes the devices): the traces must tell."""
    _patch_driver(checkout, "            // Unwind step 1.\n            IoDeleteDevice(device);", "            let _ = device; // leaks, on purpose")
    assert invoke(checkout, "build", "--features", "fault-injection", "sign").returncode == 0
    done = invoke(checkout, "regress", "--cycles", "1")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr
    report_dir = next((checkout / "artifacts" / "regress").glob("wine-*"))
    data = json.loads((report_dir / "regress.json").read_text(encoding="utf-8"))
    phase = next(p for p in data["phases"] if p["name"] == "test_fault_injection[IoCreateSymbolicLink]")
    assert phase["status"] == "fail" and "created 1 device(s) and deleted 0" in phase["message"]


def test_a_driver_entry_that_never_returns_is_ended_by_pid(checkout: Path, wine_state: Path) -> None:
    _patch_driver(
        checkout,
        "        print(messages::DRIVER_ENTRY_CALLED);\n",
        "        print(messages::DRIVER_ENTRY_CALLED);\n        loop {\n            core::hint::spin_loop();\n        }\n",
    )
    assert invoke(checkout, "build", "sign").returncode == 0
    done = invoke(checkout, "deploy", DRIVERPIPE_EXPECT_LOAD_TIMEOUT="4")
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr
    line = one_error(done)
    assert "DriverEntry did not return within 4 s" in line and "winedevice.exe (pid" in line
    assert not wine_processes(prefix_of(wine_state)), "a failed deploy ends Wine"


# ----------------------------------------------------------------------------- faults and bad input


def interrupted_deploy(checkout: Path, at: str, action) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    """`invoke deploy` in a subprocess; `action(proc)` runs when its progress reaches the step `at`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), "deploy"],
        cwd=checkout,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # progress lines (==>) go to stderr
        if line.startswith(f"==> {at}"):
            action(proc)
            break
    return proc


def test_wineserver_killed_mid_deploy_is_one_line_and_the_next_run_recovers(checkout: Path, wine_state: Path) -> None:
    assert invoke(checkout, "build", "sign").returncode == 0
    assert invoke(checkout, "deploy").returncode == 0  # the prefix and its server exist now
    prefix = prefix_of(wine_state)
    from driverpipe.targets.wine.prefix import WinePrefix

    def kill_server(_proc: subprocess.Popen[str]) -> None:
        server = WinePrefix(prefix).server_pid()
        assert server is not None
        os.kill(server, signal.SIGKILL)

    proc = interrupted_deploy(checkout, "not-applicable", kill_server)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 4, out + err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Wine server" in errors[0] and "run the task again" in errors[0], err
    recovered = invoke(checkout, "deploy")
    assert recovered.returncode == 0, recovered.stdout[-2000:] + recovered.stderr


def test_ctrl_c_exits_130_and_stops_wine(checkout: Path, wine_state: Path) -> None:
    assert invoke(checkout, "build", "sign").returncode == 0
    proc = interrupted_deploy(checkout, "not-applicable", lambda p: p.send_signal(signal.SIGINT))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while wine_processes(prefix_of(wine_state)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not wine_processes(prefix_of(wine_state))


def _own_prefix_target(checkout: Path, prefix: Path) -> None:
    (checkout / "user-config.toml").write_text(f'[targets.w2]\ntransport = "wine"\n[targets.w2.wine]\nprefix = "{prefix}"\n', encoding="utf-8")


def test_a_deleted_prefix_is_recreated_and_a_broken_one_is_reset_by_vm_revert(checkout: Path, wine_state: Path) -> None:
    prefix = wine_state.parent / "own-prefix"  # outside the project (the checkout is tmp_path)
    _own_prefix_target(checkout, prefix)
    assert invoke(checkout, "build", "sign").returncode == 0
    first = invoke(checkout, "deploy", "--target", "w2")
    assert first.returncode == 0 and "creating Wine prefix" in first.stderr, first.stdout[-2000:] + first.stderr
    assert invoke(checkout, "unload", "--target", "w2").returncode == 0

    shutil.rmtree(prefix)
    again = invoke(checkout, "deploy", "--target", "w2")
    assert again.returncode == 0 and "creating Wine prefix" in again.stderr, again.stderr
    assert invoke(checkout, "vm.stop", "--target", "w2").returncode == 0
    assert not wine_processes(prefix)

    (prefix / "system.reg").write_bytes(b"\x00garbage")
    broken = invoke(checkout, "deploy", "--target", "w2")
    assert broken.returncode == 3, broken.stderr
    line = one_error(broken)
    assert "is not usable" in line and "vm.revert" in line
    status = invoke(checkout, "vm.status", "--target", "w2")
    assert status.returncode == 0 and "not usable" in status.stdout
    reset = invoke(checkout, "vm.revert", "--target", "w2")
    assert reset.returncode == 0, reset.stderr
    assert invoke(checkout, "deploy", "--target", "w2").returncode == 0
    _stop(prefix)


def test_vm_revert_and_deploy_never_reach_through_wines_link_to_the_users_home(checkout: Path, wine_state: Path, tmp_path: Path) -> None:
    """wineboot links users/<u>/Documents to the user's home: a guest_dir under it is the user's real
    folder. Refused by `vm.revert` and by the push, in one line; nothing in that folder changes."""
    import getpass

    home = tmp_path / "home"
    (home / "Documents").mkdir(parents=True)
    prefix = wine_state.parent / "linked-prefix"
    guest_dir = f"C:\\users\\{getpass.getuser()}\\Documents\\drv"
    (checkout / "user-config.toml").write_text(
        f"[targets.w3]\ntransport = 'wine'\nguest_dir = '{guest_dir}'\n[targets.w3.wine]\nprefix = '{prefix}'\n", encoding="utf-8"
    )
    assert invoke(checkout, "build", "sign").returncode == 0
    tools = {k: os.environ.get(k, str(Path.home() / d)) for k, d in (("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo"))}
    env = {"HOME": str(home), **tools}
    try:
        assert invoke(checkout, "vm.start", "--target", "w3", **env).returncode == 0
        link = prefix / "drive_c" / "users" / getpass.getuser() / "Documents"
        assert link.is_symlink() and link.resolve().is_relative_to(home), "Wine's own link to the home"
        theirs = link.resolve() / "drv"
        theirs.mkdir()
        (theirs / "thesis.tex").write_text("mine\n", encoding="utf-8")
        before = sorted(p.name for p in theirs.iterdir())
        revert = invoke(checkout, "vm.revert", "--target", "w3", **env)
        assert revert.returncode == 2 and "symbolic link" in one_error(revert), revert.stderr
        deploy = invoke(checkout, "deploy", "--target", "w3", **env)
        assert deploy.returncode == 2 and "symbolic link" in one_error(deploy), deploy.stderr
        assert sorted(p.name for p in theirs.iterdir()) == before and (theirs / "thesis.tex").read_text() == "mine\n"
    finally:
        _stop(prefix)


def test_a_prefix_inside_the_project_is_refused(checkout: Path) -> None:
    _own_prefix_target(checkout, checkout / "prefix")
    done = invoke(checkout, "deploy", "--target", "w2")
    assert done.returncode == 2 and "inside the project" in one_error(done)


def test_wine_missing_is_exit_3_with_the_install_line(checkout: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cargo", "rustc", "osslsigncode"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    assert invoke(checkout, "build", "sign").returncode == 0
    done = invoke(checkout, "deploy", PATH=str(bin_dir))
    assert done.returncode == 3, done.stderr
    line = one_error(done)
    assert "wine is not installed" in line and "apt-get install wine wine64" in line


# ----------------------------------------------------------------------------- signatures inside the prefix


def test_winverifytrust_in_the_prefix_sees_a_flipped_byte(checkout: Path, wine_state: Path) -> None:
    """Wine does not enforce signatures at load; the deploy checks the embedded one with WinVerifyTrust."""
    assert invoke(checkout, "build", "sign").returncode == 0
    assert invoke(checkout, "deploy").returncode == 0
    from driverpipe.core.config import load
    from driverpipe.core.context import RunContext
    from driverpipe.core.errors import CheckFailed
    from driverpipe.signing.sign import check_signed_package
    from driverpipe.targets.wine.target import WineTarget

    os.environ["XDG_STATE_HOME"] = str(wine_state)
    ctx = RunContext(config=load(root=checkout), dry=False, echo=lambda _l: None, progress=lambda _l: None)
    os.environ["DRIVERPIPE_PFX_PASSWORD"] = "pfx-Secret-42"
    pkg = check_signed_package(ctx)
    target = WineTarget(ctx, ctx.config.target(None)).open()
    try:
        pushed = target.prefix.host_path("C:\\WazabiEDR\\WazabiEDR_Driver.sys")
        data = bytearray(pushed.read_bytes())
        data[0x400] ^= 0xFF
        pushed.write_bytes(bytes(data))
        with pytest.raises(CheckFailed, match=r"0x80096010 TRUST_E_BAD_DIGEST"):
            target.check_signature(ctx, pkg)
        unsigned = next(p for p in (checkout / "driver" / "target" / "driverpipe-wdm" / "target").rglob("WazabiEDR_Driver.dll"))
        shutil.copyfile(unsigned, pushed)
        with pytest.raises(CheckFailed, match=r"0x800B0100 TRUST_E_NOSIGNATURE"):
            target.check_signature(ctx, pkg)
    finally:
        target.changed = True
        target.close()
