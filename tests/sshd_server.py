"""Test helpers: a real OpenSSH server on loopback, and a fake `powershell` at the process boundary.

The sshd is Debian's real server (/usr/sbin/sshd), started with a throwaway host
key, a throwaway user key and its own config in a temp dir; it listens on
127.0.0.1 only, on a free port. No Windows here, so the command the transport
runs is answered by FAKE_POWERSHELL: a small Python program that decodes
-EncodedCommand, insists on driverpipe's exact wrapper shape (psencode.parse_wrapper)
and emulates the few scripts the tests use. Everything below it (SSH, SFTP,
channels, exit codes, stdout/stderr) is real.

Used by tests/integration/test_ssh_transport.py, tests/unit/test_local_transport.py
and bench/bench_ssh_push.py.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
SHIPPED = Path(__file__).resolve().parents[1] / "src" / "driverpipe" / "scripts" / "guest"

# Scripts that exist only for the tests (real PowerShell, parsed by the grammar tests too).
TEST_SCRIPTS = {
    "Get-EchoParams.ps1": """[CmdletBinding()]
param(
    [string]$Name = '',
    [int]$Count = 0,
    [object[]]$Items = @(),
    [switch]$Flag
)
$ErrorActionPreference = 'Stop'
ConvertTo-Json -InputObject ([pscustomobject]@{ params = $PSBoundParameters }) -Compress -Depth 6
""",
    "Invoke-Failing.ps1": """[CmdletBinding()]
param(
    [string]$Message = 'it failed',
    [int]$Code = 1
)
$ErrorActionPreference = 'Stop'
[Console]::Error.WriteLine($Message)
ConvertTo-Json -InputObject ([pscustomobject]@{ never = $true }) -Compress
exit $Code
""",
    "Start-Sleeping.ps1": """[CmdletBinding()]
param(
    [double]$Seconds = 1
)
$ErrorActionPreference = 'Stop'
Start-Sleep -Milliseconds ([int]($Seconds * 1000))
ConvertTo-Json -InputObject ([pscustomobject]@{ slept = $Seconds }) -Compress
""",
    "Start-Stubborn.ps1": """[CmdletBinding()]
param(
    [string]$PidFile = ''
)
$ErrorActionPreference = 'Stop'
# A child that never returns and ignores every signal it can (a hung native tool).
Set-Content -LiteralPath $PidFile -Value $PID
while ($true) { Start-Sleep -Seconds 1 }
ConvertTo-Json -InputObject ([pscustomobject]@{ never = $true }) -Compress
""",
    "Write-Noise.ps1": """[CmdletBinding()]
param()
$ErrorActionPreference = 'Stop'
'some chatter before the result'
ConvertTo-Json -InputObject ([pscustomobject]@{ first = $true }) -Compress
ConvertTo-Json -InputObject ([pscustomobject]@{ last = $true }) -Compress
""",
}

FAKE_POWERSHELL = r'''
"""Fake powershell: accepts only driverpipe's wrapper, emulates a few scripts."""
import base64, hashlib, json, os, sys, time
from pathlib import Path

from driverpipe.core.scripts import load_script
from driverpipe.transports.psencode import ERROR_MARKER, decode_command, parse_wrapper

HERE = Path(__file__).resolve().parent
SCRIPTS = Path(os.environ.get("FAKE_PS_SCRIPTS") or (HERE.parent / "ps"))
DIRECT = Path(load_script.__code__.co_filename).resolve().parent.parent / "scripts" / "psdirect"
LOG = HERE / "calls.log"


class ScriptError(Exception):
    pass


def known_scripts():
    # As sent: #include lines expanded (the guest scripts' raw text is accepted too).
    known = {p.read_text(encoding="utf-8-sig"): p.name for p in SCRIPTS.glob("*.ps1")}
    known.update({load_script(p): p.name for p in SCRIPTS.glob("*.ps1")})
    known.update({load_script(p): p.name for p in DIRECT.glob("*.ps1")})
    return known


def _setting(name, default):
    path = HERE / name
    return path.read_text(encoding="utf-8").strip() if path.is_file() else default


