"""Fakes of the file-transfer guest scripts (push in chunks, hash check and atomic replace, ranged
reads) against FakeWindows.files, keeping the scripts' rules: a chunk must continue the partial
file, a hash mismatch deletes the partial, an identical destination is left alone, a running
driver's image cannot be replaced. FakeGuest moves files itself; transports that run these
scripts (the loopback WinRM endpoint) are answered from here."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from driverpipe.transports.base import GuestScriptError

from .guest import FakeWindows, handler


@handler("Get-FileSha256.ps1")
def get_file_sha256(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    data = m.files.get(p["Path"])
    if data is None:
        return {"exists": False, "sha256": "", "size": 0}
    return {"exists": True, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


@handler("Write-FileChunk.ps1")
def write_file_chunk(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    path, offset = p["Path"], p["Offset"]
    current = b"" if offset == 0 else m.files.get(path)
    if current is None:
        raise GuestScriptError(f"Could not find file '{path}'.")
    if len(current) != offset:
        raise GuestScriptError(f"chunk offset {offset} does not match the partial file's length {len(current)}")
    m.files[path] = current + base64.b64decode(p["Base64"])
    return {"size": len(m.files[path])}


@handler("Complete-FileUpload.ps1")
def complete_file_upload(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    partial = p["Partial"]
    if p.get("Discard"):
        m.files.pop(partial, None)
        return {"discarded": True}
    data = m.files.get(partial)
    if data is None:
        raise GuestScriptError(f"Cannot find path '{partial}' because it does not exist.")
    actual = hashlib.sha256(data).hexdigest()
    if actual != p["Sha256"].lower():
        m.files.pop(partial, None)
        raise GuestScriptError(f"uploaded file hash {actual} does not match the local file ({p['Sha256']}); nothing was replaced")
    existing = m.files.get(p["Path"])
    if existing is not None and hashlib.sha256(existing).hexdigest() == actual:
        m.files.pop(partial)
        return {"sha256": actual, "size": len(data), "replaced": False}
    if p["Path"].lower() in m.running_images():
        raise GuestScriptError("The process cannot access the file because it is being used by another process.")
    m.files[p["Path"]] = m.files.pop(partial)
    return {"sha256": actual, "size": len(data), "replaced": True}


@handler("Read-FileRange.ps1")
def read_file_range(m: FakeWindows, p: dict[str, Any]) -> dict[str, Any]:
    data = m.files.get(p["Path"])
    offset = p.get("Offset", 0)
    if data is None:
        return {"exists": False, "size": 0, "offset": offset, "base64": ""}
    part = data[offset : offset + max(0, p["Count"])]
    return {"exists": True, "size": len(data), "offset": offset, "base64": base64.b64encode(part).decode()}
