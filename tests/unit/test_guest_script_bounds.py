"""Round 3 of the Windows-side review, where it can be checked here (PowerShell does not run here):
every wait in the guest scripts is bounded and stoppable, a stop ends the whole process tree, a
replace never deletes first, and a dead branch is gone. Checked on the scripts as sent."""

from __future__ import annotations

import re

from driverpipe.core.scripts import load_script, script_path


def _sent(name: str) -> str:
    return load_script(script_path(name))


def _code(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def test_invoke_native_waits_for_its_pipes_a_bounded_time_and_ends_the_tree_on_a_stop() -> None:
    code = _code(_sent("Invoke-DriverLoad.ps1"))  # any script that includes Invoke-Native.ps1
    assert not re.search(r"\$copy(Out|Err)\.Wait\(\)", code), "an unbounded wait on a pipe copy"
    assert "$copyDeadline" in code and "WaitAll(@($copyOut, $copyErr), 250)" in code
    assert "taskkill.exe" in code and "/T /F /PID" in code and "Stop-NativeTree $process.Id" in code


def test_complete_file_upload_replaces_in_one_step() -> None:
    code = _code(_sent("Complete-FileUpload.ps1"))
    assert "Move-Item" not in code, "5.1's Move-Item -Force deletes the destination first"
    assert "MoveFileExW" in code and "MoveFileExW(from, to, 9)" in code  # REPLACE_EXISTING | WRITE_THROUGH


def test_remote_cargo_build_waits_a_bounded_stoppable_time() -> None:
    code = _code(_sent("Invoke-RemoteCargoBuild.ps1"))
    assert "$proc.WaitForExit()" not in code and "$proc.WaitForExit(250)" in code
    assert "$TimeoutSeconds" in code and "Stop-NativeTree $proc.Id" in code


def test_guest_state_has_no_dead_firmware_branch() -> None:
    assert "firmware_type" not in _sent("Get-GuestState.ps1")
