"""The Wine target's agent: ONE long-lived wazabi-wine-client.exe per task, driven over its stdin/stdout.

Every guest operation of a deploy (service query/stop/start, the ImagePath value,
the device checks, FailAtStep, WinVerifyTrust, trusting the test certificate)
is one request line (TAB-separated fields) answered by one JSON line, so an
unchanged redeploy starts one Wine process instead of six or seven; each
`wine` start costs ~100-300 ms. Only the INF install still runs Wine's own
programs (rundll32 setupapi, reg.exe), through WinePrefix.run.

The numbers are sc.exe's: `error` is the Win32 error of the failing SCM call
and `state`/`type`/`win32_exit_code` the SERVICE_STATUS fields, so the parsers'
diagnoses (parse.winparse) apply unchanged.

Why a stop also waits for the driver host (target.py `_stop`): Wine's
services.exe reports STOPPED as soon as the driver unloaded, while the
winedevice.exe that ran it is still shutting down (about half of the stops on
this machine's Wine 8). A start in that window is handed to a dying host: the
race behind the rare 1359 (ERROR_INTERNAL_ERROR) of a regress cycle. Wine
reports no process id for a driver service, so the host is found from /proc
(the process that has the image mapped) and the stop returns once it has
ended: never a retry. A failed start (DriverEntry failed) leaves the same
window: the winedevice.exe started for it ends right after, so load waits
for it too (the process that appeared with that start). And once a host
answered STOPPED but ran DriverUnload only at its next request: target.py
sends one (opening the device, said aloud) when the image is still mapped
2 s after the stop.

The agent ships with the package (driverpipe/agent: Cargo.toml, Cargo.lock,
src/*.rs), so any driver project gets it; `build_agent` builds it with cargo
into the per-user cache ($XDG_CACHE_HOME or ~/.cache, driverpipe/agent), one
folder per digest of its sources: nothing is written into the installed
package or the driver's project, cargo starts only when the sources changed,
and two installs of different versions never take each other's exe.

A new agent command: a `run()` branch in driverpipe/agent/src/main.rs (module
of its own when it needs Win32 imports), a method here, and a line in the
README's Wine section.
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ...core.errors import EnvironmentProblem
from ..state import DeployStepFailed
from .prefix import COMMAND_DEBUG, TRANSIENT, WinePrefix, WineServerGone, _kill

AGENT_CRATE = Path(__file__).resolve().parents[2] / "agent"
AGENT_NAME = "wazabi-wine-client.exe"
AGENT_TRIPLE = "x86_64-pc-windows-msvc"
STATE_NAMES = {1: "STOPPED", 2: "START_PENDING", 3: "STOP_PENDING", 4: "RUNNING", 5: "CONTINUE_PENDING", 6: "PAUSE_PENDING", 7: "PAUSED"}


def unreadable(name: str, what: str, data: Any) -> DeployStepFailed:
    return DeployStepFailed(f"{name}: the Wine agent's {what} is unreadable: {str(data)[:200]}", "rebuild the agent (driverpipe/agent)")


def answer_number(name: str, data: dict[str, Any], key: str, default: int | None) -> int:
    """An integer field of an agent answer (a missing one: `default`); anything else is a failed step."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise unreadable(name, key, data)
    return value


def status_text(data: dict[str, Any]) -> str:
    """An agent answer as the ScOp output (reports quote it): the call's error and the status fields."""
    return " ".join(f"{k}={data[k]}" for k in ("op", "error", "state", "win32_exit_code", "pid", "host_exited") if k in data)


class AgentTimeout(Exception):
    """The agent did not answer in time (the process group was ended)."""


