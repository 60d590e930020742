"""The simulated rack as a source (`type: simulated`): the embedded default and the ground truth."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

import structlog

from gateway import metrics
from gateway.model import DeviceState
from gateway.sources.base import Source, SourceContext
from gateway.sources.sim import truth
from gateway.sources.sim.config import SimulatedSourceConfig
from gateway.sources.sim.feed import RackFeed, model_from

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

__all__ = ["SimulatedSource", "build", "model_from"]
log = structlog.get_logger("source.simulated")


class SimulatedSource:
    """Steps a RackFeed on a drift-free schedule and emits one batch per interval."""

    def __init__(self, cfg: SimulatedSourceConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.feed = RackFeed(cfg, time.time_ns())
        self.model = self.feed.model
        self.produced = 0  # samples handed to the pipeline: the ground truth count
        self._truth: IO[str] | None = None
        self._params: dict[str, object] | None = None  # the truth document's parameters, once written
        self._events: list[dict[str, object]] = []
        self._was_offline = False

    async def run(self, ctx: SourceContext) -> None:
        cfg = self.cfg
        if cfg.truth_file is not None:
            cfg.truth_file.parent.mkdir(parents=True, exist_ok=True)
            self._truth = cfg.truth_file.open("a", encoding="utf-8")
            self._write_model()
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

    def _write_model(self) -> None:
        """The truth document beside the truth file: parameters at start, events so far."""
        if self.cfg.truth_file is None:
            return
        if self._params is None:
            self._params = truth.parameters(self.feed)
        truth.write_document(truth.model_path(self.cfg.truth_file), self._params, self._events)

    async def _cycle(self, ctx: SourceContext) -> None:
        out = self.feed.next(None if self.cfg.clock == "simulated" else time.time_ns())
        if out.events:
            self._events += out.events
            self._write_model()
        if out.began == DeviceState.OFFLINE:
            self._was_offline = True
            log.warning("device offline", source=self.name, reason="simulated dropout")
            metrics.device_online.labels(self.name).set(0)
        elif out.began == DeviceState.ONLINE:
            if self._was_offline:
                log.info("device online", source=self.name)
            metrics.device_online.labels(self.name).set(1)
        batch = out.batch
        if batch is None:
            return
        await ctx.emit(batch)
        if not batch.n:
            return
        # Counted after emit returned: the pipeline has taken it.
        self.produced += batch.n
        metrics.samples_produced.labels(self.name).inc(batch.n)
        if self._truth is not None:
            self._truth.write("".join(json.dumps(s, separators=(",", ":")) + "\n" for s in batch.samples()))
            self._truth.flush()


def build(cfgs: Sequence[SimulatedSourceConfig], loaded: LoadedConfig) -> list[Source]:
    return [SimulatedSource(c) for c in cfgs]
