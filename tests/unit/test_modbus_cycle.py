"""The batch of a device's cycle: columns over one interned key table per cycle shape.

`batches_checked` is also used by the integration tests of the Modbus source: every batch a device
produces there must have columns as long as its key table, on the device's rack, and the key table
of its shape (the blocks it holds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.model import Batch, DeviceState, Keys, Quality
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.cycle import Cycle
from gateway.sources.modbus.device import DeviceRun, Outcome
from gateway.sources.modbus.plan import Block
from gateway.sources.modbus.validate import load_modbus_profile
from tests.modbus_support import GENERIC, TINY, profile_from


def check_batch(dev: DeviceRun, batch: Batch) -> None:
    """A device's batch is columnar and consistent: every column as long as its interned key table."""
    n = batch.n
    assert len(batch.ts) == len(batch.values) == len(batch.quality) == n, batch
    assert batch.ts.dtype == np.int64 and batch.values.dtype == np.float64 and batch.quality.dtype == np.uint8
    assert batch.keys is Keys.of(batch.keys.rows)  # interned: consumers key their work on it
    assert all(k.rack == dev.rack for k in batch.keys.rows)
    assert all(0 <= i < n for i in batch.objects or {})
    assert batch.source == batch.device == dev.name


@pytest.fixture
def batches_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Batch]]:
    """Check every batch a DeviceRun makes; yields the batches checked."""
    checked: list[Batch] = []

    def check(dev: DeviceRun, batch: Batch | None) -> Batch | None:
        if batch is not None:
            check_batch(dev, batch)
            checked.append(batch)
        return batch

    cycle_batch, offline_batch = DeviceRun.cycle_batch, DeviceRun.offline_batch
    monkeypatch.setattr(DeviceRun, "cycle_batch", lambda self, *a, **k: check(self, cycle_batch(self, *a, **k)))
    monkeypatch.setattr(DeviceRun, "offline_batch", lambda self, *a, **k: check(self, offline_batch(self, *a, **k)))
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
    check_batch(dev, batch)
    return batch


def test_a_cycle_keeps_its_key_table_while_the_shape_holds(tmp_path: Path) -> None:
    dev = device(tmp_path)
    first, second = run_cycle(dev), run_cycle(dev)
    assert second.keys is first.keys  # one object per shape: consumers key their caches on it
    blocks = dev.blocks_for(list(dev.blocks))
    # one segment per block read, each with the read's own timestamp
    assert [int(first.ts[a]) for a, _ in first.segments()] == [10 + i for i in range(len(blocks))]
    assert {k.rack for k in first.keys.rows} == {"rack-a"}
    # the rows: each point in block order, its flags right after it
    rows = [k.quantity for k in first.keys.rows]
    volts = rows.index("rack_voltage")
    assert rows[volts : volts + 3] == ["rack_voltage", "rack_current", "soc"]
    word = rows.index("alarm_word")
    assert [k.quantity for k in first.keys.rows[word : word + 3]] == [
        "alarm_word",
        "alarm.cell_overvoltage",
        "alarm.insulation_fault",
    ]


def test_failed_lost_and_short_blocks_keep_the_key_table(tmp_path: Path) -> None:
    dev = device(tmp_path)
    good = run_cycle(dev)
    coded = run_cycle(dev, {1: Outcome(5, code=4)})  # device failure on the second block: bad rows
    assert coded.keys is good.keys
    assert {s.quality for s in coded.samples() if s.ts == 5} == {Quality.BAD}
    assert dev.state == DeviceState.DEGRADED
    lost = run_cycle(dev, lost_from=2)
    assert lost.keys is good.keys
    assert {s.quality for s in lost.samples() if s.ts == 99} == {Quality.STALE}  # missed this cycle, not offline
    assert all(s.value is None for s in lost.samples() if s.ts == 99)
    blocks = dev.blocks_for(list(dev.blocks))
    flagged = next(i for i, b in enumerate(blocks) if any(p.flags for p in b.points))
    short = run_cycle(dev, {flagged: Outcome(5, words=[])})
    assert short.keys is good.keys
    assert {s.quality for s in short.samples() if s.ts == 5} == {Quality.BAD}


def test_a_new_plan_of_equal_points_gives_the_same_interned_table(tmp_path: Path) -> None:
    dev = device(tmp_path)
    decoded = run_cycle(dev)
    dev.set_points(list(dev.points))
    assert run_cycle(dev).keys is decoded.keys
    slow = device(tmp_path, interval=5.0)  # another rack name: another table
    other = DeviceRun(ModbusSourceConfig(name="rack-b", profile="p", host="h", unit_id=2), slow.profile)
    assert run_cycle(other).keys is not decoded.keys


def test_the_offline_batch_holds_every_point_as_comm_loss(tmp_path: Path) -> None:
    dev = device(tmp_path)
    full = run_cycle(dev)
    offline = dev.offline_batch("gone", 123)
    assert offline is not None and offline.keys is full.keys and offline.segments() == [(0, offline.n)]
    assert {s.quality for s in offline.samples()} == {Quality.COMM_LOSS}
    assert all(s.value is None for s in offline.samples()) and offline.objects is None
    dev.state = DeviceState.ONLINE
    again = dev.offline_batch("again", 456)
    assert again is not None and again.keys is offline.keys


def test_an_empty_cycle_has_no_points(tmp_path: Path) -> None:
    dev = device(tmp_path)
    batch = dev.cycle_batch(Cycle(), answered=True)
    assert batch is not None and batch.n == 0 and batch.samples() == []


def test_values_that_are_not_numbers_are_objects_at_their_rows(tmp_path: Path) -> None:
    dev = device(tmp_path)
    blocks = dev.blocks_for(list(dev.blocks))
    outcomes = {
        i: Outcome(i, words=[0] * b.count if b.table != "coil" else [True] * b.count) for i, b in enumerate(blocks)
    }
    batch = run_cycle(dev, outcomes)
    rows = [k.quantity for k in batch.keys.rows]
    assert batch.objects == {
        rows.index("contactor_positive"): "open",
        rows.index("raw.cooling_fan"): "on",
        rows.index("serial_number"): "",
    }
    by = {s.quantity: s.value for s in batch.samples() if s.module is None}
    assert by["contactor_positive"] == "open" and by["raw.cooling_fan"] == "on" and by["interlock_door"] == 0


def test_the_generic_profile_and_sunspec_maps(tmp_path: Path, batches_checked: list[Batch]) -> None:
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
    assert any(s.quality == Quality.GOOD for s in batch.samples())
    assert len(batches_checked) == 4


def _reader(image: Any) -> Any:
    async def read(address: int, count: int) -> list[int]:
        return [int(w) for w in image.read("holding", address, count)]

    return read
