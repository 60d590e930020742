"""Decoding block responses into samples, and the simulator's encoding as its exact inverse."""

from __future__ import annotations

import functools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Quality
from gateway.sources.modbus.codec import BYTE_ORDERS, int_range
from gateway.sources.modbus.decode import decode_block, point_value
from gateway.sources.modbus.image import Image, encode_point, fill
from gateway.sources.modbus.plan import Block, Point, compile_points, plan_reads
from gateway.sources.modbus.validate import load_modbus_profile
from tests.modbus_support import GENERIC


def pt(dtype: str, width: int = 1, **kw: object) -> Point:
    return Point(str(kw.pop("quantity", "raw.x")), "", "holding", 0, width, dtype, "ABCD", 1.0, **kw)  # type: ignore[arg-type]


def test_scale_offset_invert_and_integers_stay_integers() -> None:
    assert point_value(pt("uint16", scale=0.1), [3291]) == (329.1, Quality.GOOD, 3291)
    assert point_value(pt("int16", scale=-0.1), [0xFFF6]) == (1.0, Quality.GOOD, 0xFFF6)
    assert point_value(pt("uint16", scale=1000), [5000]) == (5_000_000, Quality.GOOD, 5000)
    assert point_value(pt("int16", offset=-40), [65]) == (25.0, Quality.GOOD, 65)
    assert point_value(pt("uint16"), [7]) == (7, Quality.GOOD, 7)


def test_sentinels_and_nan_are_missing() -> None:
    assert point_value(pt("uint16", missing=frozenset({0xFFFF})), [0xFFFF])[:2] == (None, Quality.MISSING)
    assert point_value(pt("int16", missing=frozenset({0x8000})), [0x8000])[:2] == (None, Quality.MISSING)
    assert point_value(pt("float32", 2), [0x7FC0, 0])[:2] == (None, Quality.MISSING)


def test_range_marks_out_of_range_but_keeps_the_value() -> None:
    assert point_value(pt("uint16", scale=0.001, range=(2.0, 4.0)), [4500])[:2] == (4.5, Quality.OUT_OF_RANGE)


def test_bits_states_and_flags() -> None:
    assert point_value(pt("bit", bit=3), [0b1000])[0] == 1
    assert point_value(pt("bit", bit=2, states=((0, "open"), (1, "closed"))), [0b1000])[0] == "open"
    state = pt("uint16", states=((0, "init"), (2, "run")))
    assert point_value(state, [2])[0] == "run"
    assert point_value(state, [9])[:2] == ("unknown(9)", Quality.BAD)
    word = Point(
        "alarm_word", "", "holding", 4, 1, "uint16", "ABCD", 1.0, flags=((0, "alarm.cell_ov"), (6, "alarm.iso"))
    )
    samples = decode_block(Block("holding", 4, 1, 1.0, (word,)), [0b1000001], 123, "r1")
    assert [(s.quantity, s.value, s.rack, s.ts) for s in samples] == [
        ("alarm_word", 65, "r1", 123),
        ("alarm.cell_ov", 1, "r1", 123),
        ("alarm.iso", 1, "r1", 123),
    ]


def test_strings() -> None:
    assert point_value(pt("string", 4), [0x534E, 0x2D31, 0x3233, 0])[0] == "SN-123"


def test_a_short_response_marks_points_bad_instead_of_crashing() -> None:
    p = pt("uint32", 2)
    (s,) = decode_block(Block("holding", 0, 2, 1.0, (p,)), [1], 1, "r")
    assert s.quality == Quality.BAD


NUMERIC = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4, "float32": 2, "float64": 4}


@given(st.sampled_from(NUMERIC), st.sampled_from(BYTE_ORDERS), st.sampled_from([1.0, 0.1, 0.001, 10.0]), st.data())
def test_simulator_encoding_round_trips_through_the_decoder(
    dtype: str, order: str, scale: float, data: st.DataObject
) -> None:
    p = Point("raw.x", "", "holding", 0, WIDTH[dtype], dtype, order, 1.0, scale=scale)  # type: ignore[arg-type]
    if dtype.startswith("float"):
        raw = data.draw(st.floats(-1e6, 1e6, width=32 if dtype == "float32" else 64))
    else:
        lo, hi = int_range(dtype)
        raw = data.draw(st.integers(max(lo, -(10**12)), min(hi, 10**12)))
    truth = raw * scale
    value, quality, _ = point_value(p, encode_point(p, truth))
    assert quality == Quality.GOOD
    assert isinstance(value, int | float)
    tolerance = abs(scale) / 2 + (abs(truth) * 1e-6 if dtype == "float32" else abs(truth) * 1e-12)
    assert math.isclose(value, truth, abs_tol=tolerance + 1e-9)


