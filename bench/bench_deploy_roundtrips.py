"""Remote round trips and WinRM pools opened per deploy, against the fake guest.

A prepared test machine (TESTSIGNING active, filter set, cert trusted): one first
deploy (copies the package), then a redeploy of the unchanged package. Target for
the redeploy: 1 pool, at most 3 round trips (state, load batch, capture read).
Counts come from tests/fakes (FakeGuest counts a round trip per run_script,
run_batch, push, pull and read_range, like the real transports); a real guest's
timings are not measured here. Run: python bench/bench_deploy_roundtrips.py
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from driverpipe.core.config import load  # noqa: E402
from driverpipe.core.context import RunContext  # noqa: E402
from driverpipe.targets import deploy  # noqa: E402
from fakes.guest import FakeCapture, FakeGuest, FakeWindows  # noqa: E402
from fakes.package import StubPackage  # noqa: E402

Pkg = StubPackage


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
        user = root / "user.toml"
        user.write_text("[targets.bench]\ntransport = 'local'\ntest_machine = true\n", encoding="utf-8")
        os.environ["DRIVERPIPE_CONFIG"] = str(user)
        ctx = RunContext(config=load(root=root), echo=lambda s: None, progress=lambda s: None)
        pkgdir = root / "package"
        pkgdir.mkdir()
        files = []
        for name, size in (("WazabiEDR_Driver.sys", 48_000), ("WazabiEDR_Driver.inf", 2_000), ("WazabiEDR_Driver.cat", 9_000)):
            (pkgdir / name).write_bytes(os.urandom(size))
            files.append(pkgdir / name)
        cer = pkgdir / "WazabiEDR_Test.cer"
        cer.write_bytes(os.urandom(800))
        pkg = Pkg(pkgdir, "WazabiEDR_Driver", files, cer)
        machine = FakeWindows.prepared(hashlib.sha1(cer.read_bytes()).hexdigest().upper())
        target = ctx.config.target("bench")

        rows = []
        for label in ("first deploy (copies package)", "redeploy, unchanged package"):
            guest = FakeGuest(machine, name="bench")
            start = time.perf_counter()
            deploy.deploy_to(ctx, guest, pkg, target, capture_factory=lambda c, g, run_id: FakeCapture(g))
            elapsed = time.perf_counter() - start
            rows.append((label, guest.round_trips, guest.pools_opened, [n for n, _ in guest.calls], elapsed))

    print(f"{'deploy':<34} {'round trips':>11} {'pools':>5} {'local ms':>8}  scripts")
    for label, trips, pools, calls, elapsed in rows:
        print(f"{label:<34} {trips:>11} {pools:>5} {elapsed * 1000:>8.1f}  {', '.join(calls)}")
    _, trips, pools, _, _ = rows[-1]
    ok = trips <= 3 and pools == 1
    print(f"target for the unchanged redeploy: <= 3 round trips, 1 pool -> {'met' if ok else 'NOT met'}")
    print("(fake guest: round trips counted as a real transport would make them; no network, no real Windows)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
