"""Decoding block responses into columns against hand-made register images, and the simulator's
encoding as its exact inverse."""

from __future__ import annotations

import functools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Batch, Quality, Value
from gateway.sources.modbus.codec import BYTE_ORDERS, int_range
from gateway.sources.modbus.cycle import Cycle, keys_of
from gateway.sources.modbus.decode import BlockDecoder
from gateway.sources.modbus.image import Image, encode_point, fill
from gateway.sources.modbus.plan import Block, Point, compile_points, plan_reads
from gateway.sources.modbus.validate import load_modbus_profile
from tests.modbus_support import GENERIC


def pt(dtype: str, width: int = 1, **kw: object) -> Point:
    return Point(str(kw.pop("quantity", "raw.x")), "", "holding", 0, width, dtype, "ABCD", 1.0, **kw)  # type: ignore[arg-type]


def block_batch(block: Block, words: list[int] | list[bool], ts: int = 1, rack: str = "r") -> Batch:
    cycle = Cycle()
    cycle.decoded(BlockDecoder(block), words, ts)
    return cycle.batch(rack, keys_of(cycle.decoders, rack), None, 0)


def value_of(p: Point, words: list[int]) -> tuple[Value, str]:
    """(value, quality) of one point decoded from its own registers (a block of that point alone)."""
    s = block_batch(Block(p.table, p.address, p.width, 1.0, (p,)), words).samples()[0]
    return s.value, s.quality


def test_scale_offset_invert() -> None:
    assert value_of(pt("uint16", scale=0.1), [3291]) == (329.1, Quality.GOOD)
    assert value_of(pt("uint16", scale=0.001), [3291]) == (3.291, Quality.GOOD)
    assert value_of(pt("int16", scale=-0.1), [0xFFF6]) == (1.0, Quality.GOOD)
    assert value_of(pt("uint16", scale=1000), [5000]) == (5_000_000, Quality.GOOD)
    assert value_of(pt("int16", offset=-40), [65]) == (25.0, Quality.GOOD)
    assert value_of(pt("uint16", scale=0.3), [3]) == (0.9, Quality.GOOD)  # rounded: 3 * 0.3 is 0.8999...
    assert value_of(pt("uint16"), [7]) == (7, Quality.GOOD)


# Hand-made register images: one value in every type and order, the words as a device sends them.
IMAGES = [
    ("int16", "ABCD", [0xFF38], -200),
    ("int16", "BADC", [0x38FF], -200),
    ("uint16", "DCBA", [0x3412], 0x1234),
    ("uint32", "ABCD", [0x0001, 0xE240], 123456),
    ("uint32", "CDAB", [0xE240, 0x0001], 123456),
    ("uint32", "BADC", [0x0100, 0x40E2], 123456),
    ("uint32", "DCBA", [0x40E2, 0x0100], 123456),
    ("int32", "ABCD", [0xFFFE, 0x1DC0], -123456),
    ("int32", "CDAB", [0x1DC0, 0xFFFE], -123456),
    ("float32", "ABCD", [0x3FC0, 0x0000], 1.5),
    ("float32", "CDAB", [0x0000, 0x3FC0], 1.5),
    ("float32", "BADC", [0xC03F, 0x0000], 1.5),
    ("float32", "DCBA", [0x0000, 0xC03F], 1.5),
    ("float32", "ABCD", [0xC2F6, 0xE979], -123.45600128173828),
    ("uint64", "ABCD", [0, 0, 0x0001, 0x86A0], 100000),
    ("uint64", "DCBA", [0xA086, 0x0100, 0, 0], 100000),
    ("int64", "ABCD", [0xFFFF, 0xFFFF, 0xFFFE, 0x7960], -100000),
    ("int64", "CDAB", [0x7960, 0xFFFE, 0xFFFF, 0xFFFF], -100000),
    ("float64", "ABCD", [0x4009, 0x21FB, 0x5444, 0x2D18], 3.141592653589793),
    ("float64", "DCBA", [0x182D, 0x4454, 0xFB21, 0x0940], 3.141592653589793),
]


@pytest.mark.parametrize(("dtype", "order", "words", "value"), IMAGES)
def test_every_type_and_order_decodes_its_image(dtype: str, order: str, words: list[int], value: float) -> None:
    p = Point("raw.x", "", "holding", 0, len(words), dtype, order, 1.0)  # type: ignore[arg-type]
    assert value_of(p, words) == (value, Quality.GOOD)


def test_points_of_one_type_in_a_block_decode_together_at_their_addresses() -> None:
    points = (
        Point("cell_voltage", "V", "input", 0, 1, "uint16", "ABCD", 1.0, 1, 1, scale=0.001, range=(2.0, 4.0)),
        Point("cell_voltage", "V", "input", 1, 1, "uint16", "ABCD", 1.0, 1, 2, scale=0.001, range=(2.0, 4.0)),
        Point("rack_current", "A", "input", 3, 2, "int32", "CDAB", 1.0, scale=0.1),
        Point(
            "cell_voltage", "V", "input", 5, 1, "uint16", "ABCD", 1.0, 1, 3, scale=0.001, missing=frozenset({0xFFFF})
        ),
        Point("rack_power", "W", "input", 6, 2, "float32", "ABCD", 1.0, scale=2.0, offset=1.0),
    )
    words = [3301, 4500, 0xDEAD, 0xFF9C, 0xFFFF, 0xFFFF, 0x3FC0, 0x0000]
    got = [
        (s.quantity, s.cell, s.value, s.quality, s.ts, s.rack)
        for s in block_batch(Block("input", 0, 8, 1.0, points), words, 9).samples()
    ]
    assert got == [
        ("cell_voltage", 1, 3.301, Quality.GOOD, 9, "r"),
        ("cell_voltage", 2, 4.5, Quality.OUT_OF_RANGE, 9, "r"),
        ("rack_current", None, -10.0, Quality.GOOD, 9, "r"),
        ("cell_voltage", 3, None, Quality.MISSING, 9, "r"),
        ("rack_power", None, 4.0, Quality.GOOD, 9, "r"),
    ]


