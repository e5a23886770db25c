"""Set-GuestLease.ps1's rules, for the fake guests (in memory) and the fake powershell (a local file)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

FIELDS = ("owner", "host", "machine", "pid", "started", "expires")
SIDECAR = ".expires"  # the holder's expiry, written before the lease


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read(text: str, p: dict[str, Any], mtime: float, sidecar: str = "") -> dict[str, Any] | None:
    """None: no lease (absent or empty). A lease that does not read as one is 'unreadable',
    held until its last write time plus the lease length, or the sidecar's expiry when later (the script's Read-Lease)."""
    if not text:
        return None
    try:
        current = json.loads(text)
    except ValueError:
        current = None
    valid = (
        isinstance(current, dict)
        and isinstance(current.get("token"), str)
        and bool(current["token"])
        and all(_number(current.get(k)) for k in ("expires", "started", "pid"))
        and all(isinstance(current.get(k), str) for k in ("owner", "host"))
    )
    if valid:
        assert isinstance(current, dict)
        return current
    written = int(mtime)
    expires = written + int(p.get("Seconds", 900))
    if sidecar.strip().isdigit():
        expires = max(expires, int(sidecar.strip()))
    return {
        "token": "",
        "owner": "",
        "host": "",
        "machine": "",
        "pid": 0,
        "started": written,
        "expires": expires,
        "unreadable": f"the lease file {p['Path']} cannot be read",
    }


def _holder(current: dict[str, Any]) -> dict[str, Any]:
    holder = {k: current.get(k) for k in FIELDS}
    holder["machine"] = str(holder["machine"] or "")
    if current.get("unreadable"):
        holder["unreadable"] = current["unreadable"]
    return holder


def decide(text: str, p: dict[str, Any], now: float | None = None, mtime: float | None = None, sidecar: str = "") -> tuple[str | None, dict[str, Any]]:
    """(new file text, "" to delete it, or None to keep it; the script's result) for the current lease text and the call's params.
    The sidecar's new text is `sidecar_text(new)`, written before the lease."""
    now = time.time() if now is None else now
    current = read(text, p, now if mtime is None else mtime, sidecar)
    mine = current is not None and current.get("token") == p["Token"]
    result: dict[str, Any] = {"acquired": False, "holder": None, "took_over": None}
    if p.get("Query"):
        if current is not None and float(current["expires"]) > now:
            result["holder"] = _holder(current)
        return None, result
    if p.get("Release"):
        result["acquired"] = True
        return ("" if mine else None), result
    dead_here = (
        current is not None
        and not current.get("unreadable")
        and bool(p.get("TakeOverMachineId"))
        and isinstance(current.get("machine"), str)
        and current.get("machine") == p.get("TakeOverMachineId")
        and current.get("pid") == p.get("TakeOverProcessId")
    )
    if current is None or mine or dead_here or float(current["expires"]) <= now:
        if current is not None and not mine:
            result["took_over"] = _holder(current)
        started = current["started"] if mine and current is not None else int(now)
        lease = {"token": p["Token"], "owner": p.get("Owner", ""), "host": p.get("Machine", ""), "machine": p.get("MachineId", "")}
        lease["pid"] = p.get("ProcessId", 0)
        lease.update(started=started, expires=int(now) + int(p.get("Seconds", 900)))
        result["acquired"] = True
        return json.dumps(lease), result
    result["holder"] = _holder(current)
    return None, result


def sidecar_text(new: str) -> str:
    return str(json.loads(new)["expires"])


def on_local_file(path: Path, p: dict[str, Any]) -> dict[str, Any]:
    """The script against a real file: a lock file beside it as the mutex, the lease replaced
    atomically; -Query reads only and creates nothing."""
    import fcntl

    side = path.with_name(path.name + SIDECAR)

    def text_and_mtime() -> tuple[str, float, str]:
        try:
            sidecar = side.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            sidecar = ""
        try:
            return path.read_bytes().decode("utf-8", "replace"), path.stat().st_mtime, sidecar
        except FileNotFoundError:
            return "", time.time(), sidecar

    if p.get("Query"):
        return decide(*_args(text_and_mtime(), p))[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as mutex:
        fcntl.flock(mutex.fileno(), fcntl.LOCK_EX)
        new, result = decide(*_args(text_and_mtime(), p))
        if new == "":
            path.unlink(missing_ok=True)
            side.unlink(missing_ok=True)
        elif new is not None:
            for dest, text in ((side, sidecar_text(new)), (path, new)):
                tmp = dest.with_name(f"{dest.name}.{p['Token']}.tmp")
                with tmp.open("w", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, dest)
        return result


def _args(read_back: tuple[str, float, str], p: dict[str, Any]) -> tuple[str, dict[str, Any], None, float, str]:
    text, mtime, sidecar = read_back
    return text, p, None, mtime, sidecar