class Agent:
    def __init__(self, prefix: WinePrefix, exe: str):
        self.prefix = prefix
        self.exe = exe  # its Windows path in the prefix
        self.proc: subprocess.Popen[bytes] | None = None
        self._err: Any = None
        self._buf = b""
        self.requests = 0

    # ------------------------------------------------------------------ process
    def _spawn(self, during: str) -> subprocess.Popen[bytes]:
        self.prefix.check_alive(during)
        self._err = tempfile.TemporaryFile()
        argv = [self.prefix._tool(self.prefix.wine), self.exe]
        self.proc = subprocess.Popen(
            argv, env=self.prefix.env(COMMAND_DEBUG), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, start_new_session=True
        )
        self.prefix.note_process(argv, "the agent")
        self._buf = b""
        return self.proc

    def close(self) -> None:
        """Ask the agent to exit; end it when it does not (it holds no state)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write(b"exit\n")
                proc.stdin.flush()
                proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if proc.poll() is None:
            _kill(-proc.pid, signal.SIGKILL)
            proc.wait()
        for stream in (proc.stdin, proc.stdout, self._err):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def _stderr(self) -> str:
        if self._err is None:
            return ""
        try:
            self._err.seek(0)
            return str(self._err.read()[-4000:].decode("utf-8", "replace"))
        except (OSError, ValueError):
            return ""

    # ------------------------------------------------------------------ requests
    def request(self, fields: list[str], *, during: str, timeout: float) -> dict[str, Any]:
        """One request, its JSON answer. A dead server is WineServerGone; no answer in time is AgentTimeout."""
        if any("\t" in f or "\n" in f or "\r" in f for f in fields):
            raise DeployStepFailed(f"a value for {during} contains a tab or a line break", "fix the configured name or path")
        line = ("\t".join(fields) + "\n").encode("utf-8")
        for attempt in (1, 2):
            proc = self.proc if self.proc is not None and self.proc.poll() is None else self._spawn(during)
            try:
                assert proc.stdin is not None
                proc.stdin.write(line)
                proc.stdin.flush()
                answer = self._read_line(proc, timeout)
            except BrokenPipeError:
                answer = None
            if answer is not None:
                self.requests += 1
                try:
                    data = json.loads(answer)
                except ValueError:
                    data = None
                if not isinstance(data, dict) or data.get("error") == "usage":
                    raise DeployStepFailed(f"the Wine agent refused the request for {during}: {answer[:200]!r}", "rebuild the agent (driverpipe/agent)")
                return data
            # No answer: the process ended. Started in a Wine that could not map its shared page?
            # That happens before the request is read, so sending it again is safe (prefix.TRANSIENT).
            err = self._stderr()
            self.close()
            if attempt == 1 and TRANSIENT in err:
                continue
            if not self.prefix.running():
                self.prefix.check_alive(during)  # raises WineServerGone
            raise DeployStepFailed(f"the Wine agent ended without answering {during}: {err.strip()[-300:] or 'no output'}", f"see {self.prefix.raw_log}")
        raise WineServerGone(f"the Wine agent could not start for {during}", "run the task again")  # pragma: no cover (loop returns or raises)

    def _read_line(self, proc: subprocess.Popen[bytes], timeout: float) -> str | None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.close()
                    raise AgentTimeout(f"no answer within {timeout:g} s")
                if not sel.select(min(left, 1.0)):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", "replace").strip()


def agent_sources(crate: Path = AGENT_CRATE) -> list[Path]:
    """Every file cargo builds the agent from (its .cargo/config.toml holds the link settings)."""
    return sorted([crate / "Cargo.toml", crate / "Cargo.lock", crate / ".cargo" / "config.toml", *(crate / "src").rglob("*.rs")])


def agent_cache_dir() -> Path:
    """The agent's build folders: $XDG_CACHE_HOME/driverpipe/agent, else ~/.cache/driverpipe/agent."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "driverpipe" / "agent"


def agent_exe(crate: Path = AGENT_CRATE) -> Path:
    """Where cargo leaves the agent built from these sources: one target folder per digest of them."""
    digest = hashlib.sha256()
    for src in agent_sources(crate):
        digest.update(f"{src.relative_to(crate).as_posix()}\0".encode())
        digest.update(src.read_bytes() if src.is_file() else b"(missing)")
    return agent_cache_dir() / digest.hexdigest()[:16] / AGENT_TRIPLE / "release" / AGENT_NAME


def build_agent(*, dry: bool = False, say: Any = None, crate: Path = AGENT_CRATE) -> Path:
    """The agent's exe on this host, built with cargo + rust-lld only when no build of these sources exists."""
    if not (crate / "Cargo.toml").is_file():
        raise EnvironmentProblem(f"the Wine agent's crate {crate} is missing from the installed package", "reinstall driverpipe")
    try:
        exe = agent_exe(crate)
    except OSError as exc:
        raise EnvironmentProblem(f"the Wine agent's sources are unreadable: {exc}", "reinstall driverpipe") from None
    target_dir = exe.parents[2]
    if dry:
        if say is not None:
            say(f"[dry] cargo build --release --locked --target-dir {target_dir} (the Wine agent, when not built yet)")
        return exe
    if exe.is_file():  # no cargo start (~0.2 s) when nothing changed
        return exe
    cargo = shutil.which("cargo")
    if cargo is None:
        raise EnvironmentProblem("cargo is not installed (the Wine target builds its agent with it)", "install Rust with rustup")
    argv = [cargo, "build", "--release", "--locked", "-q", "--target-dir", str(target_dir)]
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        # cwd: the crate, so cargo reads its .cargo/config.toml; --locked: cargo writes nothing there.
        done = subprocess.run(argv, cwd=crate, capture_output=True, text=True, timeout=600, check=False)
    except OSError as exc:
        raise EnvironmentProblem(f"building the Wine agent failed: {exc}", f"check that {target_dir.parent} is writable") from None
    if done.returncode != 0 or not exe.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        from ...image.build import missing_target_std

        missing_std = missing_target_std(done.stderr, AGENT_TRIPLE)
        if missing_std is not None:
            raise missing_std
        raise EnvironmentProblem(f"building the Wine agent failed: {last}", f"run `{' '.join(argv[:4])} --target-dir {target_dir}` in {crate} to see why")
    return exe
