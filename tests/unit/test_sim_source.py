"""The simulated rack source: its batches carry one layout that fits their samples, faults or not."""

from __future__ import annotations

import asyncio

from gateway.model import Batch
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


def test_every_batch_has_the_one_layout_of_the_rack() -> None:
    faults = [
        FaultSpec(kind="contactor_open", at=2, duration=3),
        FaultSpec(kind="stuck_sensor", at=1, cell=2),
        FaultSpec(kind="hot_cell", at=3, cell=5),
        FaultSpec(kind="dropout", at=6, duration=2),
    ]
    cfg = SimulatedSourceConfig(name="sim", modules=3, cells_per_module=5, sensors_per_module=2, faults=faults)
    batches = run_cycles(cfg, 12)
    with_samples = [b for b in batches if b.samples]
    assert len(with_samples) >= 8 and len(with_samples) < len(batches)  # the dropout emitted a status only
    layout = with_samples[0].layout
    assert layout is not None and len(layout.segments) == 1
    for b in batches:
        if b.samples:
            assert b.layout is layout and layout.matches(b.samples)
        else:
            assert b.layout is None


def test_a_rack_without_temperature_sensors_has_its_own_shape() -> None:
    plain = run_cycles(SimulatedSourceConfig(name="a", sensors_per_module=0), 2)
    other = run_cycles(SimulatedSourceConfig(name="b"), 1)
    assert plain[0].layout is not None and plain[0].layout.matches(plain[1].samples)
    assert other[0].layout is not None and not other[0].layout.matches(plain[0].samples)