def test_sentinels_and_nan_are_missing() -> None:
    assert value_of(pt("uint16", missing=frozenset({0xFFFF})), [0xFFFF]) == (None, Quality.MISSING)
    assert value_of(pt("int16", missing=frozenset({0x8000})), [0x8000]) == (None, Quality.MISSING)
    assert value_of(pt("float32", 2), [0x7FC0, 0]) == (None, Quality.MISSING)
    # a sentinel is the raw value in the point's own order
    swapped = Point("raw.x", "", "holding", 0, 2, "uint32", "CDAB", 1.0, missing=frozenset({0xFFFF0000}))
    assert value_of(swapped, [0x0000, 0xFFFF]) == (None, Quality.MISSING)
    assert value_of(swapped, [0xFFFF, 0x0000]) == (0x0000FFFF, Quality.GOOD)


def test_range_marks_out_of_range_but_keeps_the_value() -> None:
    assert value_of(pt("uint16", scale=0.001, range=(2.0, 4.0)), [4500]) == (4.5, Quality.OUT_OF_RANGE)
    assert value_of(pt("uint16", scale=0.001, range=(2.0, 4.0)), [4000]) == (4.0, Quality.GOOD)


def test_bits_states_and_flags() -> None:
    assert value_of(pt("bit", bit=3), [0b1000]) == (1, Quality.GOOD)
    assert value_of(pt("bit", bit=2, states=((0, "open"), (1, "closed"))), [0b1000]) == ("open", Quality.GOOD)
    state = pt("uint16", states=((0, "init"), (2, "run")))
    assert value_of(state, [2]) == ("run", Quality.GOOD)
    assert value_of(state, [9]) == ("unknown(9)", Quality.BAD)
    coil = Point("raw.fan", "", "coil", 0, 1, "bool", "ABCD", 1.0, states=((0, "off"), (1, "on")))
    door = Point("interlock_door", "", "coil", 1, 1, "bool", "ABCD", 1.0)
    got = block_batch(Block("coil", 0, 2, 1.0, (coil, door)), [True, False]).samples()
    assert [(s.value, s.quality) for s in got] == [("on", Quality.GOOD), (0, Quality.GOOD)]
    word = Point(
        "alarm_word", "", "holding", 4, 1, "uint16", "ABCD", 1.0, flags=((0, "alarm.cell_ov"), (6, "alarm.iso"))
    )
    samples = block_batch(Block("holding", 4, 1, 1.0, (word,)), [0b1000001], 123, "r1").samples()
    assert [(s.quantity, s.value, s.rack, s.ts) for s in samples] == [
        ("alarm_word", 65, "r1", 123),
        ("alarm.cell_ov", 1, "r1", 123),
        ("alarm.iso", 1, "r1", 123),
    ]
    wide = Point("alarm_word", "", "holding", 0, 2, "uint32", "CDAB", 1.0, flags=((0, "alarm.a"), (17, "alarm.b")))
    flags = block_batch(Block("holding", 0, 2, 1.0, (wide,)), [0x0000, 0x0002]).samples()  # low word first
    assert [(s.quantity, s.value) for s in flags] == [("alarm_word", 0x20000), ("alarm.a", 0), ("alarm.b", 1)]


def test_strings() -> None:
    assert value_of(pt("string", 4), [0x534E, 0x2D31, 0x3233, 0]) == ("SN-123", Quality.GOOD)


def test_a_short_response_marks_points_bad_instead_of_crashing() -> None:
    p = pt("uint32", 2)
    (s,) = block_batch(Block("holding", 0, 2, 1.0, (p,)), [1]).samples()
    assert (s.value, s.quality) == (None, Quality.BAD)
    word = Point("alarm_word", "", "holding", 1, 1, "uint16", "ABCD", 1.0, flags=((0, "alarm.a"),))
    text = Point("serial_number", "", "holding", 2, 2, "string", "ABCD", 1.0)
    cut = block_batch(Block("holding", 0, 4, 1.0, (pt("uint16"), word, text)), [5, 1, 0x4142]).samples()
    assert [(s.quantity, s.value, s.quality) for s in cut] == [
        ("raw.x", 5, Quality.GOOD),
        ("alarm_word", 1, Quality.GOOD),
        ("alarm.a", 1, Quality.GOOD),
        ("serial_number", None, Quality.BAD),
    ]


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
    value, quality = value_of(p, encode_point(p, truth))
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
        for s in block_batch(b, image.read(b.table, b.start, b.count)).samples():
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
        samples = block_batch(b, words).samples()
        assert len(samples) >= len(b.points)
        assert all(s.quality in set(Quality) for s in samples)