@pytest.mark.parametrize("order", BYTE_ORDERS)
def test_generic_profile_image_round_trips_the_truth(order: str) -> None:
    profile = load_modbus_profile(GENERIC).model_copy(update={"byte_order": order})
    points, _ = compile_points(profile)
    truth = {
        ("cell_voltage", 3, 7): 3.291,
        ("cell_temperature", 10, 12): -12.5,
        ("rack_power", None, None): -98765.4,
        ("bms_state", None, None): "run",
        ("contactor_positive", None, None): "closed",
        ("contactor_negative", None, None): "open",
        ("alarm.cell_overtemperature", None, None): 1,
        ("rack_voltage", None, None): None,  # the device has no value: a sentinel
    }
    image = Image()
    fill(image, points, truth, unit_id=7)
    got = {}
    for b in plan_reads(points, max_gap=profile.max_gap):
        for s in decode_block(b, image.read(b.table, b.start, b.count), 1, "r"):
            got[(s.quantity, s.module, s.cell)] = (s.value, s.quality)
    assert got[("cell_voltage", 3, 7)] == (3.291, Quality.GOOD)
    assert got[("cell_temperature", 10, 12)] == (-12.5, Quality.GOOD)
    assert got[("rack_power", None, None)] == (-98765.4, Quality.GOOD)
    assert got[("bms_state", None, None)] == ("run", Quality.GOOD)
    assert got[("contactor_positive", None, None)] == ("closed", Quality.GOOD)
    assert got[("contactor_negative", None, None)] == ("open", Quality.GOOD)
    assert got[("alarm.cell_overtemperature", None, None)] == (1, Quality.GOOD)
    assert got[("alarm_word", None, None)] == (4, Quality.GOOD)
    assert got[("alarm.cell_overvoltage", None, None)] == (0, Quality.GOOD)
    assert got[("rack_voltage", None, None)] == (None, Quality.MISSING)
    assert got[("serial_number", None, None)] == ("SIM-0007", Quality.GOOD)
    assert got[("cell_voltage", 1, 1)] == (0, Quality.OUT_OF_RANGE)  # no truth: 0 V is implausible


@given(
    st.sampled_from(["uint16", "int16"]),
    st.sampled_from([1.0, 0.1, 0.01, 0.001, 0.0001, 10.0, 1000.0, 0.5, -0.1]),
    st.sampled_from([0.0, -40.0, 0.5]),
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=20),
    st.sampled_from([frozenset(), frozenset({0xFFFF}), frozenset({0x7FFF, 0x8000})]),
)
def test_the_compiled_path_agrees_with_point_value(
    dtype: str, scale: float, offset: float, words: list[int], missing: frozenset[int]
) -> None:
    points = tuple(
        Point("cell_voltage", "V", "holding", i, 1, dtype, "ABCD", 1.0, 1, i + 1, None, scale, offset, missing, (-5, 5))
        for i in range(len(words))
    )
    samples = decode_block(Block("holding", 0, len(words), 1.0, points), words, 7, "r")
    for p, s in zip(points, samples, strict=True):
        value, quality, _ = point_value(p, [words[p.address]])
        assert s.quality == quality
        if value is None:
            assert s.value is None
        else:
            assert isinstance(s.value, int | float) and isinstance(value, int | float)
            assert math.isclose(s.value, value, rel_tol=1e-12, abs_tol=1e-9)
            assert type(s.value) is type(value) or scale != 1.0


@functools.cache
def generic_blocks() -> list[Block]:
    profile = load_modbus_profile(GENERIC)
    points, _ = compile_points(profile)
    return plan_reads(points, max_gap=profile.max_gap)


@settings(max_examples=40)
@given(st.data())
def test_no_response_content_crashes_the_block_decoder(data: st.DataObject) -> None:
    for b in generic_blocks():
        size = data.draw(st.integers(0, b.count))  # short answers too
        words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=size, max_size=size))
        samples = decode_block(b, words, 1, "r")
        assert len(samples) >= len(b.points)
        assert all(s.quality in set(Quality) for s in samples)
