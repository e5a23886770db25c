"""The Wine agent's client side (targets/wine/agent.py) against a stand-in agent program (no Wine here).

The real agent runs under real Wine in tests/integration/test_wine_target.py; this pins the
protocol edges: one answer per request line, a refused request, an agent that dies or hangs,
and the one restart allowed (Wine's transient start-up failure, before the request was read).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from driverpipe.targets.state import DeployStepFailed
from driverpipe.targets.wine.agent import Agent, AgentTimeout
from driverpipe.targets.wine.prefix import TRANSIENT, WinePrefix

FAKE = r"""
import json, sys, time, pathlib
mode = pathlib.Path(sys.argv[0]).with_suffix(".mode").read_text().strip()
count = pathlib.Path(sys.argv[0]).with_suffix(".starts")
n = int(count.read_text() or 0) + 1 if count.exists() else 1
count.write_text(str(n))
if mode == "transient" and n == 1:
    sys.stderr.write("wine: failed to map the shared user data page\n"); sys.exit(1)
for line in sys.stdin:
    fields = line.rstrip("\n").split("\t")
    if fields[0] == "exit":
        break
    if mode == "die":
        sys.exit(3)
    if mode == "hang":
        time.sleep(30)
    if fields[0] == "bad":
        print(json.dumps({"error": "usage"}), flush=True)
        continue
    print(json.dumps({"op": fields[0], "fields": fields[1:], "error": 0}), flush=True)
"""


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Agent]:
    script = tmp_path / "fakewine.py"
    script.write_text(FAKE, encoding="utf-8")
    launcher = tmp_path / "wine"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n', encoding="utf-8")
    launcher.chmod(0o755)
    (tmp_path / "fakewine.mode").write_text("ok", encoding="utf-8")
    prefix = WinePrefix(tmp_path / "prefix", wine=str(launcher), say=lambda _l: None)
    (tmp_path / "prefix" / ".driverpipe").mkdir(parents=True)
    monkeypatch.setattr(prefix, "check_alive", lambda during: None)
    monkeypatch.setattr(prefix, "running", lambda: True)
    a = Agent(prefix, "C:\\driverpipe\\agent.exe")
    yield a
    a.close()


def mode(agent: Agent, value: str) -> None:
    (agent.prefix.path.parent / "fakewine.mode").write_text(value, encoding="utf-8")


def test_one_process_answers_every_request_and_each_start_is_logged(agent: Agent) -> None:
    assert agent.request(["query", "WazabiEDR"], during="q", timeout=10) == {"op": "query", "fields": ["WazabiEDR"], "error": 0}
    assert agent.request(["checks", "\\\\.\\X", "i,1,0,"], during="c", timeout=10)["fields"] == ["\\\\.\\X", "i,1,0,"]
    log = (agent.prefix.state_dir / "processes.log").read_text(encoding="utf-8").splitlines()
    assert len(log) == 1 and log[0].split("\t")[2:] == ["agent.exe", "the agent"]


def test_a_value_with_a_tab_or_newline_never_reaches_the_agent(agent: Agent) -> None:
    with pytest.raises(DeployStepFailed, match="tab or a line break"):
        agent.request(["query", "a\tb"], during="q", timeout=10)


def test_a_refused_request_is_one_failed_step(agent: Agent) -> None:
    with pytest.raises(DeployStepFailed, match="refused the request"):
        agent.request(["bad"], during="q", timeout=10)


def test_an_agent_that_dies_is_a_failed_step_not_a_retry(agent: Agent) -> None:
    mode(agent, "die")
    with pytest.raises(DeployStepFailed, match="ended without answering"):
        agent.request(["stop", "WazabiEDR", "100"], during="the service stop", timeout=10)
    assert (agent.prefix.path.parent / "fakewine.starts").read_text() == "1"


def test_an_agent_that_hangs_is_ended_after_the_timeout(agent: Agent) -> None:
    mode(agent, "hang")
    with pytest.raises(AgentTimeout):
        agent.request(["start", "WazabiEDR"], during="the service start", timeout=0.5)
    assert agent.proc is None


def test_wines_transient_start_failure_starts_the_agent_once_more(agent: Agent) -> None:
    mode(agent, "transient")
    assert TRANSIENT in "wine: failed to map the shared user data page"
    assert agent.request(["query", "S"], during="q", timeout=10)["op"] == "query"
    assert (agent.prefix.path.parent / "fakewine.starts").read_text() == "2"
