"""The Wine prefix and the Wine processes the pipeline starts in it.

Facts this relies on (seen with Debian's Wine 8.0; notes/05 and our own runs):
- `wineboot -i` creates a prefix (~10 s with `wineserver -w`); it is reused after.
- Without a persistent wineserver (`wineserver -p`), the server, services.exe and
  the driver host winedevice.exe exit with the last wine command.
- The first wine command after the server starts runs services.exe, which, with
  every winedevice.exe, keeps THAT command's environment and stderr: started with
  the capture WINEDEBUG and stderr on a file, the driver's DbgPrint lines land
  in that file. A pipe there would hang us (the pipe never closes).
- A wine command while no server runs starts a short-lived one with its own
  environment: the capture is lost. So every command first checks our server.
- `wineserver -k` ends every process of the prefix.

State kept in <prefix>/.driverpipe/: prefix.json (the marker: driverpipe made this
prefix, with which Wine; written before wineboot, "ready" after it), run.json (the
server we started: pid, start time), clean/ (the registry hives right after
creation: the clean state `vm.revert` restores), capture logs.

A folder without a readable marker is someone else's Wine prefix (or not one): it is
never created into, reset, restored or deleted, and no message suggests a command
that would delete it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

from ...core.errors import ConfigError, EnvironmentProblem, MissingTool, StepFailed
from ...core.files import write_atomic
from ...core.owned import PREFIX_MARKER, foreign_folder_problem, is_empty_dir, prefix_marker
from ..reboot import Diagnosed
from .folders import PUSH_MARKER, TOOLS_DIR, claim_push_folder, owned_problem, push_folder_problem, remove_owned
from .runrecord import RunRecord

STATE_DIR = ".driverpipe"
HIVES = ("system.reg", "user.reg", "userdef.reg")
QUIET = "-all"
# Commands: Wine's own errors (sc.exe prints its failure codes on the err channel);
# leading "-all" also keeps Debian's wrapper from printing its wine32 hint.
COMMAND_DEBUG = "-all,err+all"
# The service manager and every driver host: DbgPrint (debugstr), Wine's errors,
# and ntoskrnl's traces (IoCreateDevice/IoDeleteDevice, to see unwind leaks).
CAPTURE_DEBUG = "-all,warn+debugstr,err+all,trace+ntoskrnl"
INSTALL_HINT = "apt-get install wine wine64 (Debian/Ubuntu), then run again"
# Seen under load: a new Wine process sometimes cannot map the shared user data page
# (STATUS_CONFLICTING_ADDRESSES) and exits at once. It is transient: start again.
TRANSIENT = "failed to map the shared user data"
START_ATTEMPTS = 3
# Set in the environment of every Wine process the pipeline starts, with the token run.json
# records: what carries it is ours (the service manager and driver hosts inherit it); what
# does not (a user's own winecfg or wineserver in the prefix) is never ended by start().
RUN_TOKEN_ENV = "DRIVERPIPE_WINE_RUN"


MARKER = PREFIX_MARKER[-1]


class WineServerGone(Diagnosed, StepFailed):
    """Our wineserver died under a task (killed, crashed): a failed step (exit 4), not a lost network link."""


@dataclass
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False


@dataclass
class WinePrefix(RunRecord):
    """One prefix. Every method that runs Wine checks the server it needs is ours and alive."""

    path: Path
    wine: str = "wine"
    wineserver: str = "wineserver"
    start_timeout: float = 180.0
    say: Any = print
    key: str = "wine.prefix"  # the setting that names this folder, for messages
    started_here: bool = False  # this process started the server (so it ends it, unless told to keep it)
    _version: str = field(default="", repr=False)

    # ------------------------------------------------------------------ paths
    @property
    def state_dir(self) -> Path:
        return self.path / STATE_DIR

    @property
    def drive_c(self) -> Path:
        return self.path / "drive_c"

    @property
    def raw_log(self) -> Path:
        """Wine's debug output of the service manager and driver hosts (the capture's source)."""
        return self.state_dir / "wine-debug.log"

    def host_path(self, windows_path: str) -> Path:
        """C:\\x\\y on the Wine side -> <prefix>/drive_c/x/y (only drive C: exists in our prefixes)."""
        p = PureWindowsPath(windows_path)
        if p.drive.upper() != "C:" or not p.root:
            raise ConfigError(f"{windows_path!r}: a Wine target only has drive C:", "use an absolute C:\\ path (deploy.guest_dir or targets.NAME.guest_dir)")
        parts = [part for part in p.parts[1:]]
        if any(part in ("..", ".") for part in parts):
            raise ConfigError(f"{windows_path!r}: '..' is not allowed in a guest path", "use a plain absolute C:\\ path")
        return self.drive_c.joinpath(*parts)

    # ------------------------------------------------------------------ tools
    def _tool(self, name: str) -> str:
        found = shutil.which(name)
        if not found:
            raise MissingTool(f"{name} is not installed (the Wine target needs Wine 8 or newer)", INSTALL_HINT)
        return found

    def version(self) -> str:
        """`wine --version`, run once per installed wine binary (kept beside the prefix, keyed by its path, size and mtime)."""
        if not self._version:
            tool = self._tool(self.wine)
            try:
                st = Path(tool).stat()
                key = f"{tool}:{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                key = ""
            cache = self.state_dir / "wine-version.json"
            try:
                known = json.loads(cache.read_text(encoding="utf-8"))
                if key and known.get("key") == key:
                    self._version = str(known["version"])
                    return self._version
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass
            try:
                done = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60, check=False)
            except subprocess.TimeoutExpired:
                raise EnvironmentProblem(f"`{self.wine} --version` did not answer in 60 s", INSTALL_HINT) from None
            self._version = done.stdout.strip() or "unknown"
            # Cached only in a prefix of ours: a foreign prefix is never written to, not even here.
            if key and done.returncode == 0 and self.state_dir.is_dir() and prefix_marker(self.path) is not None:
                write_atomic(cache, json.dumps({"key": key, "version": self._version}).encode())
        return self._version

    def env(self, debug: str = QUIET) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            WINEPREFIX=str(self.path),
            WINEDEBUG=debug,
            # No Mono/Gecko installer prompts when the prefix is made; no display needed; no
            # menu entries or file associations written into the user's desktop folders.
            WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d",
        )
        token = self.recorded("run_token") if self.state_dir.is_dir() else None
        env.pop(RUN_TOKEN_ENV, None)
        if isinstance(token, str) and token:
            env[RUN_TOKEN_ENV] = token
        env.pop("DISPLAY", None)
        env.pop("WAYLAND_DISPLAY", None)
        return env

    # ------------------------------------------------------------------ the prefix
    def foreign(self) -> bool:
        """The folder exists, is not empty and holds no readable marker of ours: someone else's, never touched."""
        return bool(foreign_folder_problem(self.path))

    def foreign_error(self) -> ConfigError:
        return ConfigError(
            f"{self.key} {self.path} {foreign_folder_problem(self.path) or 'is not ours'}; driverpipe never changes or deletes it",
            f"point {self.key} at a new or empty folder (or leave it unset for a per-user prefix)",
        )

    def describe_problem(self) -> str:
        """'' when the prefix is usable (or absent); else why not, in a few words. Check foreign() first."""
        system = self.path / "system.reg"
        if not self.path.exists():
            return ""
        if not self.path.is_dir():
            return f"{self.path} is not a directory"
        if is_empty_dir(self.path):
            return ""
        marker = self._marker()
        if marker is None:
            return f"it was not made by driverpipe (no {STATE_DIR}/{MARKER})"
        if marker.get("ready") is False:
            return "its creation was interrupted"
        if not system.is_file():
            return "it has no system.reg (broken)"
        try:
            head = system.read_bytes()[:200].decode("utf-8", "replace")
        except OSError as exc:
            return f"system.reg is unreadable ({exc.strerror})"
        if not head.startswith("WINE REGISTRY Version 2") or "#arch=win64" not in head:
            return "system.reg is not a 64-bit Wine registry (broken, or a 32-bit prefix)"
        if marker.get("wine") != self.version():
            return f"it was made by {marker.get('wine')}, this is {self.version()}"
        return ""

    def _marker(self) -> dict[str, Any] | None:
        return prefix_marker(self.path)

    def _write_marker(self, *, ready: bool) -> None:
        data = {"format": 1, "wine": self.version(), "created": time.time(), "ready": ready}
        write_atomic(self.state_dir / MARKER, (json.dumps(data, indent=2) + "\n").encode())

    def ensure(self) -> bool:
        """Create the prefix when missing; True when it was created now. A broken or foreign one is an error."""
        self._tool(self.wine)
        self._tool(self.wineserver)
        if self.foreign():
            raise self.foreign_error()
        problem = self.describe_problem()
        if problem:
            raise EnvironmentProblem(
                f"Wine prefix {self.path} is not usable: {problem}",
                "reset it with `invoke vm.revert --target TARGET` (it deletes and recreates the prefix)",
            )
        if (self.path / "system.reg").is_file():
            return False
        self.create()
        return True

    def create(self) -> None:
        self.say(f"creating Wine prefix {self.path} ({self.version()}); first time only, ~10 s")
        if self.foreign():
            raise self.foreign_error()
        self.path.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(exist_ok=True)
        self._write_marker(ready=False)  # first: an interrupted creation is still ours to reset
        log = self.state_dir / "wineboot.log"
        start = time.monotonic()
        with log.open("wb") as err:  # its background processes write here later: never a pipe
            try:
                done = subprocess.run(
                    [self._tool(self.wine), "wineboot", "-i"],
                    env=self.env(),
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    timeout=self.start_timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                self._kill_all()
                raise EnvironmentProblem(f"wineboot did not finish in {self.start_timeout:g} s (log: {log})", "see the log; raise wine.start_timeout") from None
        self._wait_server_exit()
        if done.returncode != 0 or not (self.path / "system.reg").is_file():
            raise EnvironmentProblem(
                f"wineboot -i failed (exit {done.returncode}); log: {log}", f"see the log; then `invoke vm.revert` to start over. {INSTALL_HINT}"
            )
        self.snapshot("clean")
        self._write_marker(ready=True)
        self.say(f"Wine prefix ready in {time.monotonic() - start:.1f} s")

    def snapshot(self, name: str) -> None:
        """Save the registry hives (services, certificates, FailAtStep live there) as a named state."""
        dest = self.state_dir / "states" / name
        tmp = dest.with_name(f".{name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for hive in HIVES:
            src = self.path / hive
            if src.is_file():
                shutil.copy2(src, tmp / hive)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)

    def states(self) -> list[str]:
        base = self.state_dir / "states"
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []

    def restore(self, name: str, *, remove: list[Path]) -> None:
        """Stop Wine, put the named hives back and delete what the pipeline put in the prefix."""
        if self.foreign():
            raise self.foreign_error()
        src = self.state_dir / "states" / name
        if not src.is_dir():
            raise ConfigError(
                f"Wine prefix {self.path} has no state {name!r}", f"known: {', '.join(self.states()) or 'none'}; `invoke vm.snapshot NAME` makes one"
            )
        for path in remove:  # every check before anything changes: a refusal leaves the prefix as it was
            problem = push_folder_problem(self.drive_c, path) or owned_problem(path, PUSH_MARKER)
            if problem:
                raise ConfigError(
                    f"refusing to delete {path}: it {problem}; it is left as it is",
                    "set deploy.guest_dir (or targets.NAME.guest_dir) to a folder of its own, e.g. C:\\WazabiEDR, or move that folder yourself",
                )
        self.stop(force=True)
        for hive in HIVES:
            if (src / hive).is_file():
                shutil.copy2(src / hive, self.path / hive)
        for path in remove:
            remove_owned(path, PUSH_MARKER)
        self._clear_run_records()

    def delete(self) -> None:
        """Remove the whole prefix (a reset): only one that holds our marker; anything else is refused, untouched."""
        if not self.path.exists() and not self.path.is_symlink():
            return
        if self.foreign() or self.path in (Path(self.path.anchor), Path.home()):
            raise self.foreign_error()
        if is_empty_dir(self.path):
            return
        self.stop(force=True)
        socket_dir = self._server_dir()
        shutil.rmtree(self.path)
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)

    def _server_dir(self) -> Path | None:
        """Wine's socket folder for this prefix (/tmp/.wine-UID/server-DEV-INODE), orphaned when the prefix goes."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        folder = Path("/tmp") / f".wine-{os.getuid()}" / f"server-{st.st_dev:x}-{st.st_ino:x}"
        return folder if folder.is_dir() and not folder.is_symlink() else None

    # ------------------------------------------------------------------ processes
    def processes(self) -> dict[int, str]:
        """pid -> program of every live Wine process of this prefix (from /proc: environment + executable)."""
        want = f"WINEPREFIX={self.path}".encode()
        found: dict[int, str] = {}
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                exe = os.readlink(entry / "exe")
                if not Path(exe).name.startswith("wine"):
                    continue
                stat = (entry / "stat").read_text()
                if stat[stat.rfind(")") + 2 :].startswith("Z"):
                    continue  # exited, not yet reaped
                if want not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except OSError:
                continue
            found[int(entry.name)] = cmdline or Path(exe).name
        return found

    def server_pid(self) -> int | None:
        for pid, cmd in self.processes().items():
            if "wineserver" in cmd.split(" ")[0]:
                return pid
        return None

    def _ours(self, pid: int, token: Any) -> bool:
        """Process `pid` carries this prefix's recorded run token: the pipeline started it."""
        if not isinstance(token, str) or not token:
            return False
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"{RUN_TOKEN_ENV}={token}".encode() in env

    def running(self) -> bool:
        """Our persistent server is alive (the one run.json names)."""
        pid = self.recorded("server_pid")
        return bool(pid) and self.server_pid() == pid

    def check_alive(self, during: str) -> None:
        """Before a wine command: our server must still be there (else the command would start a new one)."""
        pid = self.recorded("server_pid")
        if not self.running():
            raise WineServerGone(
                f"the Wine server of {self.path} (pid {pid or '?'}) is gone: it exited or was killed before {during}",
                "run the task again: the next run starts a new one",
            )

    def start(self) -> None:
        """The persistent server, then the service manager with the capture environment. Reused when ours runs."""
        if self.drive_c.is_dir() and not self.foreign():
            claim_push_folder(self, TOOLS_DIR)  # the client is pushed there; marked so vm.revert may delete it
        if self.running():
            return
        others = self.processes()
        token = self.recorded("run_token")
        foreign = {pid: cmd for pid, cmd in others.items() if not self._ours(pid, token)}
        if foreign:
            # A recorded pid that is stale says nothing about these: the user's own wineserver or
            # winecfg in this prefix. Never ended here, as stop() never ends them.
            pid, cmd = next(((p, c) for p, c in foreign.items() if "wineserver" in c.split(" ")[0]), next(iter(foreign.items())))
            raise EnvironmentProblem(
                f"Wine process {pid} ({cmd.split(' ')[0].rsplit('/', 1)[-1]}) not started by driverpipe runs in {self.path}; not ending it",
                f"end it yourself (WINEPREFIX={self.path} wineserver -k) or give this target its own wine.prefix",
            )
        # What is left is ours (it carries our run token): the processes of an earlier run whose
        # server died (killed mid-deploy), or a stray server a command started after that. End them.
        for pid in others:
            _kill(pid, signal.SIGKILL)
        self._wait_for(lambda: not self.processes(), 5.0)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.record(run_token=uuid.uuid4().hex)  # before the server: everything started from now on carries it
        # The server daemonizes keeping its stdout/stderr: never a pipe here.
        self._quiet([self._tool(self.wineserver), "-p"], 60)
        pid = self._wait_for(self.server_pid, 10.0)
        if pid is None:
            raise EnvironmentProblem(f"wineserver -p did not start for {self.path}", f"run `WINEPREFIX={self.path} wineserver -p` by hand to see why")
        self.record(server_pid=pid, server_started=time.time(), owner_pid=os.getpid())
        self.started_here = True
        for attempt in range(1, START_ATTEMPTS + 1):
            mark = self.raw_log.stat().st_size if self.raw_log.exists() else 0
            with self.raw_log.open("ab") as err:
                done = subprocess.run(
                    [self._tool(self.wine), "cmd", "/c", "exit", "0"],
                    env=self.env(CAPTURE_DEBUG),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    timeout=self.start_timeout,
                    check=False,
                )
            if done.returncode == 0:
                return
            flake = TRANSIENT in self._log_since(mark)
            if not flake or attempt == START_ATTEMPTS:
                break
            self.say(f"Wine could not map its shared memory at process start ({TRANSIENT}); retrying")
        self.stop(force=True)
        raise EnvironmentProblem(f"Wine's service manager did not start in {self.path} (exit {done.returncode})", f"see {self.raw_log}")

    def _log_since(self, mark: int) -> str:
        try:
            with self.raw_log.open("rb") as fh:
                fh.seek(mark)
                return fh.read(1 << 20).decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, *, force: bool = False) -> bool:
        """End our server and everything of the prefix with it (`wineserver -k`, then by pid). False: nothing ran."""
        pid = self.recorded("server_pid")
        alive = self.processes()
        if not alive:
            if pid:
                self.record(server_pid=None)
            return False
        server = next((p for p, c in alive.items() if "wineserver" in c.split(" ")[0]), None)
        if server is not None and server != pid and not force:
            raise EnvironmentProblem(
                f"the wineserver of {self.path} (pid {server}) was not started by driverpipe; not ending it", "end it yourself if you must"
            )
        self._quiet([self._tool(self.wineserver), "-k"], 60)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and self.processes():
            time.sleep(0.05)
        for rest in self.processes():
            _kill(rest, signal.SIGKILL)
        self.record(server_pid=None)
        self.started_here = False
        return True

    def _kill_all(self) -> None:
        for pid in self.processes():
            _kill(pid, signal.SIGKILL)

    def _wait_server_exit(self) -> None:
        self._quiet([self._tool(self.wineserver), "-w"], 120)

    def _quiet(self, argv: list[str], timeout: float) -> int:
        """Run a Wine tool with no pipes attached (daemons keep them open); its exit code, -1 on timeout."""
        try:
            return subprocess.run(
                argv, env=self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            return -1

    @staticmethod
    def _wait_for(fn: Any, timeout: float, step: float = 0.02) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(step)

    def driver_hosts(self, image_name: str) -> list[int]:
        """The live processes (winedevice.exe) that have `image_name` mapped: the driver's host."""
        hosts = []
        for pid in self.processes():
            try:
                maps = Path(f"/proc/{pid}/maps").read_text(errors="replace")
            except OSError:
                continue
            if image_name.lower() in maps.lower():
                hosts.append(pid)
        return hosts

    def driver_host_pids(self) -> set[int]:
        """Every live winedevice.exe of this prefix (Wine's own driver hosts included)."""
        return {pid for pid, cmd in self.processes().items() if "winedevice" in cmd.lower()}

    def wait_ended(self, pids: list[int], timeout: float) -> list[int]:
        """Wait for these processes to end (exited, or a zombie); the ones still alive after `timeout`."""

        def alive() -> list[int]:
            return [pid for pid in pids if _alive(pid)]

        self._wait_for(lambda: not alive(), timeout, step=0.005)  # usually ends within a few ms
        return alive()

    def kill_driver_host(self, image_name: str) -> list[int]:
        """End the winedevice.exe that mapped `image_name` (a driver that hangs in DriverEntry); its pids."""
        ended = self.driver_hosts(image_name)
        for pid in ended:
            _kill(pid, signal.SIGKILL)
        return ended

    # ------------------------------------------------------------------ commands
    def run(self, args: list[str], *, during: str, timeout: float, debug: str = COMMAND_DEBUG) -> Completed:
        """`wine ARGS` (argv, never a shell line) in this prefix, after checking our server is alive."""
        for attempt in range(1, START_ATTEMPTS + 1):
            done = self._run_once(args, during=during, timeout=timeout, debug=debug)
            if done.returncode == 0 or TRANSIENT not in done.stderr or attempt == START_ATTEMPTS:
                return done
        return done

    def note_process(self, argv: list[str], during: str) -> None:
        """One line per Wine process a task starts (processes.log): what a test and the bench count."""
        line = f"{time.time():.3f}\t{os.getpid()}\t{PureWindowsPath(argv[1]).name if len(argv) > 1 else argv[0]}\t{during}\n"
        try:
            with (self.state_dir / "processes.log").open("a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            pass  # a count for tests and the bench, never a reason to fail a step

    def _run_once(self, args: list[str], *, during: str, timeout: float, debug: str) -> Completed:
        self.check_alive(during)
        argv = [self._tool(self.wine), *args]
        self.note_process(argv, during)
        start = time.monotonic()
        # Files, not pipes: a program may leave a Wine process behind holding them
        # (rundll32 starts explorer.exe /desktop), and a pipe would never reach EOF.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, env=self.env(debug), stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                _kill(-proc.pid, signal.SIGKILL)
                proc.wait()
                timed_out = True
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        return Completed(
            argv=argv,
            returncode=proc.returncode,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            seconds=time.monotonic() - start,
            timed_out=timed_out,
        )


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat[stat.rfind(")") + 2 :].startswith("Z")


def _kill(pid: int, sig: int) -> None:
    try:
        if pid < 0:
            os.killpg(-pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
