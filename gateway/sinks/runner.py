"""The sink runner: the shared delivery policy, written once for every sink.

It reads its sink's cursor in the outbox, batches rows by size and age, writes, acknowledges only
what the sink confirmed, backs off with jitter while the server is down, and catches up in order.
"""

from __future__ import annotations

import asyncio
import random
import time

import structlog

from gateway import metrics
from gateway.configbase import SinkBase
from gateway.errors import SinkError
from gateway.outbox import Outbox
from gateway.sinks.base import Sink

log = structlog.get_logger("sink")


class SinkRunner:
    def __init__(self, name: str, sink: Sink, outbox: Outbox, cfg: SinkBase) -> None:
        self.name = name
        self.sink = sink
        self.outbox = outbox
        self.cfg = cfg
        self._wake = asyncio.Event()
        self.connected = False
        outbox.add_consumer(name)
        self.position = outbox.acked(name)

    def notify(self) -> None:
        """New rows were committed."""
        self._wake.set()

    def caught_up(self) -> bool:
        return self.position >= self.outbox.last_seq()

    async def run(self) -> None:
        backoff = self.cfg.backoff_initial
        log_ = log.bind(sink=self.name)
        while True:
            try:
                if not self.connected:
                    await self.sink.open()
                    self.connected = True
                    metrics.sink_connected.labels(self.name).set(1)
                    log_.info("sink connected")
                rows = self.outbox.read(self.position, max_samples=self.cfg.batch_max_samples)
                if not rows:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self.sink.write(rows)
            except SinkError as exc:
                if self.connected:
                    log_.warning("sink write failed", error=str(exc))
                self.connected = False
                metrics.sink_connected.labels(self.name).set(0)
                metrics.sink_retries.labels(self.name).inc()
                delay = exc.retry_after if exc.retry_after is not None else backoff * random.uniform(0.5, 1.0)
                backoff = min(self.cfg.backoff_max, backoff * 2)
                await asyncio.sleep(delay)
                continue
            backoff = self.cfg.backoff_initial
            last = rows[-1].seq
            self.outbox.ack(self.name, last)
            self.position = last
            metrics.sink_delivered.labels(self.name).inc(sum(len(r.batch) for r in rows))
            metrics.sink_lag.labels(self.name).set(max(0.0, (time.time_ns() - rows[-1].ts) / 1e9))

    async def drain(self, timeout: float) -> bool:
        """Wait until every committed row is delivered or the timeout passes."""
        deadline = time.monotonic() + timeout
        while not self.caught_up() and time.monotonic() < deadline:
            self.notify()
            await asyncio.sleep(0.02)
        return self.caught_up()
