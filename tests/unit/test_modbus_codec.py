"""Register codecs: known vectors for every byte/word order, and encodings that round-trip through the
block decoder."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.model import Value
from gateway.sources.modbus.codec import BYTE_ORDERS, WIDTH, encode, int_range, text
from gateway.sources.modbus.plan import Point
from tests.unit.test_modbus_decode import value_of


def decode(regs: list[int], dtype: str, order: str = "ABCD") -> Value:
    """The value of one point of this type and order in these registers, as the block decoder gives it."""
    if dtype == "string":
        return text(regs, order)  # type: ignore[arg-type]
    return value_of(Point("raw.x", "", "holding", 0, len(regs), dtype, order, 1.0), regs)[0]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("order", "regs"),
    [("ABCD", [0xAABB, 0xCCDD]), ("CDAB", [0xCCDD, 0xAABB]), ("BADC", [0xBBAA, 0xDDCC]), ("DCBA", [0xDDCC, 0xBBAA])],
)
def test_orders_of_a_32_bit_value(order: str, regs: list[int]) -> None:
    assert decode(regs, "uint32", order) == 0xAABBCCDD  # type: ignore[arg-type]
    assert encode(0xAABBCCDD, "uint32", order) == regs  # type: ignore[arg-type]


def test_known_values() -> None:
    assert decode([0xFFFF], "int16") == -1
    assert decode([0xFFFF], "uint16") == 0xFFFF
    assert decode([0x4049, 0x0FDB], "float32") == pytest.approx(3.1415927)
    assert decode([0x0FDB, 0x4049], "float32", "CDAB") == pytest.approx(3.1415927)
    # values are float64: a 64-bit integer is exact up to 2**53
    assert decode([0x0001, 0x0203, 0x0405, 0x0607], "uint64") == 0x0001020304050607
    assert decode([0x0607, 0x0405, 0x0203, 0x0001], "uint64", "CDAB") == 0x0001020304050607
    assert decode([0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], "int64") == -1
    assert decode([0x4142, 0x4344, 0x0000], "string") == "ABCD"
    assert decode([0x4241, 0x4443], "string", "BADC") == "ABCD"
    assert encode("AB", "string", "ABCD", 3) == [0x4142, 0, 0]


def test_integers_are_clamped_on_encode() -> None:
    assert encode(70000, "uint16") == [0xFFFF]
    assert encode(-5, "uint16") == [0]
    assert encode(-40000, "int16") == [0x8000]


INT_TYPES = ["int16", "uint16", "int32", "uint32", "int64", "uint64"]


@given(st.sampled_from(INT_TYPES), st.sampled_from(BYTE_ORDERS), st.data())
def test_integers_round_trip(dtype: str, order: str, data: st.DataObject) -> None:
    lo, hi = int_range(dtype)
    value = data.draw(st.integers(max(lo, -(2**53)), min(hi, 2**53)))  # exact in float64
    regs = encode(value, dtype, order)  # type: ignore[arg-type]
    assert len(regs) == WIDTH[dtype]
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode(regs, dtype, order) == float(value)  # the decoder's values are float64


@given(st.sampled_from(BYTE_ORDERS), st.floats(allow_nan=False, width=32))
def test_float32_round_trips(order: str, value: float) -> None:
    assert decode(encode(value, "float32", order), "float32", order) == value  # type: ignore[arg-type]


def test_nan_floats_decode_as_missing() -> None:
    assert value_of(Point("raw.x", "", "holding", 0, 2, "float32", "ABCD", 1.0), [0x7FC0, 0]) == (None, "missing")


@given(st.sampled_from(BYTE_ORDERS), st.floats(allow_nan=False))
def test_float64_round_trips(order: str, value: float) -> None:
    assert decode(encode(value, "float64", order), "float64", order) == value  # type: ignore[arg-type]


@given(st.sampled_from(BYTE_ORDERS), st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=16))
def test_strings_round_trip(order: str, text: str) -> None:
    regs = encode(text, "string", order, 8)  # type: ignore[arg-type]
    assert len(regs) == 8
    assert decode(regs, "string", order) == text  # type: ignore[arg-type]
