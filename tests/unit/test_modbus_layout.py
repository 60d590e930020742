"""The Modbus fast paths against their references: batch layouts, register runs, response decoding,
and an endpoint that stops when pymodbus swallows its cancellation.

`layouts_checked` is also used by the integration tests of the Modbus source: every batch a device
produces there must carry a layout that fits its samples (or none when it has no samples).
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from gateway.model import Batch, DeviceState, Quality
from gateway.sources.base import SourceContext
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.cycle import Cycle
from gateway.sources.modbus.decode import BlockDecoder
from gateway.sources.modbus.device import DeviceRun, Outcome
from gateway.sources.modbus.plan import Block, Point, compile_points, plan_reads
from gateway.sources.modbus.poller import ModbusEndpoint
from gateway.sources.modbus.validate import load_modbus_profile
from gateway.sources.modbus.wire import unpack_registers
from tests.modbus_support import GENERIC, TINY, profile_from
from tests.support.waits import await_for


@pytest.fixture
def layouts_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Batch]]:
    """Check the layout of every batch a DeviceRun makes; yields the batches checked."""
    checked: list[Batch] = []

    def check(batch: Batch | None) -> Batch | None:
        if batch is not None:
            if batch.samples:
                assert batch.layout is not None, batch
                assert batch.layout.matches(batch.samples), batch.layout
            else:
                assert batch.layout is None
            checked.append(batch)
        return batch

    cycle_batch, offline_batch = DeviceRun.cycle_batch, DeviceRun.offline_batch
    monkeypatch.setattr(DeviceRun, "cycle_batch", lambda self, *a, **k: check(cycle_batch(self, *a, **k)))
    monkeypatch.setattr(DeviceRun, "offline_batch", lambda self, *a, **k: check(offline_batch(self, *a, **k)))
    yield checked


def device(tmp_path: Path, text: str = TINY, **cfg: Any) -> DeviceRun:
    profile = profile_from(tmp_path, text)
    return DeviceRun(ModbusSourceConfig(name="rack-a", profile="p", host="h", unit_id=1, **cfg), profile)


def words_for(block: Block, seed: int = 0) -> list[int]:
    return [(seed * 7919 + i * 104729) % 0x10000 for i in range(block.count)]


def run_cycle(dev: DeviceRun, outcomes: dict[int, Outcome] | None = None, lost_from: int | None = None) -> Batch:
    """One cycle over every block: the given outcome per block index, else the block read as words."""
    cycle = Cycle()
    blocks = dev.blocks_for(list(dev.blocks))
    for i, block in enumerate(blocks):
        if lost_from is not None and i >= lost_from:
            dev.lost(cycle, blocks[i:], 99)
            break
        dev.take(cycle, block, (outcomes or {}).get(i, Outcome(10 + i, words=words_for(block, i))))
    batch = dev.cycle_batch(cycle, answered=True)
    assert batch is not None
    return batch


def test_a_cycle_layout_fits_its_samples_and_is_kept_while_the_shape_holds(tmp_path: Path) -> None:
    dev = device(tmp_path)
    first, second = run_cycle(dev), run_cycle(dev)
    assert first.layout is not None and first.layout.matches(first.samples)
    assert second.layout is first.layout  # one object per shape: consumers key their caches on it
    blocks = dev.blocks_for(list(dev.blocks))
    # one segment per block read, each with the read's own timestamp
    assert len(first.layout.segments) == len(blocks)
    assert [first.samples[a].ts for a, _ in first.layout.segments] == [10 + i for i in range(len(blocks))]
    assert {s.rack for s in first.samples} == {"rack-a"}


def test_failed_skipped_and_lost_blocks_change_the_layout(tmp_path: Path) -> None:
    dev = device(tmp_path)
    good = run_cycle(dev)
    coded = run_cycle(dev, {1: Outcome(5, code=4)})  # device failure on the second block: bad samples
    assert coded.layout is not None and coded.layout.matches(coded.samples)
    assert {s.quality for s in coded.samples if s.ts == 5} == {Quality.BAD}
    assert dev.state == DeviceState.DEGRADED
    lost = run_cycle(dev, lost_from=2)
    assert lost.layout is not None and lost.layout.matches(lost.samples)
    assert {s.quality for s in lost.samples if s.ts == 99} == {Quality.STALE}  # missed this cycle, not offline
    assert run_cycle(dev, {1: Outcome(5, code=4)}).layout is coded.layout
    assert run_cycle(dev).layout is good.layout
    # a block of fast and slow points decodes fast points first: its bad samples are in another order
    mixed = next(i for i, b in enumerate(dev.blocks_for(list(dev.blocks))) if b.table == "holding")
    other = run_cycle(dev, {mixed: Outcome(5, code=4)})
    assert other.layout is not None and other.layout.matches(other.samples)


def test_equal_shapes_share_a_layout_and_a_new_plan_starts_over(tmp_path: Path) -> None:
    dev = device(tmp_path)
    blocks = dev.blocks_for(list(dev.blocks))
    # a register block whose points all decode fast gives the same keys decoded or bad
    simple = next(i for i, b in enumerate(blocks) if all(p.dtype in ("uint16", "int16") for p in b.points))
    decoded, bad = run_cycle(dev), run_cycle(dev, {simple: Outcome(5, code=4)})
    keys_equal = [k for k in decoded.layout.keys] == [k for k in bad.layout.keys]  # type: ignore[union-attr]
    assert keys_equal and bad.layout is decoded.layout
    dev.set_points(list(dev.points))
    again = run_cycle(dev)
    assert again.layout is not decoded.layout and again.layout is not None
    assert again.layout.digest == decoded.layout.digest  # type: ignore[union-attr]


def test_the_offline_batch_has_its_own_layout(tmp_path: Path) -> None:
    dev = device(tmp_path)
    run_cycle(dev)
    offline = dev.offline_batch("gone", 123)
    assert offline is not None and offline.layout is not None
    assert offline.layout.matches(offline.samples) and offline.layout.segments == ((0, len(offline.samples)),)
    assert {s.quality for s in offline.samples} == {Quality.COMM_LOSS}
    assert run_cycle(dev).layout is not offline.layout
    dev.state = DeviceState.ONLINE
    assert dev.offline_batch("again", 456).layout is offline.layout  # type: ignore[union-attr]


def test_an_empty_cycle_has_no_layout(tmp_path: Path) -> None:
    dev = device(tmp_path)
    batch = dev.cycle_batch(Cycle(), answered=True)
    assert batch is not None and batch.samples == [] and batch.layout is None


def test_a_short_response_leaves_the_batch_without_a_layout(tmp_path: Path) -> None:
    dev = device(tmp_path)
    blocks = dev.blocks_for(list(dev.blocks))
    flagged = next(i for i, b in enumerate(blocks) if any(p.flags for p in b.points))
    short = run_cycle(dev, {flagged: Outcome(5, words=[])})
    assert short.layout is None and any(s.quality == Quality.BAD for s in short.samples)
    assert run_cycle(dev).layout is not None


def test_the_generic_profile_and_sunspec_maps(tmp_path: Path, layouts_checked: list[Batch]) -> None:
    from gateway.sources.modbus import sunspec
    from gateway.tools.modbussim import ModbusSimulator

    generic = DeviceRun(ModbusSourceConfig(name="g", profile="g", host="h", unit_id=1), load_modbus_profile(GENERIC))
    for seed in range(3):
        run_cycle(generic, {seed: Outcome(1, code=2 + seed)})
    sim = ModbusSimulator.sunspec([3], modules=2, cells=4, base=0)
    image = sim.devices[3].image
    models = asyncio.run(sunspec.discover(_reader(image), [0]))
    assert models
    ss = device(tmp_path, "protocol: modbus\nsunspec: true\n")
    ss.set_points(sunspec.points_from_models(models, 1.0))
    batch = run_cycle(
        ss,
        {
            i: Outcome(i, words=image.read(b.table, b.start, b.count))
            for i, b in enumerate(ss.blocks_for(list(ss.blocks)))
        },
    )
    assert any(s.quality == Quality.GOOD for s in batch.samples)
    assert len(layouts_checked) == 4


def _reader(image: Any) -> Any:
    async def read(address: int, count: int) -> list[int]:
        return [int(w) for w in image.read("holding", address, count)]

    return read


# -- the register runs against the point-by-point reference -----------------------------------------

SCALES = [1.0, 0.1, 0.01, 0.001, 10.0, 1000.0, 0.5, -0.1, 0.3]
recipes = st.tuples(
    st.sampled_from(["uint16", "int16"]),
    st.sampled_from(SCALES),
    st.sampled_from([0.0, -40.0, 0.5]),
    st.sampled_from([frozenset(), frozenset({0xFFFF}), frozenset({0x7FFF, 0x8000})]),
    st.sampled_from([None, (-5.0, 5.0), (0.0, 70.0)]),
)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(recipes, st.integers(1, 6), st.integers(1, 3)), min_size=1, max_size=6),
    st.lists(st.integers(0, 0xFFFF), max_size=60),
    st.integers(0, 40),
    st.booleans(),
)
def test_runs_give_the_reference_samples(
    groups: list[tuple[tuple[Any, ...], int, int]], pool: list[int], short: int, slow: bool
) -> None:
    points: list[Point] = []
    address = 0
    for (dtype, scale, offset, missing, rng), count, step in groups:
        for _ in range(count):
            points.append(
                Point(
                    "cell_voltage",
                    "V",
                    "input",
                    address,
                    1,
                    dtype,
                    "ABCD",
                    1.0,
                    1,
                    address,
                    None,
                    scale,
                    offset,
                    missing,
                    rng,
                )
            )
            address += step
    if slow:  # a bit field among the registers: decoded after the fast points
        points.append(Point("alarm_word", "", "input", address, 1, "uint16", "ABCD", 1.0, flags=((0, "alarm.x"),)))
        address += 1
    block = Block("input", 0, address, 1.0, tuple(points))
    words = [pool[i % len(pool)] if pool else 0x8000 for i in range(address)]
    words = words[: max(0, address - short)] if short < 5 else words  # some short responses
    fast, reference = BlockDecoder(block), BlockDecoder(block, fast=False)
    got, want = fast(words, 7, "r"), reference(words, 7, "r")
    assert _same(got, want)
    out: list[Any] = []
    assert fast.into(out, words, 7, "r") == any(s.quality == Quality.BAD for s in want)
    if len(words) == block.count:  # a short response has no fixed shape (see test_a_short_response_...)
        assert fast.decoded_keys() == [(s.quantity, s.unit, s.module, s.cell) for s in want]


def _same(a: list[Any], b: list[Any]) -> bool:
    """Equal samples, values of equal type too (3 is not 3.0; NaN never occurs from integers)."""
    return a == b and all(type(x.value) is type(y.value) for x, y in zip(a, b, strict=True))


@settings(max_examples=60)
@given(st.data())
def test_runs_agree_on_the_generic_profile(data: st.DataObject) -> None:
    points, _ = compile_points(load_modbus_profile(GENERIC))
    for b in plan_reads(points):
        size = data.draw(st.integers(0, b.count))
        words = data.draw(
            st.lists(
                st.sampled_from([0, 1, 0x7FFF, 0x8000, 0xFFFF, 3300, 250]) | st.integers(0, 0xFFFF),
                min_size=size,
                max_size=size,
            )
        )
        assert _same(BlockDecoder(b)(words, 1, "r"), BlockDecoder(b, fast=False)(words, 1, "r"))


# -- response registers ------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 0xFFFF), max_size=125), st.binary(max_size=3))
def test_registers_are_those_pymodbus_decodes(regs: list[int], tail: bytes) -> None:
    data = bytes([2 * len(regs)]) + struct.pack(f">{len(regs)}H", *regs) + tail
    theirs = ReadHoldingRegistersResponse()
    theirs.decode(data)
    assert unpack_registers(data) == theirs.registers == regs


@given(st.binary(min_size=1, max_size=12))
def test_any_byte_count_is_taken_like_pymodbus(data: bytes) -> None:
    theirs = ReadHoldingRegistersResponse()
    try:
        theirs.decode(data)
    except ModbusIOException:
        with pytest.raises(ValueError):
            unpack_registers(data)
    else:
        assert unpack_registers(data) == theirs.registers


# -- cancellation -------------------------------------------------------------------------------------


class SwallowingClient:
    """Answers every read, and like `asyncio.wait_for` on Python 3.11 returns the answer when the task
    is cancelled in the same loop turn instead of raising."""

    connected = True

    def __init__(self) -> None:
        self.reads = 0

    async def read_input_registers(self, address: int, count: int, device_id: int) -> Any:
        self.reads += 1
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass  # swallowed, as wait_for does when the result is already there
        return _Registers([0] * count)

    read_holding_registers = read_coils = read_discrete_inputs = read_input_registers

    def close(self) -> None:
        pass


class _Registers:
    def __init__(self, regs: list[int]) -> None:
        self.registers = regs
        self.bits = [False] * len(regs)

    def isError(self) -> bool:
        return False


async def test_a_cancelled_endpoint_stops_when_a_read_swallows_the_cancellation(tmp_path: Path) -> None:
    dev = device(tmp_path, interval=0.001)
    endpoint = ModbusEndpoint("127.0.0.1", 1, [dev])
    client = SwallowingClient()

    async def connect() -> bool:
        endpoint.link.client = client  # type: ignore[assignment]
        return True

    endpoint.link.connect = connect  # type: ignore[method-assign]
    emitted: list[Batch] = []

    async def emit(batch: Batch) -> None:
        emitted.append(batch)

    task = asyncio.create_task(endpoint.run(SourceContext(emit, lambda: None, "t")))
    await await_for(lambda: len(emitted) >= 3, 60, "3 batches", step=0.001)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert done, "the endpoint kept polling after it was cancelled"
    assert task.cancelled()


def test_runs_round_like_the_reference() -> None:
    """A run's values are those of the reference even where a float scale rounds (0.3 * 3 != 0.9)."""
    p = [Point("raw.x", "", "input", i, 1, "uint16", "ABCD", 1.0, scale=0.3) for i in range(4)]
    block = Block("input", 0, 4, 1.0, tuple(p))
    got = BlockDecoder(block)([1, 2, 3, 0xFFFF], 1, "r")
    assert [s.value for s in got] == [s.value for s in BlockDecoder(block, fast=False)([1, 2, 3, 0xFFFF], 1, "r")]
    assert all(isinstance(s.value, float) and not math.isnan(s.value) for s in got)
