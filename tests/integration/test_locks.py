"""One target, one run: two real processes at once against a Wine prefix, a QEMU VM host's
lock, a guest lease over real SSH (the fake powershell keeps Set-GuestLease.ps1's rules on a
real file), and the checkout's build output. Each pair ends with one run done and the other
waiting or refused with the holder named; a killed holder is taken over.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import need, need_tool, run_invoke

REPO = Path(__file__).resolve().parents[2]


def _errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in done.stderr, done.stderr
    return [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]


HOLDER = textwrap.dedent(
    """
    import sys, time
    from driverpipe.core.config import load
    from driverpipe.core.context import RunContext
    from driverpipe.core import locks
    from driverpipe.image.lock import build_lock
    ctx = RunContext(config=load(), dry=False, echo=lambda _l: None, progress=lambda _l: None)
    kind = sys.argv[1]
    lock = build_lock(ctx) if kind == "build" else locks.target_lock(ctx, ctx.config.target(sys.argv[2]))
    lock.acquire(10, print)
    print("held", flush=True)
    time.sleep(120)
    """
)


def _hold(project: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *args], cwd=project, env=dict(os.environ), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "held":
            return proc
    raise AssertionError("the holder never took the lock")


def test_the_build_output_is_held_by_one_run_at_a_time_and_a_killed_holder_is_taken_over(project: Path, tmp_path: Path) -> None:
    shutil.copytree(REPO / "driver", project / "driver", ignore=shutil.ignore_patterns("target"))
    shutil.copytree(REPO / "inf", project / "inf")
    from fakes_build.pe import make_pe

    image = tmp_path / "WazabiEDR_Driver.sys"
    image.write_bytes(make_pe())
    holder = _hold(project, "build")
    try:
        refused = run_invoke(project, "build", "--from", str(image), env=dict(os.environ, DRIVERPIPE_DEPLOY_LOCK_WAIT="1"))
        errors = _errors(refused)
        assert refused.returncode == 3 and len(errors) == 1, refused.stderr
        assert "the build output of" in errors[0] and f"pid {holder.pid}" in errors[0]
        assert not (project / "driver" / "target" / "release" / "driverpipe-build.json").exists(), "the refused run wrote nothing"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    done = run_invoke(project, "build", "--from", str(image))
    assert done.returncode == 0, done.stderr
    assert "taking it over" in done.stderr and f"pid {holder.pid}" in done.stderr


@pytest.mark.parametrize(
    "garbage",
    [b'{"owner": "x", "host": "h", "pid": "12ab", "started": 1}', b'{"owner": "x", "host": "h", "pid": 1e30, "started": "noon"}', b"\0" * 64, b'{"own'],
    ids=["pid-text", "pid-huge-started-text", "nul-filled", "truncated"],
)
def test_a_garbage_holder_file_is_never_a_traceback(project: Path, tmp_path: Path, garbage: bytes) -> None:
    """The holder file is untrusted input: held by a live run it reads "another run" (exit 3, one line);
    with nobody holding the lock the next run takes it."""
    shutil.copytree(REPO / "driver", project / "driver", ignore=shutil.ignore_patterns("target"))
    shutil.copytree(REPO / "inf", project / "inf")
    from fakes_build.pe import make_pe

    image = tmp_path / "WazabiEDR_Driver.sys"
    image.write_bytes(make_pe())
    holder_file = project / "driver" / "target" / ".driverpipe.lock.holder"
    holder = _hold(project, "build")
    try:
        holder_file.write_bytes(garbage)
        refused = run_invoke(project, "build", "--from", str(image), env=dict(os.environ, DRIVERPIPE_DEPLOY_LOCK_WAIT="0.5"))
        errors = _errors(refused)
        assert refused.returncode == 3 and len(errors) == 1 and "in use by another run" in errors[0], refused.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    holder_file.write_bytes(garbage)
    done = run_invoke(project, "build", "--from", str(image))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_a_waiting_run_proceeds_when_the_holder_finishes(project: Path, tmp_path: Path) -> None:
    shutil.copytree(REPO / "driver", project / "driver", ignore=shutil.ignore_patterns("target"))
    shutil.copytree(REPO / "inf", project / "inf")
    from fakes_build.pe import make_pe

    image = tmp_path / "WazabiEDR_Driver.sys"
    image.write_bytes(make_pe())
    holder = _hold(project, "build")
    waiter = subprocess.Popen(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), "build", "--from", str(image)],
        cwd=project,
        env=dict(os.environ, DRIVERPIPE_DEPLOY_LOCK_WAIT="60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    assert waiter.poll() is None, "the second run waits"
    holder.terminate()
    holder.wait()
    _out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert "waiting up to 60 s for the build output" in err and f"pid {holder.pid}" in err


def test_a_qemu_vm_is_changed_by_one_run_at_a_time(project: Path) -> None:
    (project / "user-config.toml").write_text(
        '[targets.t]\ntransport = "local"\nvm_host = "q"\nvm_name = "tiny"\ntest_machine = true\n[vm_hosts.q]\nkind = "qemu"\n', encoding="utf-8"
    )
    holder = _hold(project, "target", "t")
    try:
        refused = run_invoke(project, "vm.stop", "--target", "t", env=dict(os.environ, DRIVERPIPE_DEPLOY_LOCK_WAIT="0.5"))
        errors = _errors(refused)
        assert refused.returncode == 3 and len(errors) == 1
        assert "VM tiny on q is in use by" in errors[0] and f"pid {holder.pid}" in errors[0]
        status = run_invoke(project, "vm.status", "--target", "t")
        assert "in use by" not in status.stderr, "read-only tasks take no lock"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


LEASE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from driverpipe.transports.ssh import SSHGuest
    from driverpipe.core.locks import GuestLease
    p = json.loads(sys.argv[1])
    guest = SSHGuest(name="lab", host="127.0.0.1", port=p["port"], user=p["user"], key_file=p["key"], known_hosts=Path(p["known_hosts"]),
                     powershell_path=p["powershell"], connect_timeout=5, script_timeout=30, say=lambda _s: None)
    lease = GuestLease(guest, p["path"], p["seconds"], "guest lab")
    try:
        lease.acquire(p["wait"], lambda line: print(line, flush=True))
    except Exception as exc:
        print("refused: " + exc.message, flush=True)
        sys.exit(3)
    print("held", flush=True)
    time.sleep(p["hold"])
    lease.release()
    """
)


