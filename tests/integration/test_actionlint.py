"""actionlint (the real tool) over .github/workflows: syntax, expressions, contexts, runner labels, shellcheck.

Skips on a developer machine without actionlint, FAILS under CI=true (.ci/run
installs it from the Go module proxy). Custom self-hosted labels are declared
in .github/actionlint.yaml.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import need_tool

pytestmark = pytest.mark.actionlint

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / ".github" / "actionlint.yaml"


def _actionlint(tool: Path, files: list[Path]) -> subprocess.CompletedProcess[str]:
    argv = [str(tool), "-no-color", "-config-file", str(CONFIG), *map(str, files)]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_workflows_pass_actionlint() -> None:
    tool = need_tool("actionlint")
    files = sorted((REPO / ".github" / "workflows").glob("*.yml"))
    assert files
    done = _actionlint(tool, files)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_really_checks(tmp_path: Path) -> None:
    # Guards against a no-op run (wrong config, no files): a known-bad workflow must fail.
    tool = need_tool("actionlint")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: [self-hosted, no-such-label]\n    steps:\n      - run: echo ${{ matrix.nope }}\n",
        encoding="utf-8",
    )
    done = _actionlint(tool, [bad])
    assert done.returncode != 0
    assert "no-such-label" in done.stdout and "matrix" in done.stdout
