"""QemuHost: a QEMU VM the pipeline starts itself, controlled over QMP.

Layout of the per-VM state directory (`state_dir/<vm name>/`):

    instance.json        the running QEMU: pid, argv, socket, which named states its
                         disk holds (written atomically: temp file + rename)
    qmp.sock             QMP monitor (UNIX socket); a later `invoke vm.*` reconnects here
    qemu.log             QEMU's stdout/stderr (its last line explains a failed start)
    run/disk.qcow2       per-run overlay on the base image: created at start, deleted
                         at stop (the base image is never written: AutoHCK's approach)
    run/vars.qcow2       per-run copy of the OVMF vars template, as qcow2 (see below)
    states/NAME/         a named state kept as files: the run's disk.qcow2 (+ vars.qcow2)
                         copied right after `savevm NAME`, so they hold an internal
                         snapshot NAME with the guest's memory

Named states, the primary approach: internal snapshots (HMP `savevm`/`loadvm`).
`revert NAME` on a running QEMU whose disk holds NAME is a `loadvm` + `cont`
(tens of milliseconds on an idle guest). Otherwise (QEMU stopped, or a run that
started from elsewhere) the kept files are copied into a fresh run/ and QEMU starts
with `-loadvm NAME`: still no guest boot. The reserved name `base` means "fresh
overlay on the base image, cold boot".

Why OVMF vars are converted to qcow2: savevm needs every writable drive to support
snapshots; a raw pflash vars file makes it fail with "Device 'pflash1' is writable
but does not support snapshots" (checked with QEMU 7.2). (libvirt, for the same
family of reasons, refused internal snapshots of UEFI guests before 10.9/10.10;
that is the libvirt backend's problem, not this one's.)

Why `-action panic=pause,shutdown=pause`: QEMU 7.2's default on a pvpanic report is
to power off and exit (checked), which would erase the evidence. Pausing keeps the
process and the runstate `guest-panicked`, so a later `invoke vm.status` still sees
the crash even if nobody was connected to QMP when it happened; likewise a guest
that shuts itself down stays visible as runstate `shutdown`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..core.config import user_data_dir
from ..core.errors import ConfigError, EnvironmentProblem, PipelineError, StepFailed
from ..core.files import write_atomic
from ..core.runner import format_argv, last_meaningful_line, which
from .base import VmEvent, VmState, VmStatus
from .qemu_argv import build_argv, forward_ports
from .qmp import INTERESTING_EVENTS, Qmp

BASE_STATE = "base"
STATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS

#: QEMU processes started by this Python process, by pid: lets any QemuHost in the
#: same process reap its child (a zombie would look alive to os.kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

_RUNSTATE = {
    "running": VmState.RUNNING,
    "paused": VmState.PAUSED,
    "prelaunch": VmState.PAUSED,
    "suspended": VmState.PAUSED,
    "debug": VmState.PAUSED,
    "inmigrate": VmState.PAUSED,
    "postmigrate": VmState.PAUSED,
    "finish-migrate": VmState.PAUSED,
    "save-vm": VmState.PAUSED,
    "restore-vm": VmState.PAUSED,
    "colo": VmState.PAUSED,
    "watchdog": VmState.CRASHED,
    "guest-panicked": VmState.CRASHED,
    "internal-error": VmState.CRASHED,
    "io-error": VmState.CRASHED,
    "shutdown": VmState.STOPPED,
}


def _process_alive(pid: int, marker: str) -> tuple[bool, int | None]:
    """(alive, exit code if known). `marker` (our QMP socket path) guards against pid reuse."""
    child = _CHILDREN.get(pid)
    if child is not None:
        code = child.poll()
        return code is None, code
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, None
    except PermissionError:
        pass  # exists but belongs to someone else: judged by /proc below
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            return False, None
        if state == "Z" or marker.encode() not in cmdline:
            return False, None
    return True, None


class QemuHost:
    """VmHost for a pipeline-started QEMU (see the module docstring for the file layout)."""

    kind = "qemu"

    def __init__(self, ctx: Any, settings: Mapping[str, Any], vm_name: str, *, entry: str = "qemu"):
        self.ctx = ctx
        self.settings = settings
        self.name = vm_name
        self.entry = entry  # vm_hosts entry name, for messages
        configured = str(settings.get("state_dir") or "")
        root = ctx.config.path(configured) if configured else user_data_dir() / "qemu"
        self.dir = root / vm_name
        self.instance_path = self.dir / "instance.json"
        self.socket = self.dir / "qmp.sock"
        self.log_path = self.dir / "qemu.log"
        self.run_dir = self.dir / "run"
        self.states_dir = self.dir / "states"
        self._qmp: Qmp | None = None
        self._events: list[VmEvent] = []
        self._reported_exit = False
        self._reported_panic = False
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"vm_hosts.{entry}.state_dir: the QMP socket path {self.socket} is too long for a UNIX socket",
                "set state_dir to a shorter folder",
            )

    # -- configuration ----------------------------------------------------
    def _path_setting(self, key: str) -> Path | None:
        value = str(self.settings.get(key) or "")
        return self.ctx.config.path(value) if value else None

    def _base_image(self) -> Path | None:
        base = self._path_setting("base_image")
        if base is not None and not base.is_file():
            raise ConfigError(f"vm_hosts.{self.entry}.base_image: {base} does not exist", "point it at the prepared guest's qcow2 image")
        return base

    def _firmware(self) -> tuple[Path | None, Path | None]:
        code, template = self._path_setting("ovmf_code"), self._path_setting("ovmf_vars")
        if code is None:
            return None, None
        if template is None:
            raise ConfigError(f"vm_hosts.{self.entry}.ovmf_vars: required with ovmf_code", "set it to the OVMF_VARS template matching the code image")
        for key, path in (("ovmf_code", code), ("ovmf_vars", template)):
            if not path.is_file():
                raise ConfigError(f"vm_hosts.{self.entry}.{key}: {path} does not exist", "install the ovmf package or fix the path")
        return code, template

    def _binary(self) -> str:
        binary = str(self.settings["binary"])
        if which(binary) is None and not Path(binary).is_file():
            raise EnvironmentProblem(f"QEMU not found: {binary}", "apt-get install qemu-system-x86 qemu-utils (or set vm_hosts.*.binary)")
        return binary

    def forwards(self) -> dict[str, int]:
        names = ("winrm", "ssh", "rdp")
        return {n: port for n, (port, _) in zip(names, forward_ports(self.settings), strict=True) if port}

    # -- instance record --------------------------------------------------
    def _instance(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.instance_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a half-written record can't exist (atomic writes); treat junk as absent
        return data if isinstance(data, dict) else None

    def _save_instance(self, data: dict[str, Any]) -> None:
        write_atomic(self.instance_path, json.dumps(data, indent=1, sort_keys=True).encode())

    def _alive(self, inst: Mapping[str, Any] | None) -> tuple[bool, int | None]:
        if not inst or not isinstance(inst.get("pid"), int):
            return False, None
        return _process_alive(int(inst["pid"]), str(inst.get("qmp", self.socket)))

    def _log_tail(self) -> str:
        """QEMU's last words in qemu.log (our own '--- <argv>' header lines excluded)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return last_meaningful_line("\n".join(line for line in text.splitlines() if not line.startswith("--- ")))

    # -- QMP ----------------------------------------------------------------
    def _monitor(self, timeout: float = 10.0, *, refused_grace: float = 0.0) -> Qmp:
        if self._qmp is None or not self._qmp.connected:
            qmp = Qmp(self.socket, timeout=timeout)
            qmp.connect(refused_grace=refused_grace)
            self._qmp = qmp
            # Events that fired while nobody was connected are gone; the runstate is not.
            if self._runstate(qmp) == "guest-panicked" and not self._reported_panic:
                self._reported_panic = True
                self._events.append(VmEvent("GUEST_PANICKED", time.time(), {"source": "runstate (happened before this connection)"}))
        return self._qmp

    @staticmethod
    def _runstate(qmp: Qmp) -> str:
        return str((qmp.execute("query-status") or {}).get("status", "unknown"))

    def _collect_events(self) -> None:
        if self._qmp is None or not self._qmp.connected:
            return
        for ev in self._qmp.drain():
            if ev.name in INTERESTING_EVENTS:
                if ev.name == "GUEST_PANICKED":
                    self._reported_panic = True
                self._events.append(VmEvent(ev.name, ev.timestamp, dict(ev.data)))

    @contextlib.contextmanager
    def _own_operation(self) -> Iterator[Qmp]:
        """Events caused by our own commands (STOP/RESUME of loadvm, RESET, ...) are not news."""
        qmp = self._monitor()
        self._collect_events()
        try:
            yield qmp
        finally:
            if qmp.connected:
                qmp.drain()

    def _dry(self, text: str) -> None:
        self.ctx.say(f"[dry] {text}")

    # -- VmHost -------------------------------------------------------------
    def status(self) -> VmStatus:
        inst = self._instance()
        if inst is None:
            saved = ", ".join(self.saved_states()) or "none"
            return VmStatus(self.name, VmState.STOPPED, f"QEMU not running (saved states: {saved})")
        alive, code = self._alive(inst)
        pid = inst.get("pid")
        if not alive:
            self.close()  # the monitor died with QEMU
            if inst.get("stopping"):
                return VmStatus(self.name, VmState.STOPPED, "QEMU exited during a stop")
            how = f"exit code {code}" if code is not None else "killed or crashed"
            tail = self._log_tail()
            return VmStatus(
                self.name,
                VmState.CRASHED,
                f"QEMU (pid {pid}) exited unexpectedly ({how})" + (f"; last output: {tail}" if tail else "") + f"; log: {self.log_path}",
            )
        try:
            qmp = self._monitor(timeout=5.0)
            runstate = self._runstate(qmp)
        except PipelineError as exc:
            return VmStatus(self.name, VmState.UNKNOWN, f"QEMU pid {pid} is alive but QMP does not answer: {exc.message}")
        state = _RUNSTATE.get(runstate, VmState.UNKNOWN)
        ports = ", ".join(f"{k} 127.0.0.1:{v}" for k, v in self.forwards().items())
        detail = f"runstate {runstate}, pid {pid}" + (f", {ports}" if ports else "")
        if runstate == "guest-panicked":
            detail = f"guest panicked (pvpanic); QEMU keeps it paused for inspection, pid {pid}"
        elif runstate == "shutdown":
            detail = f"guest shut down; QEMU (pid {pid}) still holds its disk until `invoke vm.stop`"
        return VmStatus(self.name, state, detail)

    def saved_states(self) -> list[str]:
        if not self.states_dir.is_dir():
            return []
        return sorted(p.name for p in self.states_dir.iterdir() if p.is_dir() and (p / "disk.qcow2").is_file())

    def start(self) -> None:
        inst = self._instance()
        alive, _ = self._alive(inst)
        if alive:
            if self.ctx.dry:
                self._dry("qmp: query-status; cont if paused (QEMU already running)")
                return
            with self._own_operation() as qmp:
                runstate = self._runstate(qmp)
                if runstate == "running":
                    return
                if runstate == "guest-panicked":
                    raise StepFailed(
                        f"VM {self.name}: the guest panicked and QEMU keeps it paused",
                        "revert it (`invoke vm.revert`) or stop it (`invoke vm.stop`)",
                    )
                if runstate == "shutdown":
                    qmp.execute("system_reset")  # the guest powered itself off: boot it again
                qmp.execute("cont")
            return
        if inst is not None:
            self.ctx.step(f"previous QEMU run of {self.name} had exited ({self.status().detail}); discarding it")
            self._cleanup()
        self._boot(from_state=None)

    def stop(self, graceful_timeout: float = 60.0) -> str:
        inst = self._instance()
        alive, _ = self._alive(inst)
        if self.ctx.dry:
            if alive:
                self._dry(f"qmp: system_powerdown; wait up to {graceful_timeout:g} s for SHUTDOWN; then quit (kill if needed)")
                self._dry(f"discard the run overlay {self.run_dir}")
            return "graceful"
        if not alive:
            self._cleanup()
            return "graceful"
        assert inst is not None
        inst["stopping"] = True
        self._save_instance(inst)
        mode = "hard"
        try:
            with self._own_operation() as qmp:
                if self._runstate(qmp) == "running":
                    qmp.execute("system_powerdown")
                    if self._wait_for_shutdown(qmp, inst, graceful_timeout):
                        mode = "graceful"
        except PipelineError:
            pass  # monitor gone or busy: fall through to the hard stop
        self._terminate(inst)
        self._cleanup()
        return mode

    def revert(self, state: str) -> None:
        self._check_state_name(state, saving=False)
        inst = self._instance()
        alive, _ = self._alive(inst)
        if state == BASE_STATE:
            self._hard_stop_for_revert(inst, alive)
            self._boot(from_state=None)
            return
        if alive and inst is not None and state in inst.get("states", []):
            if self.ctx.dry:
                self._dry(f"qmp: human-monitor-command loadvm {state}; cont")
                return
            with self._own_operation() as qmp:
                qmp.hmp(f"loadvm {state}", timeout=600)
                qmp.execute("cont")
            self._reported_panic = False
            return
        if not (self.states_dir / state / "disk.qcow2").is_file():
            known = ", ".join(self.saved_states()) or "none"
            raise ConfigError(
                f"VM {self.name}: no saved state '{state}' (saved: {known}; '{BASE_STATE}' = fresh boot of the base image)",
                f"save it with `invoke vm.snapshot {state}` once the guest is in that state",
            )
        self._hard_stop_for_revert(inst, alive)
        self._boot(from_state=state)

    def snapshot(self, state: str) -> None:
        self._check_state_name(state, saving=True)
        inst = self._instance()
        alive, _ = self._alive(inst)
        if not alive or inst is None:
            raise StepFailed(f"VM {self.name} is not running: nothing to save", "start it (`invoke vm.start`) or revert to a state first")
        target = self.states_dir / state
        if self.ctx.dry:
            self._dry(f"qmp: human-monitor-command savevm {state}; stop; copy {self.run_dir}/*.qcow2 -> {target}/; cont")
            return
        with self._own_operation() as qmp:
            was_running = self._runstate(qmp) == "running"
            qmp.hmp(f"savevm {state}", timeout=1800)
            # Pausing flushes QEMU's qcow2 caches to the file, so the copy is consistent.
            qmp.execute("stop")
            try:
                self._keep_run_files_as(state)
            finally:
                if was_running:
                    qmp.execute("cont")
        states = [s for s in inst.get("states", []) if s != state] + [state]
        inst["states"] = states
        self._save_instance(inst)

    def addresses(self) -> list[str]:
        # User-mode networking: the guest is reached through loopback forwards only.
        alive, _ = self._alive(self._instance())
        return ["127.0.0.1"] if alive else []

    def events(self) -> list[VmEvent]:
        inst = self._instance()
        if inst is not None:
            alive, code = self._alive(inst)
            if alive:
                with contextlib.suppress(PipelineError):
                    self._monitor(timeout=5.0)
                    if self._qmp is not None:
                        self._qmp.pump(0.05)
                    self._collect_events()
            elif not inst.get("stopping") and not self._reported_exit:
                self._reported_exit = True
                self._collect_events()  # whatever QEMU said before it went away
                self._events.append(VmEvent("PROCESS_EXITED", time.time(), {"pid": inst.get("pid"), "returncode": code, "log": str(self.log_path)}))
        out, self._events = self._events, []
        return out

    def wait_reachable(self, probe: Callable[[], bool], timeout: float) -> None:
        from .base import poll_until_reachable

        poll_until_reachable(self, probe, timeout)

    def inject_nmi(self) -> None:
        """QMP inject-nmi: turns a hung Windows guest into a crash dump (NMICrashDump=1)."""
        if self.ctx.dry:
            self._dry("qmp: inject-nmi")
            return
        if not self._alive(self._instance())[0]:
            raise StepFailed(f"VM {self.name} is not running", "start it first (`invoke vm.start`)")
        with self._own_operation() as qmp:
            qmp.execute("inject-nmi")

    def hmp(self, command_line: str) -> str:
        """A human-monitor command on the running QEMU (tests, debugging, AutoHCK-style host steps)."""
        if self.ctx.dry:
            self._dry(f"qmp: human-monitor-command {command_line}")
            return ""
        if not self._alive(self._instance())[0]:
            raise StepFailed(f"VM {self.name} is not running", "start it first (`invoke vm.start`)")
        return self._monitor().hmp(command_line)

    def close(self) -> None:
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None

    # -- internals ----------------------------------------------------------
    def _check_state_name(self, state: str, *, saving: bool) -> None:
        if not STATE_NAME.match(state):
            raise ConfigError(f"state name {state!r} is not allowed", "use letters, digits, '.', '_' and '-' (up to 64)")
        if saving and state == BASE_STATE:
            raise ConfigError(f"'{BASE_STATE}' is reserved (fresh boot of the base image)", "pick another name")

    def _hard_stop_for_revert(self, inst: dict[str, Any] | None, alive: bool) -> None:
        # Reverting throws the current run away, so there is no point in a graceful shutdown.
        if self.ctx.dry:
            if alive:
                self._dry("qmp: quit (the current run is discarded)")
            return
        if alive and inst is not None:
            inst["stopping"] = True
            self._save_instance(inst)
            self._terminate(inst)
        self._cleanup()

    def _boot(self, *, from_state: str | None) -> None:
        binary = self._binary()
        base = self._base_image()
        code, template = self._firmware()
        disk = self.run_dir / "disk.qcow2" if (base is not None or from_state) else None
        vars_file = self.run_dir / "vars.qcow2" if code is not None else None
        argv = build_argv(
            {**self.settings, "binary": binary},
            vm_name=self.name,
            qmp_socket=self.socket,
            disk=disk,
            vars_file=vars_file,
            ovmf_code=code,
            loadvm=from_state,
        )
        if not self.ctx.dry:
            self.dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir.mkdir()
        if from_state:
            self._restore_run_files(from_state, with_vars=vars_file is not None)
        else:
            qemu_img = str(Path(binary).with_name("qemu-img")) if os.sep in binary else "qemu-img"
            if disk is not None and base is not None:
                self.ctx.runner.run([qemu_img, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(disk)], what="qemu-img create (run overlay)")
            if vars_file is not None and template is not None:
                self.ctx.runner.run([qemu_img, "convert", "-f", "raw", "-O", "qcow2", str(template), str(vars_file)], what="qemu-img convert (OVMF vars)")
        if self.ctx.dry:
            self.ctx.say(f"[dry] $ {format_argv(argv)}   (QEMU runs detached; log {self.log_path})")
            self._dry("qmp: qmp_capabilities; cont")
            return
        pid = self._spawn(argv)
        self._save_instance(
            {"pid": pid, "qmp": str(self.socket), "argv": argv, "started": time.time(), "states": [from_state] if from_state else [], "stopping": False}
        )
        self._reported_exit = self._reported_panic = False
        self._events.clear()
        try:
            self._monitor(refused_grace=5.0)  # the socket file exists a moment before QEMU listens on it
            with self._own_operation() as qmp:
                qmp.execute("cont")
        except PipelineError as exc:
            alive, exit_code = self._alive(self._instance())
            if not alive:
                self._cleanup()
                raise StepFailed(
                    f"QEMU exited right after starting (exit code {exit_code}): {self._log_tail() or exc.message}", f"see {self.log_path}"
                ) from None
            raise

    def _spawn(self, argv: list[str]) -> int:
        """Start QEMU detached. The one place that bypasses ctx.runner, on purpose:

        QEMU must outlive this `invoke` (later ones reconnect through qmp.sock), so it
        runs in its own session with output to qemu.log, not as a captured child.
        """
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # a stale socket from a killed run would fool the wait below
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {format_argv(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
            except OSError as exc:
                raise EnvironmentProblem(f"cannot start QEMU {argv[0]}: {exc.strerror}", "install qemu-system-x86") from None
        _CHILDREN[proc.pid] = proc
        deadline = time.monotonic() + 30.0
        while not self.socket.exists():
            code = proc.poll()
            if code is not None:
                raise StepFailed(f"QEMU failed to start (exit code {code}): {self._log_tail()}", f"see {self.log_path}")
            if time.monotonic() > deadline:
                self._kill(proc.pid)
                raise StepFailed("QEMU did not open its QMP socket within 30 s", f"see {self.log_path}")
            time.sleep(0.02)
        return proc.pid

    def _wait_for_shutdown(self, qmp: Qmp, inst: Mapping[str, Any], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if qmp.wait_event({"SHUTDOWN"}, min(0.5, max(0.0, deadline - time.monotonic()))) is not None:
                return True
            if not self._alive(inst)[0]:
                return True
            with contextlib.suppress(PipelineError):
                if self._runstate(qmp) == "shutdown":
                    return True
        return False

    def _terminate(self, inst: Mapping[str, Any]) -> None:
        """quit over QMP (immediate, like pulling the plug); SIGKILL if QEMU hangs."""
        pid = int(inst["pid"])
        if self._qmp is not None and self._qmp.connected:
            with contextlib.suppress(PipelineError):
                self._qmp.execute("quit", timeout=5.0)
        else:
            with contextlib.suppress(PipelineError):
                self._monitor(timeout=3.0).execute("quit", timeout=5.0)
        self.close()
        if not self._wait_exit(inst, 10.0):
            self._kill(pid)
            self._wait_exit(inst, 10.0)

    def _wait_exit(self, inst: Mapping[str, Any], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(inst)[0]:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    @staticmethod
    def _kill(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)  # our own QEMU, by pid
        child = _CHILDREN.get(pid)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)

    def _cleanup(self) -> None:
        """Forget the run: overlay, socket, record. Named states and the base stay."""
        self.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for path in (self.socket, self.instance_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._reported_exit = False

    def _keep_run_files_as(self, state: str) -> None:
        tmp = self.states_dir / f".{state}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in ("disk.qcow2", "vars.qcow2"):
            if (self.run_dir / name).is_file():
                shutil.copyfile(self.run_dir / name, tmp / name)
        write_atomic(tmp / "state.json", json.dumps({"name": state, "saved": time.time(), "base_image": str(self._path_setting("base_image") or "")}).encode())
        final = self.states_dir / state
        old = self.states_dir / f".{state}.{os.getpid()}.old"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def _restore_run_files(self, state: str, *, with_vars: bool) -> None:
        source = self.states_dir / state
        if with_vars and not (source / "vars.qcow2").is_file():
            raise ConfigError(f"saved state '{state}' has no OVMF vars but the VM now boots with OVMF", f"save '{state}' again with the current settings")
        if self.ctx.dry:
            self._dry(f"copy {source}/*.qcow2 -> {self.run_dir}/ (QEMU then starts with -loadvm {state})")
            return
        for name in ("disk.qcow2", "vars.qcow2"):
            if (source / name).is_file() and (name == "disk.qcow2" or with_vars):
                shutil.copyfile(source / name, self.run_dir / name)