@pytest.mark.ssh
def test_a_guest_lease_over_ssh_excludes_a_second_run_and_expires_when_its_holder_dies(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    need_tool("sshd")
    need_tool("ssh-keygen")
    from sshd_server import SshdServer, install_fake_powershell

    server = SshdServer(tmp_path_factory.mktemp("sshd")).start()
    try:
        fake_bin = install_fake_powershell(tmp_path_factory.mktemp("fake"))
        base = {
            "port": server.port,
            "user": server.user,
            "key": str(server.user_key),
            "known_hosts": str(server.known_hosts),
            "powershell": str(fake_bin / "powershell"),
            "path": str(tmp_path / "guest" / "lease.json"),
        }

        def start(**kw: object) -> subprocess.Popen[str]:
            return subprocess.Popen([sys.executable, "-c", LEASE, json.dumps({**base, **kw})], stdout=subprocess.PIPE, text=True)

        first = start(seconds=60, wait=5, hold=120)  # long: only its death (not expiry) frees it below
        assert first.stdout is not None and first.stdout.readline().strip() == "held"
        second = start(seconds=3, wait=0.5, hold=0)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 3 and "refused: guest lab is leased by" in out and f"pid {first.pid}" in out
        lease = json.loads(Path(base["path"]).read_text(encoding="utf-8"))
        assert lease["pid"] == first.pid
        first.send_signal(signal.SIGKILL)  # dies without releasing: this host sees its pid gone
        first.wait()
        third = start(seconds=3, wait=0.5, hold=0)
        out, _ = third.communicate(timeout=60)
        assert third.returncode == 0 and "which is gone; taking it over" in out and f"pid {first.pid}" in out, out
        # A holder on another host is only taken over once its lease expired.
        now = int(time.time())
        other = {"token": "t", "owner": "ci", "host": "elsewhere", "pid": first.pid, "started": now, "expires": now + 2}
        Path(base["path"]).write_text(json.dumps(other), encoding="utf-8")
        fourth = start(seconds=3, wait=10, hold=0)
        out, _ = fourth.communicate(timeout=60)
        assert fourth.returncode == 0 and "waiting up to 10 s" in out and "had expired; taking it over" in out, out
    finally:
        server.stop()


@pytest.mark.wine
def test_two_runs_on_one_wine_prefix(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    need_tool("wine")
    from driverpipe.image.build import target_std_installed

    need(target_std_installed("x86_64-pc-windows-msvc"), "rustup target add x86_64-pc-windows-msvc")
    ignore = shutil.ignore_patterns("target", "__pycache__")
    for sub in ("driver", "inf", "tests/vm"):
        shutil.copytree(REPO / sub, project / sub, ignore=ignore)
    state = tmp_path_factory.mktemp("wine-lock-state")
    env = dict(os.environ, XDG_STATE_HOME=str(state), DRIVERPIPE_PFX_PASSWORD="pfx-Secret-42")
    assert run_invoke(project, "build", "--features", "fault-injection", "sign", env=env, timeout=300).returncode == 0
    regress = subprocess.Popen(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), "regress", "--cycles", "3"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert regress.stderr is not None
        for line in regress.stderr:
            if line.startswith("==> phase test_deploy_and_smoke_test"):
                break
        refused = run_invoke(project, "deploy", env=dict(env, DRIVERPIPE_DEPLOY_LOCK_WAIT="1"), timeout=120)
        errors = _errors(refused)
        assert refused.returncode == 3 and len(errors) == 1, refused.stderr
        assert "Wine prefix" in errors[0] and f"pid {regress.pid}" in errors[0]
        _out, err = regress.communicate(timeout=600)
        assert regress.returncode == 0, err[-2000:]
    finally:
        if regress.poll() is None:
            regress.kill()
    done = run_invoke(project, "deploy", env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert run_invoke(project, "unload", env=env, timeout=120).returncode == 0
