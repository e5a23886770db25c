"""The HTML report opened as a person would: headless Chromium, offline, from a file:// URL.

Needs Debian's chromium (skips locally without it, FAILS under CI=true). The
proxy points nowhere, so anything the page tried to fetch would fail; the
report has nothing to fetch, which the CSP in the page also enforces.
"""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from conftest import need_tool
from driverpipe.checks import report as rep

pytestmark = pytest.mark.chromium


def _sample() -> Any:
    """The rich sample report of the unit tests (guest text with markup, a bugcheck, every status)."""
    path = Path(__file__).resolve().parents[1] / "unit" / "test_report.py"
    spec = importlib.util.spec_from_file_location("_report_sample", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sample()


def _chromium(tool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(tool), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--proxy-server=127.0.0.1:9", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_report_renders_offline_in_chromium(tmp_path: Path) -> None:
    tool = need_tool("chromium", "chromium-browser", "google-chrome")
    page = tmp_path / "regress.html"
    rep.write_html(_sample(), page)
    shot = tmp_path / "shot.png"
    done = _chromium(tool, "--window-size=1200,1400", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 1400)
    assert len(set(pixels)) > 16, "the screenshot is blank"

    dom = _chromium(tool, "--dump-dom", page.as_uri()).stdout
    assert "<script" not in dom  # the guest's <script> line stayed text
    assert "&lt;script&gt;alert" in dom
    assert dom.count("<details") == 6 and "0x000000d1" in dom
