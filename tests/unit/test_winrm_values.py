"""Parameter values as PSRP carries them, checked with pypsrp's own serializer."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from pypsrp.serializer import Serializer

from driverpipe.transports.winrm import psrp_value


def tag(value: object) -> str:
    element = Serializer().serialize(value)
    assert element is not None
    return element.tag


def test_pypsrp_alone_sends_a_filetime_as_a_32_bit_integer() -> None:
    """The bug this guards against: regress's SinceFileTime (~1.3e17) as <I32> overflows on the guest."""
    assert tag(133_800_000_000_000_000) == "I32"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "I32"), (2**31 - 1, "I32"), (-(2**31), "I32"), (2**31, "I64"), (133_800_000_000_000_000, "I64"), (-(2**40), "I64"), (True, "B"), ("x", "S")],
)
def test_integers_outside_int32_go_as_i64(value: object, expected: str) -> None:
    assert tag(psrp_value(value)) == expected


def test_lists_are_converted_element_by_element() -> None:
    element = Serializer().serialize(psrp_value([1, 2**40]))
    assert element is not None
    assert [e.tag for e in element.iter() if e.tag in ("I32", "I64")] == ["I32", "I64"]
    assert "133800000000000000" in ET.tostring(Serializer().serialize(psrp_value(133_800_000_000_000_000))).decode()  # type: ignore[arg-type]
