"""The simulated rack as a source (`type: simulated`): the embedded default and the ground truth."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

import numpy as np
import structlog

from gateway import metrics
from gateway.model import EMPTY_KEYS, Batch, DeviceState, DeviceStatus, Key, Keys
from gateway.sources.base import Source, SourceContext
from gateway.sources.sim.battery import Fault, RackModel, RackParams
from gateway.sources.sim.config import SimulatedSourceConfig

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

log = structlog.get_logger("source.simulated")


def model_from(cfg: SimulatedSourceConfig) -> RackModel:
    params = RackParams(
        modules=cfg.modules,
        cells_per_module=cfg.cells_per_module,
        sensors_per_module=cfg.sensors_per_module,
        capacity_ah=cfg.capacity_ah,
        initial_soc=cfg.initial_soc,
        current_amplitude=cfg.current_amplitude,
        current_period=cfg.current_period,
        ambient=cfg.ambient,
        spread=cfg.spread,
        seed=cfg.seed,
    )
    faults = [Fault(f.kind, f.at, f.duration, f.cell, f.severity) for f in cfg.faults]
    return RackModel(params, faults)


class SimulatedSource:
    """Steps a RackModel on a drift-free schedule and emits one batch per interval."""

    def __init__(self, cfg: SimulatedSourceConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.model = model_from(cfg)
        self.produced = 0  # samples handed to the pipeline: the ground truth count
        self._truth: IO[str] | None = None
        self._state = DeviceState.STARTING
        self._rows: tuple[Key, ...] = ()
        self.keys = EMPTY_KEYS  # the model reports one shape for its parameters: one key table, made once

    async def run(self, ctx: SourceContext) -> None:
        cfg = self.cfg
        if cfg.truth_file is not None:
            cfg.truth_file.parent.mkdir(parents=True, exist_ok=True)
            self._truth = cfg.truth_file.open("a", encoding="utf-8")
        log.info("simulated rack started", source=self.name, cells=self.model.n_cells)
        ctx.started()
        start = time.monotonic()
        k = 0
        try:
            while True:
                await self._cycle(ctx)
                k += 1
                # Drift-free: the k-th cycle is due at start + k*interval, whatever the last one took.
                delay = start + k * cfg.interval - time.monotonic()
                if delay < 0:
                    k += int(-delay // cfg.interval)  # skip missed cycles instead of bunching
                    delay = start + k * cfg.interval - time.monotonic()
                await asyncio.sleep(max(0.0, delay))
        finally:
            if self._truth is not None:
                self._truth.close()
            log.info("simulated rack stopped", source=self.name, produced_samples=self.produced)

    async def _cycle(self, ctx: SourceContext) -> None:
        cfg = self.cfg
        self.model.step(cfg.interval * cfg.speed)
        ts = time.time_ns()
        if self.model.dropped_out():
            if self._state != DeviceState.OFFLINE:
                self._state = DeviceState.OFFLINE
                log.warning("device offline", source=self.name, reason="simulated dropout")
                metrics.device_online.labels(self.name).set(0)
                off = DeviceStatus(self.name, DeviceState.OFFLINE, "simulated dropout", ts)
                await ctx.emit(Batch(self.name, device=self.name, status=off, created=ts))
            return
        status: DeviceStatus | None = None
        if self._state != DeviceState.ONLINE:
            if self._state == DeviceState.OFFLINE:
                log.info("device online", source=self.name)
            self._state = DeviceState.ONLINE
            metrics.device_online.labels(self.name).set(1)
            status = DeviceStatus(self.name, DeviceState.ONLINE, "", ts)
        reading = self.model.reading()
        if reading.rows is not self._rows:
            self._rows = reading.rows
            self.keys = Keys.of(Key(k.quantity, k.unit, cfg.rack_tag, k.module, k.cell) for k in reading.rows)
        n = len(self.keys)
        stamps, good = np.full(n, ts, dtype=np.int64), np.zeros(n, dtype=np.uint8)
        objects = reading.objects or None
        batch = Batch(self.name, self.keys, stamps, reading.values, good, None, objects, device=self.name,
                      status=status, created=ts)  # fmt: skip
        await ctx.emit(batch)
        # Counted after emit returned: the pipeline has taken it.
        self.produced += n
        metrics.samples_produced.labels(self.name).inc(n)
        if self._truth is not None:
            self._truth.write("".join(json.dumps(s, separators=(",", ":")) + "\n" for s in batch.samples()))
            self._truth.flush()


def build(cfgs: Sequence[SimulatedSourceConfig], loaded: LoadedConfig) -> list[Source]:
    return [SimulatedSource(c) for c in cfgs]
