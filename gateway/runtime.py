"""The runtime: one TaskGroup owns every task; sources → bounded queue → processors → outbox → sinks.

Shutdown (SIGTERM, SIGINT): stop the sources, drain the queue into the outbox, let every sink
catch up within the grace period, close, exit 0. A second SIGINT forces exit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

import structlog
from prometheus_client import Counter

from gateway import metrics
from gateway.config import LoadedConfig
from gateway.model import Batch
from gateway.outbox import Outbox
from gateway.sinks.base import SINK_BUILDERS
from gateway.sinks.runner import SinkRunner
from gateway.sources.base import Source, SourceContext, build_sources

log = structlog.get_logger("runtime")

Processor = Callable[[list[Batch]], list[Batch]]  # returns extra batches (e.g. alarm events) to store
Observer = Callable[[list[Batch]], None]  # sees every committed batch (live status, metrics)
Service = Callable[[], Coroutine[Any, Any, None]]  # a long-running task (HTTP, watchdog, command listener)

SOURCE_FAILURES = Counter(
    "bms_gateway_source_failures", "Sources that failed and were restarted", ["source"], registry=metrics.REGISTRY
)

EXTENSION_FAILURES = Counter(
    "bms_gateway_extension_failures", "Processor or observer calls that raised", ["name"], registry=metrics.REGISTRY
)


def _name(fn: object) -> str:
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)


# Modules that extend the runtime (alarms, operations) register an installer here.
EXTENSIONS: list[Callable[[Runtime], None]] = []


class Runtime:
    def __init__(self, loaded: LoadedConfig) -> None:
        import gateway.plugins  # noqa: F401

        self.loaded = loaded
        cfg = loaded.config
        self.cfg = cfg
        self.outbox = Outbox(
            cfg.store.path,
            max_bytes=cfg.store.max_bytes,
            retention_hours=cfg.store.retention_hours,
            synchronous=cfg.store.synchronous,
        )
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=cfg.runtime.queue_batches)
        self.sources: list[Source] = build_sources(loaded)
        self.runners: list[SinkRunner] = []
        for name, scfg in cfg.sinks.items():
            if scfg.enabled:
                sink = SINK_BUILDERS[scfg.type](name, scfg, loaded)
                self.runners.append(SinkRunner(name, sink, self.outbox, scfg))
        self.processors: list[Processor] = []
        self.observers: list[Observer] = []
        self.services: list[tuple[str, Service]] = []
        self.on_ready: list[Callable[[], None]] = []
        self.on_stopping: list[Callable[[], None]] = []
        self.on_close: list[Callable[[], None]] = []
        self.started_sources: set[str] = set()
        self.ready = False
        self.stop_event = asyncio.Event()
        self._sigint_count = 0
        self.source_restart_delay = 1.0  # first delay before restarting a failed source; doubles to 60 s
        for install in EXTENSIONS:
            install(self)

    # -- the pipeline ---------------------------------------------------------------------------

    async def emit(self, batch: Batch) -> None:
        await self.queue.put(batch)

    async def _pipeline(self) -> None:
        """Take batches from the queue, run the processors, group-commit to the outbox."""
        interval = self.cfg.store.commit_interval
        done = False
        while not done:
            first = await self.queue.get()
            if first is None:
                break
            batches = [first]
            deadline = time.monotonic() + interval
            while True:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                if item is None:
                    done = True
                    break
                batches.append(item)
            self._commit(batches)

    def _commit(self, batches: list[Batch]) -> None:
        extra: list[Batch] = []
        for process in self.processors:
            try:
                extra.extend(process(batches))
            except Exception:  # a bug in a processor must not cost the data: it is stored regardless
                EXTENSION_FAILURES.labels(_name(process)).inc()
                log.exception("processor failed; batches stored without its output", processor=_name(process))
        batches = batches + extra
        t0 = time.perf_counter()
        self.outbox.append(batches)
        metrics.commit_seconds.observe(time.perf_counter() - t0)
        metrics.batches_stored.inc(len(batches))
        metrics.samples_stored.inc(sum(len(b.samples) for b in batches))
        for observe in self.observers:
            try:
                observe(batches)
            except Exception:
                EXTENSION_FAILURES.labels(_name(observe)).inc()
                log.exception("observer failed", observer=_name(observe))
        for runner in self.runners:
            runner.notify()

    # -- lifecycle ------------------------------------------------------------------------------

    def _source_started(self, name: str) -> None:
        self.started_sources.add(name)
        if not self.ready and len(self.started_sources) == len(self.sources):
            self.ready = True
            log.info("ready", sources=len(self.sources), sinks=[r.name for r in self.runners])
            for cb in self.on_ready:
                cb()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        log.info(
            "starting",
            site=self.cfg.site.name,
            sources=[s.name for s in self.sources],
            store=str(self.cfg.store.path),
        )
        try:
            async with asyncio.TaskGroup() as tg:
                source_tasks = [
                    tg.create_task(self._run_source(src), name=f"source:{src.name}") for src in self.sources
                ]
                pipeline = tg.create_task(self._pipeline(), name="pipeline")
                sink_tasks = [tg.create_task(r.run(), name=f"sink:{r.name}") for r in self.runners]
                service_tasks = [tg.create_task(fn(), name=f"service:{n}") for n, fn in self.services]
                if not self.sources:
                    self._source_started("")
                await self.stop_event.wait()
                await self._shutdown(source_tasks, pipeline, sink_tasks, service_tasks)
        finally:
            for cb in self.on_close:
                with suppress(Exception):
                    cb()
            self.outbox.close()
            loop.remove_signal_handler(signal.SIGTERM)
            loop.remove_signal_handler(signal.SIGINT)
        log.info("stopped", stored_samples=self.outbox.appended_samples)
        return 0

    async def _run_source(self, src: Source) -> None:
        """Run a source; if it fails (a bug, never a device fault), log it and restart it with backoff.

        One failing source never takes the daemon or the other sources down.
        """
        ctx = SourceContext(self.emit, lambda: self._source_started(src.name), self.cfg.site.name)
        delay = self.source_restart_delay
        with structlog.contextvars.bound_contextvars(source=src.name):
            while True:
                started = time.monotonic()
                try:
                    await src.run(ctx)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    SOURCE_FAILURES.labels(src.name).inc()
                    log.exception("source failed; restarting", restart_in=round(delay, 1))
                if time.monotonic() - started > 60:
                    delay = self.source_restart_delay  # it ran for a while: start over with a short delay
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)

    def request_stop(self, why: str = "request") -> None:
        if not self.stop_event.is_set():
            log.info("stopping", signal=why)
            for cb in self.on_stopping:
                cb()
            self.stop_event.set()

    def _on_sigint(self) -> None:
        self._sigint_count += 1
        if self._sigint_count >= 2:
            log.warning("second interrupt: exiting now")
            os._exit(130)
        self.request_stop("SIGINT")

    async def _shutdown(
        self,
        source_tasks: list[asyncio.Task[None]],
        pipeline: asyncio.Task[None],
        sink_tasks: list[asyncio.Task[None]],
        service_tasks: list[asyncio.Task[None]],
    ) -> None:
        deadline = time.monotonic() + self.cfg.runtime.grace_period
        for t in source_tasks:
            t.cancel()
        await asyncio.gather(*source_tasks, return_exceptions=True)
        await self.queue.put(None)  # everything the sources emitted is ahead of this
        await pipeline
        for runner in self.runners:
            left = max(0.0, deadline - time.monotonic())
            if not await runner.drain(left):
                log.warning("sink not caught up at shutdown; it resumes from its cursor", sink=runner.name)
        for t in sink_tasks + service_tasks:
            t.cancel()
        await asyncio.gather(*sink_tasks, *service_tasks, return_exceptions=True)
        for runner in self.runners:
            with suppress(Exception):
                await asyncio.wait_for(runner.sink.close(), max(0.1, deadline - time.monotonic()))


def run(loaded: LoadedConfig) -> int:
    async def main() -> int:
        return await Runtime(loaded).run()

    return asyncio.run(main())


def extension(fn: Callable[[Runtime], None]) -> Callable[[Runtime], None]:
    EXTENSIONS.append(fn)
    return fn
