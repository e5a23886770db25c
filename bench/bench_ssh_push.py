"""Benchmark: SSHGuest.push of a 64 MB random file vs OpenSSH `scp`, on loopback.

Starts the same throwaway sshd the integration tests use (tests/sshd_server.py),
pushes a fresh random file with SSHGuest.push (hash skip off, a new destination
each run, so every run really copies), then copies it with `scp`, and prints
MB/s of both and the ratio (push / scp) over N runs. The push time includes the
partial-file hash check and rename (the fake powershell hashes the file for real).
Prints figures only; it asserts nothing.

    python bench/bench_ssh_push.py [--size-mb 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import driverpipe.transports.base as guest_base  # noqa: E402
from driverpipe.transports.ssh import SSHGuest  # noqa: E402
from sshd_server import SshdServer, install_fake_powershell  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not Path("/usr/sbin/sshd").exists() or not shutil.which("scp"):
        print("needs /usr/sbin/sshd and scp (apt-get install openssh-server openssh-client)", file=sys.stderr)
        return 3
    with tempfile.TemporaryDirectory(prefix="bench-ssh-") as tmp:
        base = Path(tmp)
        server = SshdServer(base / "sshd").start()
        try:
            bin_dir = install_fake_powershell(base / "fake")
            guest_base.SCRIPTS_DIR = base / "fake" / "ps"  # the fake knows shipped + test scripts from here
            src = base / "payload.bin"
            with src.open("wb") as fh:
                for _ in range(args.size_mb):
                    fh.write(os.urandom(1 << 20))
            size_mb = src.stat().st_size / 1e6
            guest = SSHGuest(
                name="bench",
                host="127.0.0.1",
                port=server.port,
                user=server.user,
                key_file=str(server.user_key),
                known_hosts=server.known_hosts,
                powershell_path=str(bin_dir / "powershell"),
                say=lambda _s: None,
                hash_skip=False,
            )
            dest = base / "guest"
            dest.mkdir()
            scp_base = [
                "scp",
                "-q",
                "-o",
                "BatchMode=yes",
                "-o",
                f"UserKnownHostsFile={server.known_hosts}",
                "-o",
                "StrictHostKeyChecking=yes",
                "-i",
                str(server.user_key),
                "-P",
                str(server.port),
            ]
            push_rates: list[float] = []
            scp_rates: list[float] = []
            for run in range(args.runs):
                t0 = time.perf_counter()
                guest.push(src, str(dest / f"push-{run}.bin"))
                push_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                subprocess.run([*scp_base, str(src), f"{server.user}@127.0.0.1:{dest / f'scp-{run}.bin'}"], check=True, timeout=600)
                scp_s = time.perf_counter() - t0
                push_rates.append(size_mb / push_s)
                scp_rates.append(size_mb / scp_s)
                print(f"run {run + 1}: push {push_rates[-1]:7.1f} MB/s   scp {scp_rates[-1]:7.1f} MB/s   ratio {push_rates[-1] / scp_rates[-1]:.2f}")
                for p in dest.iterdir():
                    p.unlink()
            guest.close()
            push_med, scp_med = statistics.median(push_rates), statistics.median(scp_rates)
            print(
                f"median over {args.runs} runs ({size_mb:.0f} MB): push {push_med:.1f} MB/s, scp {scp_med:.1f} MB/s, "
                f"ratio {push_med / scp_med:.2f} (target >= 0.80)"
            )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
