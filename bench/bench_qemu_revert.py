"""Revert-to-running time: QemuHost.revert vs the raw QMP operations it wraps.

Boots the tiny OS-less idle guest from tests/qemu_guest.py under TCG, saves a
state, then alternates, ROUNDS times each:
  raw:     qemu.qmp QMPClient: human-monitor-command "loadvm bench", cont, query-status
  wrapper: QemuHost.revert("bench") + QemuHost.status() (which does query-status)
and prints the medians and their ratio (target <= 1.2). Also prints one cold revert
(QEMU stopped: kept files copied, QEMU started with -loadvm) as an absolute figure.

    python bench/bench_qemu_revert.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from driverpipe.core.config import load  # noqa: E402
from driverpipe.core.context import RunContext  # noqa: E402
from driverpipe.vmhosts.base import VmState  # noqa: E402
from driverpipe.vmhosts.factory import open_vm_host  # noqa: E402
from driverpipe.vmhosts.qemu import QemuHost  # noqa: E402
from qemu_guest import IDLE, make_base_image  # noqa: E402


def raw_revert(loop: asyncio.AbstractEventLoop, client: object) -> float:
    async def go() -> None:
        out = await client.execute("human-monitor-command", {"command-line": "loadvm bench"})  # type: ignore[attr-defined]
        assert "Error" not in str(out), out
        await client.execute("cont")  # type: ignore[attr-defined]
        status = await client.execute("query-status")  # type: ignore[attr-defined]
        assert status["status"] == "running", status

    t0 = time.perf_counter()
    loop.run_until_complete(go())
    return time.perf_counter() - t0


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory(prefix="dp-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
        base = make_base_image(root, IDLE)
        user = root / "user.toml"
        user.write_text(
            '[targets.b]\ntransport = "local"\nvm_host = "q"\nvm_name = "bench"\n'
            f'[vm_hosts.q]\nkind = "qemu"\naccel = "tcg"\nmemory_mb = 64\ncpus = 1\nbase_image = "{base}"\nstate_dir = "{root / "s"}"\nforward_winrm = 0\n',
            encoding="utf-8",
        )
        os.environ["DRIVERPIPE_CONFIG"] = str(user)
        cfg = load(root=root)
        host = open_vm_host(RunContext(config=cfg, echo=lambda _: None), cfg.target("b"))
        assert isinstance(host, QemuHost)
        try:
            host.start()
            host.snapshot("bench")
            host.revert("bench")  # warm-up (connection already open)
            from qemu.qmp import QMPClient

            raw: list[float] = []
            wrapped: list[float] = []
            for _ in range(rounds):
                host.close()  # QEMU's QMP socket serves one client at a time
                loop = asyncio.new_event_loop()
                client = QMPClient("bench")
                loop.run_until_complete(client.connect(str(host.socket)))
                raw.append(raw_revert(loop, client))
                loop.run_until_complete(client.disconnect())
                loop.close()
                host.status()  # reconnect outside the measurement, as a long-lived caller would be
                t0 = time.perf_counter()
                host.revert("bench")
                assert host.status().state is VmState.RUNNING
                wrapped.append(time.perf_counter() - t0)
            host.stop(graceful_timeout=0)
            t0 = time.perf_counter()
            host.revert("bench")
            assert host.status().state is VmState.RUNNING
            cold = time.perf_counter() - t0
        finally:
            host.stop(graceful_timeout=0)
            host.close()
    r, w = statistics.median(raw), statistics.median(wrapped)
    print(f"rounds: {rounds} (idle 64 MiB OS-less guest, TCG)")
    print(f"raw QMP loadvm+cont+query-status: median {r * 1000:.1f} ms (min {min(raw) * 1000:.1f}, max {max(raw) * 1000:.1f})")
    print(f"QemuHost.revert + status:         median {w * 1000:.1f} ms (min {min(wrapped) * 1000:.1f}, max {max(wrapped) * 1000:.1f})")
    print(f"ratio wrapper/raw: {w / r:.2f} (target <= 1.2)")
    print(f"cold revert (QEMU stopped -> copy state files, start with -loadvm, running): {cold * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
