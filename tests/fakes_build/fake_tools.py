"""Fake executables for the Windows-only tools (cargo with wdk-build, stampinf, inf2cat, infverif)."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

FAKE_PROGRAM = r"""#!{python}
import base64, json, os, sys
from pathlib import Path

here = Path(__file__).resolve()
spec = json.loads(here.with_name(here.name + ".spec.json").read_text(encoding="utf-8"))
argv = sys.argv[1:]
with open(spec["calls"], "a", encoding="utf-8") as fh:
    fh.write(json.dumps({{"tool": here.name, "argv": argv, "cwd": os.getcwd()}}) + "\n")
if spec.get("argv") is not None and argv != spec["argv"]:
    sys.stderr.write("FAKE ARGV MISMATCH for " + here.name + ": got " + json.dumps(argv) + " want " + json.dumps(spec["argv"]) + "\n")
    sys.exit(99)
for path, b64 in spec.get("write", {{}}).items():
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(base64.b64decode(b64))
for path, pair in spec.get("replace", {{}}).items():
    data = Path(path).read_bytes()
    Path(path).write_bytes(data.replace(base64.b64decode(pair[0]), base64.b64decode(pair[1])))
sys.stdout.write(spec.get("stdout", ""))
sys.stderr.write(spec.get("stderr", ""))
sys.exit(spec.get("rc", 0))
"""


class FakeBin:
    """A folder of fake tools put first on PATH."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.calls_file = folder / "calls.jsonl"
        self.calls_file.touch()

    def add(
        self,
        name: str,
        *,
        argv: list[str] | None,
        stdout: str = "",
        stderr: str = "",
        rc: int = 0,
        write: dict[Path, bytes] | None = None,
        replace: dict[Path, tuple[bytes, bytes]] | None = None,
    ) -> Path:
        spec: dict[str, Any] = {
            "argv": argv,
            "stdout": stdout,
            "stderr": stderr,
            "rc": rc,
            "calls": str(self.calls_file),
            "write": {str(p): base64.b64encode(b).decode() for p, b in (write or {}).items()},
            "replace": {str(p): [base64.b64encode(a).decode(), base64.b64encode(b).decode()] for p, (a, b) in (replace or {}).items()},
        }
        program = self.folder / name
        program.write_text(FAKE_PROGRAM.format(python=sys.executable), encoding="utf-8")
        program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        program.with_name(name + ".spec.json").write_text(json.dumps(spec), encoding="utf-8")
        return program

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.calls_file.read_text(encoding="utf-8").splitlines() if line.strip()]

    def path_env(self) -> str:
        return f"{self.folder}{os.pathsep}{os.environ.get('PATH', '')}"
