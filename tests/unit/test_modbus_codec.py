"""Register codecs: known vectors for every byte/word order and property-based round trips."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sources.modbus.codec import BYTE_ORDERS, WIDTH, decode, encode, int_range, raw_unsigned


@pytest.mark.parametrize(
    ("order", "regs"),
    [("ABCD", [0xAABB, 0xCCDD]), ("CDAB", [0xCCDD, 0xAABB]), ("BADC", [0xBBAA, 0xDDCC]), ("DCBA", [0xDDCC, 0xBBAA])],
)
def test_orders_of_a_32_bit_value(order: str, regs: list[int]) -> None:
    assert decode(regs, "uint32", order) == 0xAABBCCDD  # type: ignore[arg-type]
    assert encode(0xAABBCCDD, "uint32", order) == regs  # type: ignore[arg-type]
    assert raw_unsigned(regs, order) == 0xAABBCCDD  # type: ignore[arg-type]


def test_known_values() -> None:
    assert decode([0xFFFF], "int16") == -1
    assert decode([0xFFFF], "uint16") == 0xFFFF
    assert decode([0x4049, 0x0FDB], "float32") == pytest.approx(3.1415927)
    assert decode([0x0FDB, 0x4049], "float32", "CDAB") == pytest.approx(3.1415927)
    assert decode([0x0102, 0x0304, 0x0506, 0x0708], "uint64") == 0x0102030405060708
    assert decode([0x0708, 0x0506, 0x0304, 0x0102], "uint64", "CDAB") == 0x0102030405060708
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
    value = data.draw(st.integers(lo, hi))
    regs = encode(value, dtype, order)  # type: ignore[arg-type]
    assert len(regs) == WIDTH[dtype]
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode(regs, dtype, order) == value  # type: ignore[arg-type]


@given(st.sampled_from(BYTE_ORDERS), st.floats(allow_nan=False, width=32))
def test_float32_round_trips(order: str, value: float) -> None:
    assert decode(encode(value, "float32", order), "float32", order) == value  # type: ignore[arg-type]


@given(st.sampled_from(BYTE_ORDERS), st.floats(allow_nan=False))
def test_float64_round_trips(order: str, value: float) -> None:
    assert decode(encode(value, "float64", order), "float64", order) == value  # type: ignore[arg-type]


@given(st.sampled_from(BYTE_ORDERS), st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=16))
def test_strings_round_trip(order: str, text: str) -> None:
    regs = encode(text, "string", order, 8)  # type: ignore[arg-type]
    assert len(regs) == 8
    assert decode(regs, "string", order) == text  # type: ignore[arg-type]


@given(st.sampled_from([*INT_TYPES, "float32", "float64"]), st.sampled_from(BYTE_ORDERS), st.data())
def test_no_register_content_crashes_a_decoder(dtype: str, order: str, data: st.DataObject) -> None:
    regs = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=WIDTH[dtype], max_size=WIDTH[dtype]))
    value = decode(regs, dtype, order)  # type: ignore[arg-type]
    if dtype.startswith("float") and not math.isnan(value):  # type: ignore[arg-type]
        fmt = ">f" if dtype == "float32" else ">d"
        assert struct.pack(fmt, value) == raw_unsigned(regs, order).to_bytes(2 * len(regs), "big")  # type: ignore[arg-type]
