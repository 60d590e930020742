"""Register maps: multi-bit fields, scale factors from another register, module blocks, the device's clock.

Every expected value is worked out by hand from a hand-made register image (the arithmetic is in the
comments), and the image is read through the device's real read plan, decoders and cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from gateway.model import Batch, Quality
from gateway.sources.modbus import sunspec
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.cycle import Cycle, keys_of
from gateway.sources.modbus.decode import BlockDecoder
from gateway.sources.modbus.device import DeviceRun, Outcome
from gateway.sources.modbus.image import Image
from gateway.sources.modbus.plan import compile_points, plan_reads
from tests.modbus_support import profile_from
from tests.unit.test_modbus_profile import errors

MAP = """\
protocol: modbus
table: holding
interval: 1.0
clock: {format: epoch, address: 60, byte_order: CDAB, timezone: "+02:00"}
points:
  - {quantity: contactor_positive, address: 0, bits: [4, 5], states: {0: open, 1: closed, 2: welded, 3: fault}}
  - {quantity: raw.mode, address: 0, bits: [0, 3]}
  - {quantity: interlock_estop, address: 0, type: bit, bit: 6}
  - {quantity: raw.level, address: 1, type: uint32, bits: [12, 19], scale: 0.5}
  - {quantity: rack_voltage, address: 3, scale: 0.1, scale_register: {address: 4}}
  - {quantity: rack_current, address: 5, type: int16, scale: 0.01, range: [-500, 500],
     scale_register: {address: 200, kind: multiplier}}
  - {quantity: bms_state, address: 7, bits: [0, 2], states: {0: init, 1: standby, 2: run}}
groups:
  - name: cells
    interval: 5.0
    points:
      - quantity: cell_voltage
        address: 0x1000
        scale: 0.001
        array: {count: 4, stride: 2, modules: {count: 3, stride: 0x100}}
