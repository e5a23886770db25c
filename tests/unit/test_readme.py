"""The README stays true: its config reference matches the schema, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from driverpipe.core.schema_doc import render

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_config_reference_matches_schema() -> None:
    match = re.search(r"<!-- config-reference:start -->\n(.*)<!-- config-reference:end -->", README, re.S)
    assert match, "README lacks the config reference markers"
    assert match.group(1) == render(), "README config reference is stale: paste `python -m driverpipe.core.schema_doc`"


def test_quick_start_has_the_two_commands() -> None:
    assert "\nbash ci/setup-linux.sh && invoke build sign deploy\n" in README
    assert "\npython3 -m pytest\n" in README
    assert (REPO / "ci" / "setup-linux.sh").is_file()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "\npython3 -m pytest\n" in ci
