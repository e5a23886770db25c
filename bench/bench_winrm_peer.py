"""An unchanged redeploy over the WinRM transport, measured on the server side of a real
protocol exchange: the loopback endpoint in tests/winrm_peer.py (pyspnego NTLM + message
encryption, psrpcore PSRP) answering from the fake guest.

Prints, for HTTP with message encryption and for HTTPS: the pipelines an unchanged redeploy ran
and the pools it opened (counted by the endpoint), the HTTP requests and WSMan actions they took,
the median wall time of a redeploy and of one pipeline over loopback, and the same counts for a
rebuilt driver (new .sys and .cat) deployed over the loaded one. Loopback hides network
latency: multiply the pipeline count by a real link's round trip to estimate a lab guest.
Run: python bench/bench_winrm_peer.py [--runs N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from driverpipe.core.config import load  # noqa: E402
from driverpipe.core.context import RunContext  # noqa: E402
from driverpipe.targets import deploy  # noqa: E402
from driverpipe.targets.capture import Capture  # noqa: E402
from driverpipe.transports.winrm import WinRMGuest  # noqa: E402
from fakes.capture_handlers import advance, state  # noqa: E402
from fakes.guest import FakeWindows  # noqa: E402
from fakes.package import StubPackage  # noqa: E402
from winrm_peer import WinRMPeer  # noqa: E402

PASSWORD = secrets.token_urlsafe(16)  # a throwaway for the loopback endpoint, never written anywhere


def measure(root: Path, tls: bool, runs: int) -> None:
    machine = FakeWindows.prepared()
    machine.files["C:\\Tools\\Dbgview.exe"] = b"MZ fake Dbgview.exe"
    pkgdir = root / f"package-{tls}"
    pkgdir.mkdir()
    files = []
    for name, data in (("WazabiEDR_Driver.sys", os.urandom(40_000)), ("WazabiEDR_Driver.inf", b"[Version]"), ("WazabiEDR_Driver.cat", b"0\x82cat")):
        (pkgdir / name).write_bytes(data)
        files.append(pkgdir / name)
    cer = pkgdir / "WazabiEDR_Test.cer"
    cer.write_bytes(b"0\x82\x01\x0afake DER certificate")
    thumb = hashlib.sha1(cer.read_bytes()).hexdigest().upper()
    for store in machine.cert_stores.values():
        store.add(thumb)
    pkg = StubPackage(pkgdir, "WazabiEDR_Driver", files, cer)
    with WinRMPeer(machine, password=PASSWORD, tls=tls, work_dir=root / f"peer-{tls}") as peer:
        user = root / f"user-{tls}.toml"
        user.write_text(
            f"[targets.bench]\ntransport = 'winrm'\nhost = '127.0.0.1'\nuser = 'tester'\npassword_env = 'BENCH_PASSWORD'\n"
            f"test_machine = true\nport = {peer.port}\n[targets.bench.winrm]\nssl = {'true' if tls else 'false'}\n",
            encoding="utf-8",
        )
        os.environ["DRIVERPIPE_CONFIG"] = str(user)
        ctx = RunContext(config=load(root=root), echo=lambda s: None, progress=lambda s: None)
        guest = WinRMGuest(
            name="bench",
            host="127.0.0.1",
            user="tester",
            password=PASSWORD,
            port=peer.port,
            ssl=tls,
            ca_bundle=str(peer.cert_pem) if tls else "",
            say=lambda s: None,
        )

        def capture(c: RunContext, g: object, run_id: str) -> Capture:
            return Capture(c, g, run_id, sleep=lambda s: advance(machine, s), clock=lambda: state(machine).now)

        def once() -> None:
            code = deploy.deploy_to(ctx, guest, pkg, ctx.config.target("bench"), capture_factory=capture, sleep=lambda s: None)
            assert code == 0

        try:
            once()  # the first deploy copies the package
            times: list[float] = []
            counts: list[tuple[int, int, Counter[str]]] = []
            for _ in range(runs):
                scripts, requests, actions = len(peer.stats.scripts), peer.stats.requests, len(peer.stats.actions)
                started = time.perf_counter()
                once()
                times.append(time.perf_counter() - started)
                counts.append((len(peer.stats.scripts) - scripts, peer.stats.requests - requests, Counter(peer.stats.actions[actions:])))
            # The developer's loop: a rebuilt driver (new .sys and .cat) over the loaded one.
            files[0].write_bytes(os.urandom(40_000))
            files[2].write_bytes(os.urandom(64))
            scripts, requests_before = len(peer.stats.scripts), peer.stats.requests
            started = time.perf_counter()
            once()
            changed = (len(peer.stats.scripts) - scripts, peer.stats.requests - requests_before, time.perf_counter() - started)
        finally:
            guest.close()
        pipelines, requests, actions = counts[-1]
        redeploy = statistics.median(times)
        label = "HTTPS" if tls else "HTTP + message encryption"
        print(f"{label}:")
        print(f"  unchanged redeploy: {pipelines} pipelines, {peer.stats.pools_opened} pool opened in {runs + 1} deploys, {requests} HTTP requests")
        print(f"  WSMan actions per redeploy: {dict(sorted(actions.items()))}")
        print(f"  median redeploy {redeploy * 1000:.1f} ms; {redeploy / pipelines * 1000:.1f} ms per pipeline over loopback")
        print(f"  rebuilt driver (.sys and .cat changed): {changed[0]} pipelines, {changed[1]} HTTP requests, {changed[2] * 1000:.1f} ms")
        print(f"  protocol errors seen by the endpoint: {len(peer.stats.protocol_errors)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    os.environ["BENCH_PASSWORD"] = PASSWORD
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
        for tls in (False, True):
            measure(root, tls, max(1, args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