"""

# 2026-03-01 14:00:00 on a clock kept at +02:00 is 12:00:00 UTC: 20,513 days after 1970-01-01
# (56 years, 14 leap days, 59 days of January and February) x 86,400 s + 12 h = 1,772,366,400 s.
# The registers hold the local wall time as epoch seconds: 1,772,373,600 = 0x69A4_4660, word-swapped.
CLOCK_WORDS = [0x4660, 0x69A4]
CLOCK_NS = 1_772_366_400 * 1_000_000_000


def image() -> Image:
    img = Image()
    img.write("holding", 0, [0b0110_0111])  # bit 6 = 1, bits 4-5 = 0b10 = 2 (welded), bits 0-3 = 7
    img.write("holding", 1, [0x0003, 0x4FFF])  # 0x00034FFF: bits 12-19 = 0x34 = 52, x 0.5 = 26.0
    img.write("holding", 3, [2345, 0xFFFE])  # 2345 x 0.1 x 10^-2 = 2.345 (the exponent -2 in int16)
    img.write("holding", 5, [0xFB2E])  # int16 -1234 x 0.01 x multiplier 5 (register 200) = -61.7
    img.write("holding", 200, [5])
    img.write("holding", 7, [0b1010])  # bits 0-2 = 2: run (bit 3 is not the field's)
    img.write("holding", 60, CLOCK_WORDS)
    for m in range(3):  # module m+1 at 0x1000 + m x 0x100, cell c+1 two registers on: 3000 + 10 (m+1) + (c+1) mV
        for c in range(4):
            img.write("holding", 0x1000 + m * 0x100 + c * 2, [3000 + 10 * (m + 1) + c + 1])
    return img


def device(tmp_path: Path, text: str = MAP) -> DeviceRun:
    cfg = ModbusSourceConfig(name="rack-a", profile="p", host="h", unit_id=3)
    dev = DeviceRun(cfg, profile_from(tmp_path, text))
    dev.start(0.0)
    return dev


def poll(dev: DeviceRun, img: Image, intervals: list[float] | None = None) -> Batch:
    cycle = Cycle()
    for block in dev.blocks_for(intervals or list(dev.blocks)):
        dev.take(cycle, block, Outcome(7, words=img.read(block.table, block.start, block.count)))
    batch = dev.cycle_batch(cycle, answered=True)
    assert batch is not None
    return batch


def values(batch: Batch) -> dict[tuple[str, int | None, int | None], tuple[Any, str]]:
    return {(s.quantity, s.module, s.cell): (s.value, s.quality) for s in batch.samples()}


def test_multi_bit_fields_decode_to_enums_and_numbers(tmp_path: Path) -> None:
    got = values(poll(device(tmp_path), image()))
    assert got[("contactor_positive", None, None)] == ("welded", Quality.GOOD)
    assert got[("raw.mode", None, None)] == (7, Quality.GOOD)
    assert got[("interlock_estop", None, None)] == (1, Quality.GOOD)
    assert got[("raw.level", None, None)] == (26.0, Quality.GOOD)
    assert got[("bms_state", None, None)] == ("run", Quality.GOOD)


def test_an_unknown_enum_value_is_bad_and_logged_once_naming_device_and_register(tmp_path: Path) -> None:
    dev, img = device(tmp_path), image()
    img.write("holding", 7, [0b0101])  # bits 0-2 = 5: no state has that number
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            assert values(poll(dev, img))[("bms_state", None, None)] == ("unknown(5)", Quality.BAD)
        img.write("holding", 7, [0b0001])
        assert values(poll(dev, img))[("bms_state", None, None)] == ("standby", Quality.GOOD)
    events = [e for e in logs if "state value" in e["event"]]
    assert [e["event"] for e in events] == ["modbus state value unknown", "modbus state value known again"]
    assert events[0]["device"] == "rack-a" and events[0]["register"] == "holding:7" and events[0]["raw"] == 5
    assert events[0]["bits"] == [0, 2]


def test_a_scale_register_scales_its_points_in_the_same_cycle(tmp_path: Path) -> None:
    dev = device(tmp_path)
    got = values(poll(dev, image()))
    assert got[("rack_voltage", None, None)] == (2.345, Quality.GOOD)
    assert got[("rack_current", None, None)] == (-61.7, Quality.GOOD)
    fast = {(b.start, b.count) for b in dev.blocks[1.0]}
    # the exponent at 4 is read in the block of its point; the multiplier at 200 by a read of its own
    assert (0, 8) in fast and (200, 1) in fast
    assert not any(p.aux for p in dev.blocks[1.0][0].points if p.quantity != "scale_register")
    assert "scale_register" not in {s.quantity for s in poll(dev, image()).samples()}  # no sample of its own


def test_a_scale_register_without_a_factor_marks_its_points_never_a_wrong_value(tmp_path: Path) -> None:
    dev, img = device(tmp_path), image()
    img.write("holding", 4, [0x8000])  # exponent not implemented
    img.write("holding", 200, [0])  # multiplier not available
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):
            got = values(poll(dev, img))
            assert got[("rack_voltage", None, None)] == (None, Quality.BAD)
            assert got[("rack_current", None, None)] == (None, Quality.BAD)
        img.write("holding", 4, [11])  # 10^11: outside SunSpec's -10..10
        assert values(poll(dev, img))[("rack_voltage", None, None)] == (None, Quality.BAD)
        img.write("holding", 4, [1])  # 10^1: 2345 x 0.1 x 10 = 2345.0
        img.write("holding", 200, [2])  # -1234 x 0.01 x 2 = -24.68
        got = values(poll(dev, img))
        assert got[("rack_voltage", None, None)] == (2345.0, Quality.GOOD)
        assert got[("rack_current", None, None)] == (-24.68, Quality.GOOD)
        img.write("holding", 200, [60000])  # -1234 x 0.01 x 60000 = -740,400 A: outside [-500, 500]
        assert values(poll(dev, img))[("rack_current", None, None)] == (-740400.0, Quality.OUT_OF_RANGE)
    scale_logs = [(e["event"], e["register"], e.get("raw")) for e in logs if "scale register" in e["event"]]
    assert scale_logs == [
        ("modbus scale register gives no factor", "holding:4", 0x8000),
        ("modbus scale register gives no factor", "holding:200", 0),
        ("modbus scale register gives no factor", "holding:4", 11),
        ("modbus scale register valid again", "holding:4", None),
        ("modbus scale register valid again", "holding:200", None),
    ]


def test_sunspec_uses_the_same_rule_a_not_implemented_scale_factor_is_bad() -> None:
    models = sunspec.build_chain(40000, modules=1, cells=2)
    points = sunspec.points_from_models(models, 1.0)
    img = Image()
    for address, words in sunspec.chain_words(40000, models):
        img.write("holding", address, words)
    volt = next(p for p in points if p.quantity == "rack_voltage")
    assert volt.scale_ref is not None
    img.write("holding", volt.address, [8000])
    img.write("holding", volt.scale_ref.address, [0x8000])  # V_SF not implemented

    def decode() -> tuple[Any, str]:
        cycle = Cycle()
        for b in plan_reads(points):
            cycle.decoded(BlockDecoder(b), img.read(b.table, b.start, b.count), 1)
        return values(cycle.batch("r", keys_of(cycle.decoders, "r"), None, 0))[("rack_voltage", None, None)]

    assert decode() == (None, Quality.BAD)  # before: scaled by 1, a rack of 8000 V
    img.write("holding", volt.scale_ref.address, [0xFFFF])  # V_SF -1, changed after discovery: 800.0 V
    assert decode() == (800.0, Quality.GOOD)


def test_module_blocks_expand_with_module_and_cell_strides(tmp_path: Path) -> None:
    dev = device(tmp_path)
    cells = [p for p in dev.points if p.quantity == "cell_voltage"]
    assert [(p.address, p.module, p.cell) for p in cells[:5]] == [
        (0x1000, 1, 1),
        (0x1002, 1, 2),
        (0x1004, 1, 3),
        (0x1006, 1, 4),
        (0x1100, 2, 1),
    ]
    assert (cells[-1].address, cells[-1].module, cells[-1].cell) == (0x1206, 3, 4)
    got = values(poll(dev, image(), [5.0]))
    assert got[("cell_voltage", 2, 3)] == (3.023, Quality.GOOD)  # 3000 + 20 + 3 mV
    assert got[("cell_voltage", 3, 4)] == (3.034, Quality.GOOD)
    assert len([k for k in got if k[0] == "cell_voltage"]) == 12


def test_module_blocks_number_cells_across_the_rack(tmp_path: Path) -> None:
    profile = profile_from(
        tmp_path,
        """\
        protocol: modbus
        points:
          - quantity: cell_voltage
            address: 100
            array: {count: 2, modules: {count: 2, stride: 10}, numbering: rack, module_start: 0}
        """,
    )
    points, problems = compile_points(profile)
    assert problems == []
    assert [(p.address, p.module, p.cell) for p in points] == [(100, 0, 1), (101, 0, 2), (110, 1, 3), (111, 1, 4)]


def test_ill_formed_arrays_and_fields_are_errors_with_their_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        points:
          - quantity: cell_voltage
            address: 0
            type: uint32
            array: {count: 4, stride: 2, modules: {count: 2, stride: 7}}
        """,
    )
    assert len(errs) == 1 and errs[0].startswith(f"{bad}:3:5: points.0: ")
    assert "span 8 registers" in errs[0] and "module stride 7" in errs[0]
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        points:
          - {quantity: cell_voltage, address: 0, array: {count: 4, per_module: 2, modules: {count: 2, stride: 8}}}
        """,
    )
    assert len(errs) == 1 and errs[0].startswith(f"{bad}:3:49: points.0.array: ") and "per_module" in errs[0]
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        points:
          - {quantity: cell_voltage, address: 0, array: {count: 4, modules: {count: 2, stride: 3}}}
          - {quantity: raw.a, address: 9, bits: [0, 3]}
          - {quantity: raw.b, address: 9, bits: [3, 4]}
          - {quantity: raw.c, address: 10, type: int16, bits: [0, 1]}
          - {quantity: raw.d, address: 11, bits: [4, 16]}
        """,
    )
    assert errs[0].startswith(f"{bad}:3:5: points.0: ") and "module stride 3" in errs[0]
    assert errs[1].startswith(f"{bad}:6:5: points.3: ") and "unsigned integer" in errs[1]
    assert errs[2].startswith(f"{bad}:7:5: points.4: ") and "last < 16" in errs[2]
    assert len(errs) == 3  # the overlap of raw.b with raw.a is found once the profile validates
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        points:
          - {quantity: raw.a, address: 9, bits: [0, 3]}
          - {quantity: raw.b, address: 9, bits: [3, 4]}
          - {quantity: raw.c, address: 9, type: bit, bit: 5}
        """,
    )
    assert errs == [f"{bad}:4:5: points.1: raw.b @holding:9 overlaps raw.a @holding:9"]


def test_the_clock_gives_every_sample_of_the_cycle_its_device_time(tmp_path: Path) -> None:
    dev = device(tmp_path)
    for intervals in ([1.0, 5.0], [1.0], [5.0]):  # each cycle reads the clock, whatever is due
        batch = poll(dev, image(), intervals)
        assert batch.device_ts is not None and batch.n > 0
        assert set(batch.device_ts.tolist()) == {CLOCK_NS}
        assert {s.device_ts for s in batch.samples()} == {CLOCK_NS}


def test_a_clock_of_six_registers_in_local_time(tmp_path: Path) -> None:
    dev = device(
        tmp_path,
        """\
        protocol: modbus
        clock: {format: ymdhms, address: 20, year_base: 2000, timezone: "-05:00", table: input}
        points: [{quantity: soc, address: 0}]
        """,
    )
    img = Image()
    img.write("holding", 0, [55])
    img.write("input", 20, [25, 12, 31, 23, 59, 30])  # 2025-12-31 23:59:30 at -05:00
    batch = poll(dev, img)
    # = 2026-01-01 04:59:30 UTC: 20,454 days (56 years, 14 leap days) x 86,400 + 17,970 s
    assert batch.device_ts is not None and batch.device_ts.tolist() == [1_767_243_570 * 1_000_000_000]


def test_an_invalid_clock_gives_no_device_time_and_one_log_line(tmp_path: Path) -> None:
    dev, img = device(tmp_path), image()
    img.write("holding", 60, [0xFFFF, 0xFFFF])  # 0xFFFFFFFF s: the year 2106
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            batch = poll(dev, img)
            assert batch.device_ts is None
            assert values(batch)[("raw.mode", None, None)] == (7, Quality.GOOD)  # the data still flows
        img.write("holding", 60, [0, 0])  # 0 s: 1970
        assert poll(dev, img).device_ts is None
        img.write("holding", 60, CLOCK_WORDS)
        ts = poll(dev, img).device_ts
        assert ts is not None and set(ts.tolist()) == {CLOCK_NS}
    events = [(e["event"], e["register"], e.get("raw")) for e in logs if "clock" in e["event"]]
    assert events == [
        ("modbus device clock invalid: no device time", "holding:60..61", ["0xFFFF", "0xFFFF"]),
        ("modbus device clock valid again", "holding:60..61", None),
    ]


def test_a_bad_clock_declaration_is_an_error_with_its_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        clock: {format: epoch, address: 3, timezone: "Mars/Olympus"}
        points: [{quantity: soc, address: 0}]
        """,
    )
    assert len(errs) == 1 and errs[0].startswith(f"{bad}:2:") and "unknown timezone" in errs[0]
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        unreadable: [{start: 10, end: 19}]
        clock: {format: ymdhms, address: 8}
        points: [{quantity: soc, address: 0}]
        """,
    )
    assert errs and all(e.startswith(f"{bad}:3:") and "clock @holding:1" in e for e in errs)
