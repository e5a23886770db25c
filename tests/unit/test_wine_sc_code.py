"""Wine's sc.exe (still used for `sc delete`): its Win32 code comes from its err line, never from the exit status."""

from __future__ import annotations

import pytest

from driverpipe.targets.wine.prefix import Completed
from driverpipe.targets.wine.target import SC_UNKNOWN, wine_sc_code


def done(rc: int, stderr: str) -> Completed:
    return Completed(argv=["wine", "sc"], returncode=rc, stdout="", stderr=stderr, seconds=0.1)


@pytest.mark.parametrize(
    ("stderr", "code"),
    [
        ("0024:err:sc:main failed to start service 1060\n", 1060),
        ("0024:err:sc:main failed to stop service 1062\n", 1062),
        ("0024:err:sc:main failed to delete service 1072\n", 1072),
        ("0024:err:sc:query_service failed to query service status 1060\n", 1060),
        ("0024:err:sc:main failed to open service manager: 5\n", 5),
    ],
)
def test_the_code_is_the_one_in_the_err_line(stderr: str, code: int) -> None:
    assert wine_sc_code(done(1060 & 0xFF, stderr)) == code


def test_without_an_err_line_the_code_is_unknown_not_the_truncated_exit_status() -> None:
    assert 1060 & 0xFF == 36
    assert wine_sc_code(done(36, "")) == SC_UNKNOWN
    assert wine_sc_code(done(0, "")) == 0


@pytest.mark.parametrize("answer", [{"error": "5"}, {"error": True}, {"error": None}, {"error": 1.5}])
def test_an_agent_answer_with_a_malformed_number_is_a_failed_step(answer: dict[str, object]) -> None:
    from driverpipe.targets.state import DeployStepFailed
    from driverpipe.targets.wine.agent import answer_number as _num

    with pytest.raises(DeployStepFailed, match="unreadable"):
        _num("wine", answer, "error", 0)
    assert _num("wine", {"error": 1060}, "error", 0) == 1060 and _num("wine", {}, "error", 0) == 0
