"""Print how long `invoke sign`'s core takes here (osslsigncode): sign .sys, build + sign .cat, verify.

Run: python bench/bench_sign.py [ROUNDS]. Informational only; no test asserts on time.
Everything happens in a temporary directory (its own XDG_DATA_HOME, no keyring).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from pe_image import SAMPLE_INF, write_pe  # noqa: E402


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    if shutil.which("osslsigncode") is None:
        print("osslsigncode not on PATH: nothing to measure (apt-get install osslsigncode)")
        return 3
    with tempfile.TemporaryDirectory(prefix="driverpipe-bench-") as tmp:
        root = Path(tmp)
        shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
        (root / "user.toml").write_text("", encoding="utf-8")
        os.environ.update(XDG_DATA_HOME=str(root / "data"), DRIVERPIPE_CONFIG=str(root / "user.toml"), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
        from driverpipe.core.config import load
        from driverpipe.core.context import RunContext
        from driverpipe.signing import sign

        ctx = RunContext(config=load(root), echo=lambda _: None, progress=lambda _: None)
        started = time.perf_counter()
        backend, cert = sign.prepare(ctx, new_cert=False)
        print(f"certificate creation: {time.perf_counter() - started:.2f} s")
        times = []
        for i in range(rounds):
            pkg = root / f"pkg{i}"
            pkg.mkdir()
            write_pe(pkg / "WazabiEDR_Driver.sys", marker=str(i).encode())
            (pkg / "WazabiEDR_Driver.inf").write_text(SAMPLE_INF, encoding="utf-8")
            t0 = time.perf_counter()
            sign.sign_package(ctx, pkg, "WazabiEDR_Driver", backend=backend, cert=cert)
            times.append(time.perf_counter() - t0)
        print(f"sign+catalog+verify ({backend.name}), {rounds} rounds: median {statistics.median(times):.2f} s, max {max(times):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
