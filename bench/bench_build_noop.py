"""An unchanged `invoke build` (WDM route, Linux) against a bare no-op `cargo build` of the same crate.

Works on a private copy of the crate (the checkout's target/ is untouched).
Prints, side by side in one run:
- the first (cold) build of the copy;
- the build step in-process (what the pipeline adds to cargo: run cargo, read
  its artifact message, see the image is unchanged) vs the bare no-op cargo
  build, medians over RUNS, and their ratio (target <= 1.5);
- the whole `invoke build` process vs the bare cargo, for honesty: it also pays
  for starting Python and Invoke, which cargo does not.
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
RUNS = 10


def median_of(fn) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copy(REPO / "pyproject.toml", project)
        shutil.copy(REPO / "tasks.py", project)
        shutil.copytree(REPO / "driver", project / "driver", ignore=shutil.ignore_patterns("target"))
        shutil.copytree(REPO / "inf", project / "inf")
        (project / "none.toml").write_text("", encoding="utf-8")
        env = dict(os.environ, DRIVERPIPE_CONFIG=str(project / "none.toml"))
        os.environ["DRIVERPIPE_CONFIG"] = env["DRIVERPIPE_CONFIG"]
        invoke = [sys.executable, "-m", "invoke", "build"]

        start = time.perf_counter()
        subprocess.run(invoke, cwd=project, env=env, check=True, stdout=subprocess.DEVNULL)
        cold = time.perf_counter() - start

        wdm = project / "driver" / "target" / "driverpipe-wdm"  # the crate the WDM route derives
        bare_argv = ["cargo", "build", "--release"]

        def bare() -> None:
            subprocess.run(bare_argv, cwd=wdm, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        from driverpipe.core.config import load
        from driverpipe.core.context import RunContext
        from driverpipe.image import build

        ctx = RunContext(config=load(root=project), dry=False, echo=lambda _line: None, progress=lambda _line: None)

        def step() -> None:
            build.run(ctx, from_path=None)

        def whole() -> None:
            subprocess.run(invoke, cwd=project, env=env, check=True, stdout=subprocess.DEVNULL)

        bare_s, step_s, whole_s = median_of(bare), median_of(step), median_of(whole)
        print(f"cold invoke build (fresh copy, WDM route): {cold * 1000:8.1f} ms")
        print(f"bare no-op cargo build:                    {bare_s * 1000:8.1f} ms (median of {RUNS})")
        print(f"unchanged build step, in-process:          {step_s * 1000:8.1f} ms (median of {RUNS})")
        print(f"unchanged `invoke build`, whole process:   {whole_s * 1000:8.1f} ms (median of {RUNS})")
        print(f"ratio (step / bare cargo):                 {step_s / bare_s:8.2f}  (target <= 1.5)")
        print(f"ratio (whole process / bare cargo):        {whole_s / bare_s:8.2f}  (includes Python + Invoke start-up)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
