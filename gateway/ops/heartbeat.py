"""The gateway's info and heartbeat records, installed into every runtime (see gateway.runtime.gatewayinfo).

Service `gateway-info`: at start it stores the info record, then every `runtime.heartbeat_interval`
seconds (0: never) a heartbeat; after every applied reload the info record again. Both go through
the pipeline like any batch. Nothing is stored once the gateway is stopping.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import suppress

from gateway import metrics
from gateway.alarms import metrics as alarm_metrics
from gateway.ops.reload import ReloadResult
from gateway.ops.service import VERSION, operations
from gateway.ops.status import rack_counts, rack_rows
from gateway.runtime.core import Runtime
from gateway.runtime.gatewayinfo import (
    GatewayCounters,
    SinkCounters,
    heartbeat_record,
    info_record,
    metric_by_label,
    metric_total,
    status_batch,
)


class GatewayInfo:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.started = time.time_ns()
        self._started_monotonic = time.monotonic()
        self._reloaded = asyncio.Event()
        self.stopping = False

    def info(self, reason: str) -> dict[str, object]:
        return info_record(self.rt.loaded, ts=time.time_ns(), started=self.started, version=VERSION, reason=reason)

    def heartbeat(self) -> dict[str, object]:
        rt = self.rt
        names = [r.name for r in rt.runners]
        by_sink = {
            key: metric_by_label(metric, "sink")
            for key, metric in (
                ("connected", metrics.sink_connected),
                ("delivered", metrics.sink_delivered),
                ("pending", metrics.sink_pending),
                ("lag", metrics.sink_lag),
                ("retries", metrics.sink_retries),
                ("dead", metrics.sink_dead_lettered),
            )
        }
        dropped = metric_by_label(metrics.samples_dropped, "consumer")
        sinks = {
            n: SinkCounters(
                connected=bool(by_sink["connected"].get(n, 0)),
                delivered_samples=int(by_sink["delivered"].get(n, 0)),
                pending_samples=int(by_sink["pending"].get(n, 0)),
                lag_s=by_sink["lag"].get(n, 0.0),
                retries=int(by_sink["retries"].get(n, 0)),
                dead_lettered=int(by_sink["dead"].get(n, 0)),
                dropped_samples=int(dropped.get(n, 0)),
            )
            for n in names
        }
        ops = operations(rt)
        counters = GatewayCounters(
            uptime_s=time.monotonic() - self._started_monotonic,
            samples_stored=int(metric_total(metrics.samples_stored)),
            batches_stored=int(metric_total(metrics.batches_stored)),
            samples_dropped=int(sum(dropped.values())),
            queue_samples=rt.queue.samples,
            store_bytes=self._store_bytes(),
            store_pending_samples=max((s.pending_samples for s in sinks.values()), default=0),
            store_disk_full=bool(metric_total(metrics.store_disk_full)),
            alarms_active=int(metric_total(alarm_metrics.alarms_active)),
            racks=rack_counts(rack_rows(ops.live, time.time_ns())) if ops is not None else {},
        )
        return heartbeat_record(time.time_ns(), counters, sinks)

    def _store_bytes(self) -> int | None:
        with suppress(sqlite3.Error, OSError):
            return self.rt.outbox.used_bytes()
        return None

    # -- runtime hooks ------------------------------------------------------------------------------

    async def run(self) -> None:
        await self._store(self.info("start"))
        next_beat = time.monotonic() + self._interval()
        while not self.stopping:
            interval = self._interval()
            wait = None if not interval else max(0.0, next_beat - time.monotonic())
            with suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._reloaded.wait()
            if self._reloaded.is_set():
                self._reloaded.clear()
                await self._store(self.info("reload"))
            elif interval:
                await self._store(self.heartbeat())
                next_beat += interval
                if next_beat <= time.monotonic():  # late (a busy loop): the next one a whole interval on
                    next_beat = time.monotonic() + interval
            else:
                next_beat = time.monotonic()

    def _interval(self) -> float:
        return float(self.rt.cfg.runtime.heartbeat_interval)

    async def _store(self, record: dict[str, object]) -> None:
        if not self.stopping:  # the pipeline may be draining: nothing new after the stop
            await self.rt.emit(status_batch(record))

    def reloaded(self, result: ReloadResult) -> None:
        if result.ok:
            self._reloaded.set()

    def stop(self) -> None:
        self.stopping = True


def install(rt: Runtime) -> None:
    info = GatewayInfo(rt)
    rt.services.append(("gateway-info", info.run))
    rt.on_reload.append(info.reloaded)
    rt.on_stopping.append(info.stop)
