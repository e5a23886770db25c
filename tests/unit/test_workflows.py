"""The GitHub workflows stay true: they parse, call only tasks and flags that exist, and never drift.

The workflows live once, in .github/workflows/. Every `invoke ...` line in a `run:` step is
parsed with Invoke's own parser over tasks.py's collection, so a renamed task or
flag fails here rather than at 2 a.m. on the nightly runner.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")  # PyYAML; a test dependency of this module only

REPO = Path(__file__).resolve().parents[2]
GITHUB = REPO / ".github" / "workflows"
WORKFLOWS = sorted(GITHUB.glob("*.yml"))


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    if True in data:
        data["on"] = data.pop(True)
    return dict(data)


def _parser() -> Any:
    from invoke import Program
    from invoke.parser import Parser, ParserContext

    sys.path.insert(0, str(REPO))
    try:
        from tasks import ns
    finally:
        sys.path.remove(str(REPO))
    return Parser(initial=ParserContext(args=Program().core_args()), contexts=ns.to_contexts())


def _run_scripts(wf: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for job_name, job in (wf.get("jobs") or {}).items():
        for step in job.get("steps") or []:
            if "run" in step:
                out.append((f"{job_name}/{step.get('name', step['run'][:30])}", str(step["run"])))
    return out


def invoke_commands(script: str) -> list[list[str]]:
    """The argv (after `invoke`) of every invoke command line in a shell or PowerShell script."""
    text = re.sub(r"\\\n", " ", script)  # bash line continuations
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if re.match(r"invoke\s", line):
            commands.append(shlex.split(line, comments=True)[1:])
    return commands


def check_invoke(argv: list[str]) -> list[str]:
    """Problems with one invoke command line (empty: every task and flag exists)."""
    from invoke.exceptions import ParseError

    from driverpipe.doctor import ALL_TASKS

    try:
        contexts = _parser().parse_argv(argv)
    except ParseError as exc:
        return [f"invoke {' '.join(argv)}: {exc}"]
    problems = []
    for ctx in contexts:
        if ctx.name == "doctor" and ctx.args["tasks"].got_value:
            unknown = {t for t in re.split(r"[,\s]+", ctx.args["tasks"].value) if t} - set(ALL_TASKS)
            if unknown:
                problems.append(f"invoke doctor --tasks: unknown {sorted(unknown)}")
    if not [c for c in contexts if c.name]:
        problems.append(f"invoke {' '.join(argv)}: no task")
    return problems


def test_there_are_workflows() -> None:
    assert {p.name for p in WORKFLOWS} >= {"tests.yml", "windows-build.yml", "nightly-regress.yml"}


def test_workflows_live_once() -> None:
    assert not (REPO / "ci" / "workflows").exists(), "workflows live only in .github/workflows"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_invoke_commands_name_existing_tasks_and_flags(path: Path) -> None:
    wf = _load(path)
    found = 0
    problems = []
    for where, script in _run_scripts(wf):
        for argv in invoke_commands(script):
            found += 1
            problems += [f"{where}: {p}" for p in check_invoke(argv)]
    assert not problems
    if path.name != "tests.yml":
        assert found, f"{path.name} runs no invoke command"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_secrets_only_reach_steps_through_env(path: Path) -> None:
    # A secret interpolated into a script body ends up in the script file on the runner.
    for where, script in _run_scripts(_load(path)):
        assert "secrets." not in script, f"{where}: use env: NAME: ${{{{ secrets.X }}}} and $NAME in the script"


def test_the_checker_rejects_unknown_tasks_and_flags() -> None:
    assert check_invoke(["regress", "--target", "x", "--report-dir", "r"]) == []
    assert check_invoke(["build", "--from", "a.dll", "--features", "fault-injection", "package", "sign"]) == []
    assert check_invoke(["vm.revert", "--target", "x"]) == []
    assert check_invoke(["nosuchtask"])
    assert check_invoke(["regress", "--no-such-flag"])
    assert check_invoke(["doctor", "--tasks", "build,packge"])
    assert invoke_commands("  invoke build \\\n  --features x package  # why\nif (...) { }") == [["build", "--features", "x", "package"]]


def test_tests_workflow_runs_ci_script_on_every_push_and_pr() -> None:
    wf = _load(GITHUB / "tests.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    job = wf["jobs"]["linux"]
    assert "self-hosted" not in str(job["runs-on"])
    assert any("bash .ci/run" in script for _, script in _run_scripts(wf))


def test_windows_build_runs_hosted_with_the_wdk_from_nuget_and_uploads_the_package() -> None:
    wf = _load(GITHUB / "windows-build.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    job = wf["jobs"]["package"]
    assert re.fullmatch(r"windows-20\d\d", str(job["runs-on"])), "GitHub-hosted Windows: no self-hosted machine to build"
    assert any(s.get("uses") == "./.github/actions/install-wdk" for s in job["steps"])
    assert any(["build", "package", "sign"] == argv for _, s in _run_scripts(wf) for argv in invoke_commands(s))
    uploads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@v4")]
    assert uploads and uploads[0].get("if") == "always()"


def test_the_wdk_action_installs_the_nuget_wdk_and_llvm_and_exports_what_wdk_build_reads() -> None:
    action = yaml.safe_load((REPO / ".github" / "actions" / "install-wdk" / "action.yml").read_text(encoding="utf-8"))
    scripts = "\n".join(str(step.get("run", "")) for step in action["runs"]["steps"])
    assert "Microsoft.Windows.WDK.x64" in scripts and "Microsoft.Windows.SDK.CPP" in scripts and "nuget install" in scripts
    assert "choco install llvm" in scripts and "LIBCLANG_PATH" in scripts
    for name in ("WDKContentRoot", "Version_Number", "WDKBinRoot", "WDKToolRoot"):
        assert f"{name}=" in scripts


def test_only_jobs_that_drive_a_vm_run_self_hosted() -> None:
    for path in WORKFLOWS:
        for name, job in _load(path)["jobs"].items():
            if "self-hosted" in str(job.get("runs-on")):
                assert path.name == "nightly-regress.yml" and name == "regress", f"{path.name}/{name} runs self-hosted but drives no VM"


def test_nightly_matrix_concurrency_and_artifacts() -> None:
    wf = _load(GITHUB / "nightly-regress.yml")
    assert wf["on"]["schedule"][0]["cron"]
    job = wf["jobs"]["regress"]
    assert "target" in job["strategy"]["matrix"]
    assert job["strategy"]["fail-fast"] is False
    assert job["concurrency"] == {"group": "vm-${{ matrix.target }}", "cancel-in-progress": False}
    assert "self-hosted" in job["runs-on"] and "vm-${{ matrix.target }}" in job["runs-on"]
    regress = [argv for _, s in _run_scripts(wf) for argv in invoke_commands(s) if argv[0] == "regress"]
    assert regress and all("--target" in argv and "--report-dir" in argv for argv in regress)
    uploads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@v4")]
    assert uploads and all(s.get("if") == "always()" for s in uploads)
    # Passwords come from GitHub secrets into the env vars the config names.
    secret_env = {k for k, v in job["env"].items() if "secrets." in str(v)}
    assert secret_env and all(re.fullmatch(r"[A-Z0-9_]+", k) for k in secret_env)


@pytest.mark.parametrize("doc", ["ci/runner-setup.md", "vm/README.md"])
def test_documented_invoke_commands_exist(doc: str) -> None:
    problems = []
    for match in re.finditer(r"`(invoke [^`]+)`", (REPO / doc).read_text(encoding="utf-8")):
        problems += check_invoke(shlex.split(match.group(1))[1:])
    assert not problems