def open_vm_session(p):
    """What Open-DpVmSession does, with the VM's rules: password from the environment only."""
    password = os.environ.pop("DRIVERPIPE_PSDIRECT_PASSWORD", "")
    if not password:
        raise ScriptError("driverpipe-psdirect: no guest password was handed over")
    if p["VMName"] != _setting("vm-name", "win11"):
        raise ScriptError(f"driverpipe-psdirect: Unable to find a virtual machine with name '{p['VMName']}'.")
    if (HERE / "vm-off").exists():
        raise ScriptError(f"driverpipe-psdirect: The virtual machine {p['VMName']} is not in running state.")
    if password != _setting("vm-password", "pw") or p["UserName"] != _setting("vm-user", "Administrator"):
        raise ScriptError("driverpipe-psdirect: The credential is invalid.")


def run_direct(name, p, out):
    """The scripts/psdirect host scripts: one 'session' into a VM whose files are local paths."""
    open_vm_session(p)
    known = known_scripts()
    if name == "Invoke-InVm.ps1":
        inner = known.get(p["ScriptText"])
        if inner is None:
            raise ScriptError("the script text is not a shipped guest script")
        return in_vm(inner, json.loads(p.get("ParamsJson") or "{}"), out)
    if name == "Send-VmFile.ps1":
        if known.get(p["HashScript"]) != "Get-FileSha256.ps1" or known.get(p["CompleteScript"]) != "Complete-FileUpload.ps1":
            raise ScriptError("Send-VmFile needs the shipped hash and completion scripts")
        present = run("Get-FileSha256.ps1", {"Path": p["RemotePath"]}, [])
        if present["exists"] and present["sha256"] == p["Sha256"].lower():
            return {"copied": False, "sha256": present["sha256"], "size": present["size"]}
        partial = Path(p["RemotePath"] + ".partial-" + os.urandom(4).hex())
        partial.parent.mkdir(parents=True, exist_ok=True)
        data = Path(p["LocalPath"]).read_bytes()
        try:
            if (HERE / "copy-fails").exists():
                partial.write_bytes(data[: len(data) // 2])
                raise ScriptError("Copy-Item: The network connection to the virtual machine was lost.")
            partial.write_bytes(data)
            done = run("Complete-FileUpload.ps1", {"Partial": str(partial), "Path": p["RemotePath"], "Sha256": p["Sha256"]}, [])
        except ScriptError:
            partial.unlink(missing_ok=True)
            raise
        return {"copied": True, "sha256": done["sha256"], "size": done["size"]}
    if name == "Receive-VmFile.ps1":
        remote = Path(p["RemotePath"])
        if not remote.is_file():
            return {"exists": False}
        Path(p["LocalPath"]).write_bytes(remote.read_bytes())
        return {"exists": True, "size": remote.stat().st_size}
    raise ScriptError(f"fake powershell cannot emulate {name}")


def in_vm(name, params, out):
    """The script runs in the VM's session process, not in this host-side one: killing this
    process leaves it running. Its first output line is that process's pid (as Invoke-InVm.ps1
    prints it), forwarded at once; the rest comes back when it ends."""
    import subprocess

    child = subprocess.Popen(
        [sys.executable, __file__, "--in-vm"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, text=True,
    )
    child.stdin.write(json.dumps({"name": name, "params": params}))
    child.stdin.close()
    print(child.stdout.readline().rstrip("\n"), flush=True)  # driverpipe-pid: N
    lines = child.stdout.read().splitlines()
    err = child.stderr.read()
    if child.wait() != 0:
        raise ScriptError(err.strip().splitlines()[-1].replace(ERROR_MARKER, "") if err.strip() else "the VM session ended")
    out.extend(lines[:-1])
    return json.loads(lines[-1])


def session_main():
    """--in-vm: the VM-side session process running one guest script."""
    job = json.loads(sys.stdin.read())
    print(f"driverpipe-pid: {os.getpid()}", flush=True)
    return emit(lambda out: run(job["name"], job["params"], out))


def emit(body):
    """Run body(out), print its extra lines and its JSON result last; a ScriptError is the error marker and exit 1."""
    out = []
    try:
        result = body(out)
    except ScriptError as exc:
        sys.stderr.write(ERROR_MARKER + str(exc) + "\n")
        return 1
    for line in out:
        print(line)
    print(json.dumps(result, separators=(",", ":")))
    return 0


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(name, p, out):
    if name == "Set-GuestLease.ps1":
        sys.path.insert(0, str(HERE))
        import lease  # tests/fakes/lease.py, copied beside this fake: the script's rules on a real file

        return lease.on_local_file(Path(p["Path"].replace("\\", "/")), p)
    if name == "Get-FileSha256.ps1":
        path = Path(p["Path"])
        if path.is_file():
            return {"exists": True, "sha256": sha256(path), "size": path.stat().st_size}
        return {"exists": False, "sha256": "", "size": 0}
    if name == "Complete-FileUpload.ps1":
        partial = Path(p["Partial"])
        if p.get("Discard"):
            partial.unlink(missing_ok=True)
            return {"discarded": True}
        actual = sha256(partial)
        if actual != p["Sha256"].lower():
            partial.unlink()
            raise ScriptError(f"uploaded file hash {actual} does not match the local file")
        size = partial.stat().st_size
        os.replace(partial, p["Path"])
        return {"sha256": actual, "size": size}
    if name == "Write-FileChunk.ps1":
        path = Path(p["Path"])
        data = base64.b64decode(p["Base64"])
        if int(p["Offset"]) == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        if path.stat().st_size != int(p["Offset"]):
            raise ScriptError("chunk offset does not match the partial file's length")
        with path.open("ab") as fh:
            fh.write(data)
        return {"size": path.stat().st_size}
    if name == "Read-FileRange.ps1":
        path = Path(p["Path"])
        if not path.is_file():
            return {"exists": False, "size": 0, "offset": p.get("Offset", 0), "base64": ""}
        with path.open("rb") as fh:
            fh.seek(int(p.get("Offset", 0)))
            data = fh.read(int(p["Count"]))
        return {"exists": True, "size": path.stat().st_size, "offset": p.get("Offset", 0),
                "base64": base64.b64encode(data).decode()}
    if name == "Test-Elevation.ps1":
        return {"elevated": not (HERE / "not-admin").exists(), "user": "FAKE\\tester"}
    if name == "Get-EchoParams.ps1":
        return {"params": p}
    if name == "Invoke-Failing.ps1":
        sys.stderr.write(p.get("Message", "it failed") + "\n")
        sys.exit(int(p.get("Code", 1)))
    if name == "Start-Sleeping.ps1":
        time.sleep(float(p.get("Seconds", 1)))
        return {"slept": p.get("Seconds", 1)}
    if name == "Stop-ProcessTree.ps1":
        import signal
        pid = int(p["ProcessId"])
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)  # taskkill /T: the process and what it started
            return {"rc": 0, "output": f"SUCCESS: The process with PID {pid} has been terminated."}
        except ProcessLookupError:
            return {"rc": 128, "output": f'ERROR: The process "{pid}" not found.'}
    if name == "Start-Stubborn.ps1":
        import signal
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGPIPE, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_IGN)
        Path(p["PidFile"]).write_text(str(os.getpid()))
        while True:
            time.sleep(1)
    if name == "Write-Noise.ps1":
        out.append("some chatter before the result")
        out.append(json.dumps({"first": True}))
        return {"last": True}
    if name == "Invoke-Batch.ps1":
        known = known_scripts()
        results = []
        for item in json.loads(p["ItemsJson"]):
            sub = known.get(item["script"])
            try:
                if sub is None:
                    raise ScriptError("unknown script in batch")
                results.append({"ok": True, "result": run(sub, item.get("params") or {}, [])})
            except ScriptError as exc:
                results.append({"ok": False, "error": str(exc)})
                break
        return results
    raise ScriptError(f"fake powershell cannot emulate {name}")


def main():
    args = sys.argv[1:]
    if args == ["--in-vm"]:
        return session_main()
    if args[:3] != ["-NoProfile", "-NonInteractive", "-EncodedCommand"] or len(args) != 4:
        sys.stderr.write(f"fake powershell: unexpected arguments {args[:3]}\n")
        return 64
    stdin_text = sys.stdin.read()
    try:
        text, params = parse_wrapper(decode_command(args[3]), stdin_text or None)
    except ValueError as exc:
        sys.stderr.write(f"fake powershell: refused: {exc}\n")
        return 65
    sys.stderr.write(f"driverpipe-pid: {os.getpid()}\n")  # the wrapper's first line
    sys.stderr.flush()
    name = known_scripts().get(text)
    with LOG.open("a", encoding="utf-8") as fh:
        record = {"script": name, "stdin": bool(stdin_text.strip()), "params": sorted(params)}
        if "DRIVERPIPE_PSDIRECT_PASSWORD" in os.environ:
            secret = os.environ["DRIVERPIPE_PSDIRECT_PASSWORD"]
            record["password_in_call"] = secret in " ".join(sys.argv) + stdin_text + json.dumps(params)
        fh.write(json.dumps(record) + "\n")
    if name is None:
        sys.stderr.write("fake powershell: script text is not a known script\n")
        return 66
    return emit(lambda out: run_direct(name, params, out) if (DIRECT / name).is_file() else run(name, params, out))


sys.exit(main())
'''


def install_fake_powershell(base: Path, names: tuple[str, ...] = ("powershell",)) -> Path:
    """Create base/bin/<names> (the fake) and base/ps/ (shipped + test scripts). Returns base/bin."""
    bin_dir = base / "bin"
    ps_dir = base / "ps"
    bin_dir.mkdir(parents=True, exist_ok=True)
    ps_dir.mkdir(parents=True, exist_ok=True)
    for script in SHIPPED.glob("*.ps1"):
        shutil.copy2(script, ps_dir / script.name)
    for name, text in TEST_SCRIPTS.items():
        (ps_dir / name).write_text(text, encoding="utf-8")
    shutil.copy2(Path(__file__).resolve().parent / "fakes" / "lease.py", bin_dir / "lease.py")
    for name in names:
        exe = bin_dir / name
        # The checkout under test, not whatever driverpipe is installed: an sshd session does not pass PYTHONPATH on.
        exe.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(SHIPPED.parents[2])!r})\n{FAKE_POWERSHELL}", encoding="utf-8")
        exe.chmod(0o755)
    return bin_dir


def fake_calls(bin_dir: Path) -> list[dict[str, object]]:
    import json

    log = bin_dir / "calls.log"
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "driverpipe-test", "-f", str(path)], check=True, capture_output=True, timeout=30)


class SshdServer:
    """A throwaway sshd on 127.0.0.1:<free port> (root may log in with the throwaway key only)."""

    def __init__(self, base: Path):
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.host_key = base / "host_ed25519"
        self.user_key = base / "user_ed25519"
        self.known_hosts = base / "known_hosts"
        self.user = getpass.getuser()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> SshdServer:
        if not self.host_key.exists():
            _keygen(self.host_key)
            _keygen(self.user_key)
            (self.base / "authorized_keys").write_text(self.user_key.with_suffix(".pub").read_text())
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
        last_err = ""
        for _ in range(3):  # a free port can be taken between probe and bind: retry
            self.port = free_port()
            cfg = self.base / "sshd_config"
            cfg.write_text(
                "\n".join(
                    [
                        f"Port {self.port}",
                        "ListenAddress 127.0.0.1",
                        f"HostKey {self.host_key}",
                        f"PidFile {self.base / 'sshd.pid'}",
                        f"AuthorizedKeysFile {self.base / 'authorized_keys'}",
                        "StrictModes no",
                        "UsePAM no",
                        "PermitRootLogin prohibit-password",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "PubkeyAuthentication yes",
                        "Subsystem sftp internal-sftp",
                        "LogLevel ERROR",
                        "MaxStartups 50",
                        "",
                    ]
                )
            )
            self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            if self._wait_ready(timeout):
                self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_pub()}\n")
                return self
            last_err = self._stop_proc()
        raise RuntimeError(f"sshd did not start: {last_err.strip()[:500]}")

    def host_pub(self) -> str:
        kind, b64 = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"{kind} {b64}"

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(4).startswith(b"SSH-"):
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def descendants(self) -> list[int]:
        """sshd's per-connection children (they setsid, so a process group kill misses them)."""
        if self.proc is None:
            return []
        parents = {self.proc.pid}
        found: list[int] = []
        changed = True
        while changed:
            changed = False
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) in found:
                    continue
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid in parents:
                    pid = int(entry.name)
                    found.append(pid)
                    parents.add(pid)
                    changed = True
        return found

    def kill_hard(self) -> None:
        """SIGKILL the server and every session process: the connection dies mid-operation."""
        pids = self.descendants()
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._stop_proc()

    def _stop_proc(self) -> str:
        err = ""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            try:
                _, raw = self.proc.communicate(timeout=5)
                err = (raw or b"").decode(errors="replace")
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return err

    def stop(self) -> None:
        for pid in self.descendants():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._stop_proc()
        self.proc = None
