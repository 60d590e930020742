"""The simulated rack source: its batches are columns over one key table, faults or not; its truth file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.model import Batch, Key, Keys
from gateway.sources.base import SourceContext
from gateway.sources.sim.config import FaultSpec, SimulatedSourceConfig
from gateway.sources.sim.source import SimulatedSource


def run_cycles(cfg: SimulatedSourceConfig, n: int) -> list[Batch]:
    source = SimulatedSource(cfg)
    out: list[Batch] = []

    async def emit(batch: Batch) -> None:
        out.append(batch)

    async def cycles() -> None:
        ctx = SourceContext(emit, lambda: None, "t")
        for _ in range(n):
            await source._cycle(ctx)

    asyncio.run(cycles())
    return out


def test_every_batch_has_the_one_key_table_of_the_rack() -> None:
    faults = [
        FaultSpec(kind="contactor_open", at=2, duration=3),
        FaultSpec(kind="stuck_sensor", at=1, cell=2),
        FaultSpec(kind="hot_cell", at=3, cell=5),
        FaultSpec(kind="dropout", at=6, duration=2),
    ]
    cfg = SimulatedSourceConfig(name="sim", modules=3, cells_per_module=5, sensors_per_module=2, faults=faults)
    batches = run_cycles(cfg, 12)
    with_samples = [b for b in batches if b.n]
    assert len(with_samples) >= 8 and len(with_samples) < len(batches)  # the dropout emitted a status only
    keys = with_samples[0].keys
    assert len(keys) == 15 + 6 + 3 + 20 + 3 and with_samples[0].segments() == [(0, len(keys))]
    for b in batches:
        if b.n:
            assert b.keys is keys and len(b.values) == len(b.quality) == len(b.ts) == len(keys)
            assert {s.quality for s in b.samples()} == {"good"}
        else:
            assert b.status is not None and b.status.state == "offline"
    opened = [b.samples() for b in with_samples if b.value(keys.rows.index(_key(keys, "bms_state"))) == "fault"]
    assert opened and all({s.value for s in x if s.quantity.startswith("contactor")} == {"open"} for x in opened)


def _key(keys: Keys, quantity: str) -> Key:
    return next(k for k in keys.rows if k.quantity == quantity)


def test_a_rack_without_temperature_sensors_has_its_own_shape() -> None:
    plain = run_cycles(SimulatedSourceConfig(name="a", sensors_per_module=0), 2)
    other = run_cycles(SimulatedSourceConfig(name="b"), 1)
    assert plain[0].keys is plain[1].keys and plain[0].keys is not other[0].keys
    assert not any(k.quantity.startswith("cell_temperature") for k in plain[0].keys.rows)
    assert [s.quantity for s in plain[0].samples()] == [k.quantity for k in plain[0].keys.rows]


def test_the_truth_file_holds_every_produced_sample(tmp_path: Path) -> None:
    cfg = SimulatedSourceConfig(name="t", modules=2, cells_per_module=3, truth_file=tmp_path / "truth.jsonl")
    source = SimulatedSource(cfg)
    out: list[Batch] = []

    async def emit(batch: Batch) -> None:
        out.append(batch)

    async def cycles() -> None:
        ctx = SourceContext(emit, lambda: None, "t")
        source._truth = cfg.truth_file.open("a", encoding="utf-8")  # type: ignore[union-attr]
        for _ in range(3):
            await source._cycle(ctx)
        source._truth.close()

    asyncio.run(cycles())
    lines = [json.loads(x) for x in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert len(lines) == source.produced == sum(b.n for b in out) == 3 * len(out[0].keys)
    assert [tuple(x) for x in lines] == [tuple(s) for b in out for s in b.samples()]
