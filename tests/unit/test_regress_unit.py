"""Pieces of the regression runner that need no VM: bugcheck parsing, dry run, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverpipe.checks.regress import parse_bugcheck_message, run
from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import ConfigError

EVENT_1001 = (
    "The computer has rebooted from a bugcheck.  The bugcheck was: 0x0000009f (0x0000000000000003, "
    "0xffffc00000000000, 0xfffff80000000000, 0xffffc00000001000). A dump was saved in: C:\\WINDOWS\\MEMORY.DMP. Report Id: x."
)


def test_bugcheck_code_and_parameters_from_event_1001() -> None:
    code, params = parse_bugcheck_message(EVENT_1001) or ("", [])
    assert code == "0x0000009f"
    assert params == ["0x0000000000000003", "0xffffc00000000000", "0xfffff80000000000", "0xffffc00000001000"]
    assert parse_bugcheck_message("no bugcheck here") is None


def test_regress_refuses_a_target_that_is_not_a_test_machine(project: Path) -> None:
    (project / "user-config.toml").write_text('[targets.prod]\nhost = "h"\n', encoding="utf-8")
    ctx = RunContext(config=load(root=project), echo=lambda s: None)
    with pytest.raises(ConfigError, match="test_machine is false"):
        run(ctx, target="prod")


def test_regress_dry_run_prints_the_plan_and_touches_nothing(project: Path) -> None:
    (project / "user-config.toml").write_text('[targets.lab]\nhost = "h"\ntest_machine = true\n', encoding="utf-8")
    (project / "tests" / "vm").mkdir(parents=True)
    out: list[str] = []
    ctx = RunContext(config=load(root=project), dry=True, echo=out.append)
    assert run(ctx, target="lab") == 0
    text = "\n".join(out)
    assert "10 load/unload cycles" in text and "IoCreateSymbolicLink" in text
    assert not (project / "artifacts").exists()
