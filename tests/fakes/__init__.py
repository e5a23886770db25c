"""Fakes shared by every engineer's tests: a Windows guest that keeps Windows' rules.

Importing this package registers every `*_handlers.py` module next to it, so a
FakeGuest can run any shipped script someone wrote a handler for. Import as
`from fakes.guest import FakeGuest, FakeWindows` (tests/ is on sys.path through
tests/conftest.py); the handler registry survives being imported under another
package name too.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .guest import HANDLERS, FakeGuest, FakeWindows, handler

__all__ = ["HANDLERS", "FakeGuest", "FakeWindows", "handler"]

for _path in sorted(Path(__file__).parent.glob("*_handlers.py")):
    importlib.import_module(f"{__name__}.{_path.stem}")
