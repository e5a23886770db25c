"""The Wine target's speed: first run, unchanged redeploy against the raw floor, a 10-cycle regress.

Works on a private copy of the project and a fresh per-user state dir (a new
prefix), so it measures a first run as a new machine has it. Prints:
- the first `invoke build sign deploy` (prefix creation included);
- an unchanged redeploy (in-process: what the pipeline adds; and the whole
  `invoke deploy` process) against the raw floor measured in the same run: the
  bare `wine sc stop`, `wine sc start` and client smoke it wraps; "ratio"
  (target <= 3);
- `invoke regress --cycles 10` with the fault sweep (target <= 60 s).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = 5


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        project = base / "project"
        project.mkdir()
        ignore = shutil.ignore_patterns("target", "__pycache__")
        for name in ("pyproject.toml", "tasks.py"):
            shutil.copy(REPO / name, project)
        for sub in ("driver", "inf", "vm/wine", "tests/vm"):
            shutil.copytree(REPO / sub, project / sub, ignore=ignore)
        (base / "none.toml").write_text("", encoding="utf-8")
        env = dict(os.environ, XDG_STATE_HOME=str(base / "state"), XDG_DATA_HOME=str(base / "data"), DRIVERPIPE_CONFIG=str(base / "none.toml"))
        env.setdefault("DRIVERPIPE_PFX_PASSWORD", "bench-only-password")
        os.environ.update({k: env[k] for k in ("XDG_STATE_HOME", "XDG_DATA_HOME", "DRIVERPIPE_CONFIG", "DRIVERPIPE_PFX_PASSWORD")})

        def invoke(*args: str) -> None:
            subprocess.run([sys.executable, "-m", "invoke", *args], cwd=project, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        first = timed(lambda: invoke("build", "sign", "deploy"))

        from driverpipe.core.config import load
        from driverpipe.core.context import RunContext
        from driverpipe.targets import deploy

        ctx = RunContext(config=load(root=project), dry=False, echo=lambda _l: None, progress=lambda _l: None)
        step = statistics.median(timed(lambda: deploy.run(ctx, target=None)) for _ in range(RUNS))
        whole = statistics.median(timed(lambda: invoke("deploy")) for _ in range(RUNS))

        prefix = base / "state" / "driverpipe" / "wine" / "wine"
        wine_env = dict(env, WINEPREFIX=str(prefix), WINEDEBUG="-all")
        client = "C:\\driverpipe\\wazabi-wine-client.exe"

        def raw() -> None:
            for argv in (["sc", "stop", "WazabiEDR"], ["sc", "start", "WazabiEDR"], [client, "smoke", "\\\\.\\WazabiEDR"]):
                subprocess.run(["wine", *argv], env=wine_env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        floor = statistics.median(timed(raw) for _ in range(RUNS))
        invoke("unload")

        invoke("build", "--features", "fault-injection", "sign")
        regress = timed(lambda: invoke("regress", "--cycles", "10"))

        print(f"first build sign deploy (fresh prefix):      {first:7.2f} s")
        print(f"raw floor (wine sc stop, sc start, smoke):   {floor * 1000:7.0f} ms (median of {RUNS})")
        print(f"unchanged redeploy, in-process:              {step * 1000:7.0f} ms (median of {RUNS})")
        print(f"unchanged `invoke deploy`, whole process:    {whole * 1000:7.0f} ms (median of {RUNS})")
        print(f"ratio (in-process redeploy / raw floor):     {step / floor:7.2f}  (target <= 3)")
        print(f"ratio (whole process / raw floor):           {whole / floor:7.2f}  (includes Python + Invoke start-up)")
        print(f"regress --cycles 10 with the fault sweep:    {regress:7.2f} s  (target <= 60 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
