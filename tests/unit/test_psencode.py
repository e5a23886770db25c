"""The -EncodedCommand wrapper: fixed shape, base64-only variable part, parses with the real grammar."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from driverpipe.core.scripts import SCRIPTS_DIR
from driverpipe.parse.psgrammar import check_bound_params, parse_script
from driverpipe.transports import psencode

NASTY = {
    "Path": 'C:\\Program Files\\it\'s "here"\\$(Remove-Item -Recurse C:\\)`n;&|<>',
    "Count": 7,
    "Flag": True,
    "Items": [1, "x", None, {"a": "b"}],
    "Unicode": "ünïcödé ✓",
}


def _wrapper(inv: psencode.Invocation) -> str:
    return psencode.decode_command(inv.argv[-1])


def test_only_the_payload_literal_varies() -> None:
    a = psencode.build_wrapper("param($Path) 'x'", NASTY)
    b = psencode.build_wrapper("something else entirely", {"Other": 1})
    head_a, _, body_a = a.partition("\n")
    head_b, _, body_b = b.partition("\n")
    assert body_a == body_b, "everything but the first line is fixed"
    for head in (head_a, head_b):
        m = re.fullmatch(r"\$dpPayload = '([A-Za-z0-9+/=.]*)'", head)
        assert m, head
    # No user text appears in clear anywhere in the wrapper.
    assert "Remove-Item" not in a and "Program Files" not in a


def test_encoded_command_round_trips_and_parses_with_tree_sitter(tmp_path: Path) -> None:
    script = (SCRIPTS_DIR / "Get-FileSha256.ps1").read_text(encoding="utf-8-sig")
    inv = psencode.build_invocation("powershell", script, {"Path": NASTY["Path"]})
    assert inv.stdin is None
    assert inv.argv[:4] == ["powershell", "-NoProfile", "-NonInteractive", "-EncodedCommand"]
    wrapper = _wrapper(inv)
    assert psencode.parse_wrapper(wrapper) == (script, {"Path": NASTY["Path"]})
    f = tmp_path / "wrapper.ps1"
    f.write_text(wrapper, encoding="utf-8")
    assert parse_script(f).errors == []


def test_long_payload_goes_to_stdin_and_the_stdin_wrapper_parses(tmp_path: Path) -> None:
    inv = psencode.build_invocation("powershell", "param($Items) 'x'", {"Items": "y" * 50_000})
    assert inv.stdin is not None
    assert len(inv.command_line()) <= psencode.SSH_MAX_COMMAND
    assert re.fullmatch(rb"[A-Za-z0-9+/=.]+\n", inv.stdin)
    wrapper = _wrapper(inv)
    assert "$input" in wrapper.splitlines()[0]
    assert psencode.parse_wrapper(wrapper, inv.stdin.decode()) == ("param($Items) 'x'", {"Items": "y" * 50_000})
    f = tmp_path / "wrapper.ps1"
    f.write_text(wrapper, encoding="utf-8")
    assert parse_script(f).errors == []


def test_local_limit_keeps_more_inline() -> None:
    text = "x" * 3000
    assert psencode.build_invocation("powershell", text, {}).stdin is not None
    assert psencode.build_invocation("powershell", text, {}, max_command=psencode.LOCAL_MAX_COMMAND).stdin is None


def test_exe_path_with_spaces_is_quoted() -> None:
    inv = psencode.build_invocation("C:\\Program Files\\PowerShell\\7\\pwsh.exe", "'x'", {})
    assert inv.command_line().startswith('"C:\\Program Files\\PowerShell\\7\\pwsh.exe" -NoProfile')


def test_parse_wrapper_refuses_anything_else() -> None:
    good = psencode.build_wrapper("'x'", {})
    with pytest.raises(ValueError):
        psencode.parse_wrapper(good.replace("exit 0", "Remove-Item C:\\ -Recurse; exit 0"))
    with pytest.raises(ValueError):
        psencode.parse_wrapper("$dpPayload = 'a.b'; iex $x\n")
    with pytest.raises(ValueError):
        psencode.parse_wrapper(psencode.build_wrapper("", None, stdin=True))  # no stdin given


def test_bytes_params_are_refused() -> None:
    with pytest.raises(TypeError):
        psencode.payload("'x'", {"Data": b"raw"})


def test_parse_last_json() -> None:
    assert psencode.parse_last_json('chatter\n{"a":1}\nmore\n[1,2]\n') == [1, 2]
    assert psencode.parse_last_json('{"a":1}\n{broken\n') == {"a": 1}
    with pytest.raises(psencode.NoJsonResult):
        psencode.parse_last_json("no json here\n")


def test_error_line() -> None:
    assert psencode.error_line("noise\ndriverpipe-error: access denied\n") == "access denied"
    assert psencode.error_line("\n  first real line\nsecond\n") == "first real line"
    clixml = (
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        '<S S="Error">Cannot find path &apos;C:\\x&apos;_x000D__x000A_</S><S S="Error">more_x000D__x000A_</S></Objs>'
    )
    assert psencode.error_line(clixml) == "Cannot find path 'C:\\x'"


def test_sha256_file_and_partial_name(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc" * 1000)
    assert psencode.sha256_file(f) == (hashlib.sha256(b"abc" * 1000).hexdigest(), 3000)
    name = psencode.partial_name("C:\\WazabiEDR\\driver.sys")
    assert re.fullmatch(r"C:\\WazabiEDR\\driver\.sys\.partial-[0-9a-f]{8}", name)


def test_payload_is_utf8_script_and_ascii_json() -> None:
    script_b64, _, params_b64 = psencode.payload("'é'", {"A": "ü"}).partition(".")
    assert base64.b64decode(script_b64).decode("utf-8") == "'é'"
    # ASCII-escaped JSON (\u00fc): ConvertFrom-Json decodes it, and no code page can mangle it.
    assert base64.b64decode(params_b64) == b'{"A":"\\u00fc"}'


def test_test_only_scripts_parse_and_bind() -> None:
    """The fake's test scripts are real PowerShell too."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import tempfile

    from sshd_server import TEST_SCRIPTS

    with tempfile.TemporaryDirectory() as tmp:
        for name, text in TEST_SCRIPTS.items():
            p = Path(tmp) / name
            p.write_text(text, encoding="utf-8")
            assert check_bound_params(p, {}) == [], name


def test_arrays_come_back_as_lists_in_both_51_and_7_shapes() -> None:
    # Windows PowerShell 5.1 wraps a pipeline array as {"value": [...], "Count": n}.
    out = 'noise\n{"items":{"value":[1,{"value":["a"],"Count":1}],"Count":2},"n":{"value":3,"Count":9}}\n'
    assert psencode.parse_last_json(out) == {"items": [1, ["a"]], "n": {"value": 3, "Count": 9}}
    assert psencode.parse_last_json('{"value":[],"Count":0}') == []
    assert psencode.parse_last_json("[1,2]") == [1, 2]
