"""The Wine target's speed, side by side in one run on this machine: P7, P11, P8.

Works on a private copy of the project and a fresh per-user state dir (a new
prefix). Each figure is the median and the spread (min-max) of several runs,
with how many runs failed. Prints:
- the first `invoke build sign deploy` (prefix creation included), once;
- P7: an unchanged redeploy, in-process (`deploy.run`: what the pipeline adds)
  and as a whole `invoke deploy` process, against the raw floor measured in the
  same run: three bare Wine processes (`wine sc stop`, `wine sc start`, the
  agent's one-shot device checks). Targets: <= 1.5x in-process, <= 2x whole;
  and the Wine processes one unchanged redeploy starts (<prefix>/.driverpipe/processes.log);
- P11: a one-line driver edit (the `ready` DbgPrint text) -> `invoke build sign
  deploy` as one process, with the time of each step (from its `==>` progress
  lines). Target <= 1.5 s;
- P8: `invoke regress --cycles 10` with the fault sweep. Target <= 10 s.

Python here never writes bytecode when PYTHONDONTWRITEBYTECODE is set (some CI
images set it): every start then compiles driverpipe again. The whole-process
figures run with it unset, as on a developer's machine, after one warm-up run.
Usage: python bench/bench_wine.py [--runs N] [--regress-runs N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r'(c"\[WazabiEDR\] ready \(device \\\\Device\\\\WazabiEDR, symlink \\\\DosDevices\\\\WazabiEDR)(?:, edit \d+)?(\)\\n")')


class Series:
    """Durations of one measurement, and how many runs failed."""

    def __init__(self, name: str):
        self.name = name
        self.values: list[float] = []
        self.failed = 0

    def run(self, fn: Callable[[], object]) -> None:
        start = time.perf_counter()
        try:
            fn()
        except (subprocess.CalledProcessError, AssertionError, Exception) as exc:  # a failed run is counted, never timed
            self.failed += 1
            print(f"  {self.name}: run failed: {str(exc).splitlines()[0][:200]}", file=sys.stderr)
            return
        self.values.append(time.perf_counter() - start)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def line(self, unit: str = "ms", target: str = "") -> str:
        if not self.values:
            return f"{self.name:<52} no successful run ({self.failed} failed)"
        scale = 1000.0 if unit == "ms" else 1.0
        lo, hi = min(self.values) * scale, max(self.values) * scale
        fmt = "{:7.0f}" if unit == "ms" else "{:7.2f}"
        spread = f"{fmt.format(lo).strip()}-{fmt.format(hi).strip()}"
        return f"{self.name:<52} {fmt.format(self.median * scale)} {unit} median, spread {spread} {unit}, {len(self.values)} ok / {self.failed} failed" + (
            f"  ({target})" if target else ""
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7, help="runs of each P7/P11 measurement")
    parser.add_argument("--regress-runs", type=int, default=3, help="runs of `invoke regress --cycles 10`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        project = base / "project"
        project.mkdir()
        ignore = shutil.ignore_patterns("target", "__pycache__")
        for name in ("pyproject.toml", "tasks.py"):
            shutil.copy(REPO / name, project)
        for sub in ("driver", "inf", "tests/vm"):
            shutil.copytree(REPO / sub, project / sub, ignore=ignore)
        (base / "none.toml").write_text("", encoding="utf-8")
        env = dict(os.environ, XDG_STATE_HOME=str(base / "state"), XDG_DATA_HOME=str(base / "data"), DRIVERPIPE_CONFIG=str(base / "none.toml"))
        env.setdefault("DRIVERPIPE_PFX_PASSWORD", "bench-only-password")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ.update({k: env[k] for k in ("XDG_STATE_HOME", "XDG_DATA_HOME", "DRIVERPIPE_CONFIG", "DRIVERPIPE_PFX_PASSWORD")})

        def invoke(*argv: str) -> None:
            subprocess.run(
                [sys.executable, "-m", "invoke", *argv], cwd=project, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900
            )

        first = Series("first build sign deploy (fresh prefix)")
        first.run(lambda: invoke("build", "sign", "deploy"))
        if first.failed:
            print("the first deploy failed: nothing to measure", file=sys.stderr)
            return 1

        # ---------------------------------------------------------------- P7
        from driverpipe.core.config import load
        from driverpipe.core.context import RunContext
        from driverpipe.targets import deploy

        prefix = base / "state" / "driverpipe" / "wine" / "wine"
        processes_log = prefix / ".driverpipe" / "processes.log"
        ctx = RunContext(config=load(root=project), dry=False, echo=lambda _l: None, progress=lambda _l: None)

        def in_process() -> None:
            assert deploy.run(ctx, target=None) == 0, "deploy failed"

        invoke("deploy")  # warm-up: bytecode written, agent built and pushed
        step, whole, floor = Series("P7 unchanged redeploy, in-process"), Series("P7 unchanged `invoke deploy`, whole process"), Series("P7 raw floor")
        wine_env = dict(env, WINEPREFIX=str(prefix), WINEDEBUG="-all")
        agent = "C:\\driverpipe\\wazabi-wine-client.exe"

        def raw() -> None:
            checks = [agent, "checks", "\\\\.\\WazabiEDR", "i,2236416,64,,ioctl-unhandled", "r,0,16,,read-unhandled"]
            for argv in (["sc", "stop", "WazabiEDR"], ["sc", "start", "WazabiEDR"], checks):
                subprocess.run(["wine", *argv], env=wine_env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        started_before = _lines(processes_log)
        for _ in range(args.runs):
            step.run(in_process)
        wine_per_deploy = (_lines(processes_log) - started_before) / max(1, len(step.values) + step.failed)
        for _ in range(args.runs):
            whole.run(lambda: invoke("deploy"))
        for _ in range(args.runs):
            floor.run(raw)
        invoke("deploy")  # the raw floor's stop/start bypassed the pipeline: settle the state it records

        # ---------------------------------------------------------------- P11
        lib = project / "driver" / "core" / "src" / "messages.rs"
        p11 = Series("P11 one-line edit -> `invoke build sign deploy`")
        phases: dict[str, list[float]] = defaultdict(list)
        for i in range(1, args.runs + 1):
            text = lib.read_text(encoding="utf-8")
            edited, n = READY.subn(rf"\g<1>, edit {i}\g<2>", text)
            assert n == 1, "the bench's edit point (the `ready` line in driver/core/src/messages.rs) moved"
            lib.write_text(edited, encoding="utf-8")
            p11.run(lambda: _timed_steps(project, env, phases))

        # ---------------------------------------------------------------- P8
        invoke("unload")
        invoke("build", "--features", "fault-injection", "sign")
        p8 = Series("P8 `invoke regress --cycles 10` with the fault sweep")
        for _ in range(args.regress_runs):
            p8.run(lambda: invoke("regress", "--cycles", "10"))

        print(first.line("s"))
        print(floor.line("ms", "three bare Wine processes"))
        print(step.line("ms", f"ratio {step.median / floor.median:.2f} to the floor, target <= 1.5"))
        print(whole.line("ms", f"ratio {whole.median / floor.median:.2f} to the floor, target <= 2"))
        print(f"{'P7 Wine processes per unchanged redeploy':<52} {wine_per_deploy:7.1f}")
        print(p11.line("s", "target <= 1.5 s"))
        for label, values in phases.items():
            print(f"    {label:<48} {statistics.median(values) * 1000:7.0f} ms median, spread {min(values) * 1000:.0f}-{max(values) * 1000:.0f} ms")
        print(p8.line("s", "target <= 10 s"))
    return 0


def _lines(path: Path) -> int:
    try:
        return len(path.read_text(encoding="utf-8").splitlines())
    except OSError:
        return 0


def _timed_steps(project: Path, env: dict[str, str], phases: dict[str, list[float]]) -> None:
    """One `invoke build sign deploy`; the time from each `==>` progress line to the next, by step."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "build", "sign", "deploy"],
        cwd=project,
        env=dict(env, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    marks: list[tuple[str, float]] = [("start-up (Python, Invoke, config)", start)]
    for line in proc.stdout:
        if line.startswith("==> "):
            label = line[4:].split(":", 1)[0].strip()
            label = re.sub(r"\s+(?:->|in|\().*$", "", label)[:48]
            marks.append((label, time.perf_counter()))
        elif line.startswith("deploy ok:"):
            marks.append(("exit (after the verdict: Python's teardown)", time.perf_counter()))
    code = proc.wait()
    end = time.perf_counter()
    if code != 0:
        raise subprocess.CalledProcessError(code, "invoke build sign deploy")
    seen: dict[str, float] = defaultdict(float)
    for (label, at), (_, nxt) in zip(marks, [*marks[1:], ("end", end)], strict=True):
        seen[label] += nxt - at
    for label, seconds in seen.items():
        phases[label].append(seconds)


if __name__ == "__main__":
    raise SystemExit(main())
