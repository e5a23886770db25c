"""Start-up cost of `invoke --list` against a bare `python -c "import invoke"`.

Prints the median wall time of each over several runs and their ratio.
Target: ratio <= 1.5 (heavy libraries must be imported lazily, in the steps).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = 15


def measure(argv: list[str]) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    bare = measure([sys.executable, "-c", "import invoke"])
    listing = measure([sys.executable, "-m", "invoke", "--list"])
    ratio = listing / bare
    print(f"python -c 'import invoke': {bare * 1000:7.1f} ms (median of {RUNS})")
    print(f"invoke --list:             {listing * 1000:7.1f} ms (median of {RUNS})")
    print(f"ratio:                     {ratio:7.2f}  (target <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
