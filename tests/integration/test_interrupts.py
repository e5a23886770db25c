"""Ctrl-C during a long VM operation returns at once (exit 130), even when the tool it waits on ignores SIGINT."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

STUBBORN_VIRSH = """#!{python}
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # worst case: the tool ignores Ctrl-C
if "domstate" in sys.argv:
    print("shut off (shutdown)")
    sys.exit(0)
time.sleep(60)
"""


HUNG_VIRSH = """#!{python}
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
with open({calls!r}, "a") as fh:
    fh.write(" ".join(sys.argv[1:]) + "\\n")
time.sleep(60)  # every call hangs, domstate included
"""


def _interrupt_vm_start(project: Path, bin_dir: Path) -> tuple[subprocess.Popen[str], float, str, str]:
    (project / "user-config.toml").write_text(
        'default_target = "t"\n[targets.t]\ntransport = "local"\nvm_host = "lv"\nvm_name = "win11"\ntest_machine = true\n[vm_hosts.lv]\nkind = "libvirt"\n',
        encoding="utf-8",
    )
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), "vm.start"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc, time.monotonic() - sent, out, err


def test_ctrl_c_with_every_virsh_call_hung_never_calls_virsh_again(project: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    virsh = bin_dir / "virsh"
    virsh.write_text(HUNG_VIRSH.format(python=sys.executable, calls=str(calls)), encoding="utf-8")
    virsh.chmod(virsh.stat().st_mode | stat.S_IEXEC)
    proc, took, out, err = _interrupt_vm_start(project, bin_dir)
    assert proc.returncode == 130, out + err
    assert took < 2.0, f"took {took:.1f} s after Ctrl-C"
    assert "Traceback" not in err, err
    assert len(calls.read_text().splitlines()) == 1, f"the hung tool ran again after Ctrl-C: {calls.read_text()}"


def test_ctrl_c_during_libvirt_vm_start_returns_within_2_s(project: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    virsh = bin_dir / "virsh"
    virsh.write_text(STUBBORN_VIRSH.format(python=sys.executable), encoding="utf-8")
    virsh.chmod(virsh.stat().st_mode | stat.S_IEXEC)
    proc, took, out, err = _interrupt_vm_start(project, bin_dir)  # Ctrl-C lands well inside `virsh start`
    assert proc.returncode == 130, out + err
    assert took < 2.0, f"took {took:.1f} s after Ctrl-C"
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted", err
