"""Set-GuestLease.ps1's rules, for the fake guests (in memory) and the fake powershell (a local file)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

FIELDS = ("owner", "host", "pid", "started", "expires")


def decide(text: str, p: dict[str, Any], now: float | None = None) -> tuple[str | None, dict[str, Any]]:
    """(new file text or None to keep it, the script's result) for the current lease text and the call's params."""
    now = time.time() if now is None else now
    try:
        current = json.loads(text) if text.strip() else None
    except ValueError:
        current = None
    mine = current is not None and current.get("token") == p["Token"]
    result: dict[str, Any] = {"acquired": False, "holder": None, "took_over": None}
    if p.get("Query"):
        if current is not None and float(current.get("expires") or 0) > now:
            result["holder"] = {k: current.get(k) for k in FIELDS}
        return None, result
    if p.get("Release"):
        result["acquired"] = True
        return ("" if mine else None), result
    if current is None or mine or float(current.get("expires") or 0) <= now:
        if current is not None and not mine:
            result["took_over"] = {k: current.get(k) for k in FIELDS}
        started = current["started"] if mine else int(now)
        lease = {"token": p["Token"], "owner": p.get("Owner", ""), "host": p.get("Machine", ""), "pid": p.get("ProcessId", 0)}
        lease.update(started=started, expires=int(now) + int(p.get("Seconds", 900)))
        result["acquired"] = True
        return json.dumps(lease), result
    result["holder"] = {k: current.get(k) for k in FIELDS}
    return None, result


def on_local_file(path: Path, p: dict[str, Any]) -> dict[str, Any]:
    """The script against a real file, exclusive while read and rewritten (like FileShare.None)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.seek(0)
        new, result = decide(fh.read(), p)
        if new is not None:
            fh.seek(0)
            fh.truncate()
            fh.write(new)
        return result
