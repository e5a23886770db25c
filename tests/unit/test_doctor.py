"""`invoke doctor --target`: guest-state rows from the fake guest, exit codes, --dry."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverpipe import doctor
from driverpipe.core.config import load
from driverpipe.core.context import RunContext
from driverpipe.core.errors import ExitCode
from fakes.guest import FakeGuest, FakeWindows

USER = '[targets.lab]\nhost = "127.0.0.1"\ntest_machine = true\n'


def _ctx(project: Path, *, dry: bool = False) -> tuple[RunContext, list[str]]:
    (project / "user-config.toml").write_text(USER, encoding="utf-8")
    out: list[str] = []
    return RunContext(config=load(root=project), dry=dry, echo=out.append, progress=out.append), out


def rows(checks: list[doctor.Check]) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def test_prepared_guest_is_all_ok(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = FakeWindows.prepared()
    machine.files["C:\\Tools\\Dbgview.exe"] = b"MZ"
    monkeypatch.setattr("driverpipe.transports.connect.open_guest", lambda ctx, target: FakeGuest(machine, "lab"))
    ctx, _ = _ctx(project)
    got = rows(doctor.collect(ctx, target="lab", tasks=["deploy"]))
    assert got["target lab: reachable"] == "ok"
    assert got["guest: TESTSIGNING on"] == "ok"
    assert got["guest: Secure Boot off"] == "ok"
    assert got["guest: HVCI off"] == "ok"
    assert got["guest: Debug Print Filter"] == "ok"


def test_unprepared_guest_is_missing_with_fixes_and_exit_3(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = FakeWindows(secure_boot=True, hvci=True)
    monkeypatch.setattr("driverpipe.transports.connect.open_guest", lambda ctx, target: FakeGuest(machine, "lab"))
    ctx, out = _ctx(project)
    checks = doctor.collect(ctx, target="lab", tasks=["deploy"])
    got = rows(checks)
    assert got["guest: Secure Boot off"] == "missing" and got["guest: HVCI off"] == "missing"
    assert got["guest: TESTSIGNING on"] == "missing"
    fix = next(c.fix for c in checks if c.name == "guest: Secure Boot off")
    assert "Set-VMFirmware" in fix
    assert doctor.run(ctx, target="lab", tasks=["deploy"]) == ExitCode.ENVIRONMENT
    assert any("needed item(s) missing" in line for line in out)


def test_unreachable_guest_is_one_row(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = FakeWindows()
    machine.down = True
    machine.down_attempts = 99

    def refuse(ctx: RunContext, target: object) -> FakeGuest:
        return FakeGuest(machine, "lab")

    monkeypatch.setattr("driverpipe.transports.connect.open_guest", refuse)
    ctx, _ = _ctx(project)
    got = rows(doctor.collect(ctx, target="lab", tasks=["deploy"]))
    assert got.get("target lab: reachable") == "missing" or got.get("target lab: state") == "missing"


def test_dry_doctor_does_not_contact_the_guest(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, _ = _ctx(project, dry=True)
    got = rows(doctor.collect(ctx, target="lab", tasks=["deploy"]))
    assert got["target lab: state"] == "n/a"


def test_doctor_shows_who_holds_the_target(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lease another run holds on the guest, and this machine's lock, are shown (read only: nothing is taken)."""
    import json
    import time

    from driverpipe.core.locks import target_lock

    machine = FakeWindows.prepared()
    lease = {"token": "other", "owner": "ci", "host": "runner-7", "pid": 4242, "started": int(time.time()), "expires": int(time.time()) + 600}
    machine.files["C:\\WazabiEDR\\.driverpipe-lease.json"] = json.dumps(lease).encode()
    monkeypatch.setattr("driverpipe.transports.connect.open_guest", lambda ctx, target: FakeGuest(machine, "lab"))
    ctx, _ = _ctx(project)
    lock = target_lock(ctx, ctx.config.target("lab"))
    lock.acquire(1, lambda _line: None)
    try:
        checks = {c.name: c for c in doctor.collect(ctx, target="lab", tasks=["deploy"])}
    finally:
        lock.release()
    assert checks["target lab: lease"].status == "warn" and "leased by ci@runner-7 (pid 4242" in checks["target lab: lease"].detail
    assert checks["target lab: lock"].status == "warn" and "in use by" in checks["target lab: lock"].detail
    assert json.loads(machine.files["C:\\WazabiEDR\\.driverpipe-lease.json"])["token"] == "other", "doctor takes nothing"


def test_a_garbled_lease_answer_is_a_warning_never_not_leased(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Garbling(FakeGuest):
        def run_script(self, script: str, params: dict | None = None, **kw: object) -> object:  # type: ignore[override]
            return "<html>proxy error</html>" if script == "Set-GuestLease.ps1" else super().run_script(script, params, **kw)

    machine = FakeWindows.prepared()
    monkeypatch.setattr("driverpipe.transports.connect.open_guest", lambda ctx, target: Garbling(machine, "lab"))
    ctx, _ = _ctx(project)
    checks = {c.name: c for c in doctor.collect(ctx, target="lab", tasks=["deploy"])}
    assert checks["target lab: lease"].status == "warn" and "unreadable" in checks["target lab: lease"].detail


def test_a_driver_store_package_of_ours_signed_otherwise_is_named(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = FakeWindows.prepared()
    monkeypatch.setattr("driverpipe.transports.connect.open_guest", lambda ctx, target: FakeGuest(machine, "lab"))
    monkeypatch.setattr("driverpipe.image.package.package_name", lambda ctx: "WazabiEDR_Driver")  # the fixture has no crate
    ctx, _ = _ctx(project)
    inf = "WazabiEDR_Driver.inf"
    machine.driver_store = [
        ("oem3.inf", "netkvm.inf", "Microsoft Windows Hardware Compatibility Publisher"),
        ("oem9.inf", inf.lower(), "WazabiEDR Test Signing"),
    ]
    row = f"guest: driver store signer of {inf}"
    assert rows(doctor.collect(ctx, target="lab", tasks=["deploy"]))[row] == "ok"
    machine.driver_store.append(("oem7.inf", inf.lower(), "WDKTestCert builder,133780000000000000"))
    checks = doctor.collect(ctx, target="lab", tasks=["deploy"])
    found = next(c for c in checks if c.name == row)
    assert found.status == "warn" and found.detail == "oem7.inf signed by WDKTestCert builder,133780000000000000"
