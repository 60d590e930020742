"""The runtime: one TaskGroup owns every task; sources → bounded queue → processors → outbox → sinks.

Shutdown (SIGTERM, SIGINT): stop the sources, drain the queue into the outbox, let every sink
catch up within the grace period, close, exit 0. A second SIGINT forces the exit: every task is
cancelled (no drain, no grace period), the close hooks run and the store closes as in any stop, then
the process exits 130; what hangs longer than FORCED_EXIT_SECONDS is cut short.

Reload (SIGHUP): load and validate the file again; if it is invalid, log every problem (file:line:col)
and keep running as before; if it is valid, restart only the sources and sinks whose configuration
changed (see gateway.ops.reload). The queue, the pipeline and the outbox are never stopped, so the
other sources' streams have no gap and nothing emitted is lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

from gateway import app, metrics
from gateway.alarms.gatewayalarm import GatewayAlarms
from gateway.config.settings import LoadedConfig
from gateway.errors import ConfigError
from gateway.model import Batch
from gateway.ops.reload import (
    RELOAD_LOAD_TIMEOUT,
    ReloadResult,
    config_reload_ok,
    config_reloads,
    effective_config,
    forget_metrics,
    load_or_error,
    plan_reload,
    run_in_daemon_thread,
    source_changes,
)
from gateway.runtime import gcpolicy
from gateway.runtime.batchqueue import BatchQueue
from gateway.sinks.runner import SinkRunner
from gateway.sources.base import Source, SourceContext, sources_by_type
from gateway.store.outbox import Outbox

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

QUEUE_SAMPLES = Gauge(
    "bms_gateway_queue_samples", "Samples waiting in the source queue for a group commit", registry=metrics.REGISTRY
)
QUEUE_WAIT = Counter(
    "bms_gateway_queue_wait_seconds",
    "Seconds sources waited for room in the full source queue (backpressure: the gateway is not keeping up)",
    registry=metrics.REGISTRY,
)

PIPELINE_STEP = Histogram(
    "bms_gateway_pipeline_step_seconds",
    "Duration of one group commit's step on the event loop (processors, outbox append, observers)",
    registry=metrics.REGISTRY,
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
)

# Samples taken into one group commit at most: the commit (processors, observers, outbox encoding) runs
# on the event loop in one go, so a backlog is committed in steps of this size with the loop free in
# between (about 10 ms each at a few µs per sample).
COMMIT_MAX_SAMPLES = 5000
QUEUE_FULL_LOG_EVERY = 60.0  # seconds between "queue full" log lines (the metric counts every wait)
FORCED_EXIT_SECONDS = 3.0  # a second SIGINT: closing the store and the journal may take this long at most


def _name(fn: object) -> str:
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)


class Runtime:
    """The daemon's pipeline for one configuration.

    Its sources and sinks are built by `type:` (see `gateway.app`); then the parts named in `parts`
    (default: `gateway.app.RUNTIME_PARTS`, i.e. alarms, operations, heartbeat) add their processors,
    observers, services and hooks. `parts=()` gives the bare pipeline."""

    _run_task: asyncio.Task[Any] | None = None  # the task in `run()` (a second SIGINT cancels it)
    _forced = False  # a second SIGINT: `run()` exits the process with 130 once the store is closed

    def __init__(self, loaded: LoadedConfig, *, parts: Sequence[str] | None = None) -> None:
        self.loaded = loaded
        cfg = loaded.config
        self.cfg = cfg
        # The gateway's own alarms (a full disk, a sink refused): the alarm engine takes them when enabled.
        self.gateway_alarms = GatewayAlarms(engine=cfg.alarms.enabled)
        self.outbox = Outbox(
            cfg.store.path,
            max_bytes=cfg.store.max_bytes,
            retention_hours=cfg.store.retention_hours,
            synchronous=cfg.store.synchronous,
            max_dead_letters=cfg.store.max_dead_letters,
            memory_buffer_samples=cfg.store.memory_buffer_samples,
            site=cfg.site.name,
            alarms=self.gateway_alarms,
            mark_open=True,
        )
        self.queue = BatchQueue(cfg.runtime.queue_batches, cfg.runtime.queue_samples)
        self.commit_max_samples = COMMIT_MAX_SAMPLES
        self._queue_full_logged = -QUEUE_FULL_LOG_EVERY  # monotonic time of the last "queue full" line
        self.sources: list[Source] = []
        self.source_types: dict[str, str] = {}  # source name -> its `type:` (a reload rebuilds by type)
        for type_name, built in sources_by_type(loaded).items():
            self.sources += built
            self.source_types.update((src.name, type_name) for src in built)
        self.runners: list[SinkRunner] = []
        for name, scfg in cfg.sinks.items():
            if scfg.enabled:
                sink = app.build_sink(name, scfg, loaded)
                self.runners.append(SinkRunner(name, sink, self.outbox, scfg, self.gateway_alarms))
        self.on_reloading: list[Callable[[], None]] = []  # a reload begins
        self.on_reload: list[Callable[[ReloadResult], None]] = []  # a reload ended (applied or rejected)
        self.last_reload: ReloadResult | None = None
        self._reload_requested = False
        self._wakeup = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._source_tasks: dict[str, list[asyncio.Task[None]]] = {}  # by name (a list: names may repeat)
        self._sink_tasks: dict[str, asyncio.Task[None]] = {}
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
        self.settle_gc = False  # the daemon sets it: gcpolicy.settle() once ready and after each reload
        app.install_parts(self, app.RUNTIME_PARTS if parts is None else parts)

    # -- the pipeline ---------------------------------------------------------------------------

    async def emit(self, batch: Batch) -> None:
        """Queue a batch for the next group commit; waits while the queue is full (nothing is dropped)."""
        queue = self.queue
        waited = await queue.put(batch)
        if waited:
            QUEUE_WAIT.inc(waited)
            now = time.monotonic()
            if now - self._queue_full_logged >= QUEUE_FULL_LOG_EVERY:
                self._queue_full_logged = now
                log.warning("source queue full: sources wait until the store catches up (backpressure)",
                            queued_samples=queue.samples, waits=queue.full_waits,
                            waited_s=round(queue.waited, 3))  # fmt: skip

    async def _pipeline(self) -> None:
        """Take batches from the queue, run the processors, group-commit to the outbox.

        A group is what arrived within one commit interval, up to `commit_max_samples`; between
        groups the loop is free for the sources and sinks."""
        interval = self.cfg.store.commit_interval
        done = False
        while not done:
            first = await self.queue.get()
            if first is None:
                break
            batches = [first]
            samples = len(first)
            deadline = time.monotonic() + interval
            while samples < self.commit_max_samples:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        async with asyncio.timeout(remaining):  # a timeout leaves the item in the queue
                            item = await self.queue.get()
                    except TimeoutError:
                        break
                if item is None:
                    done = True
                    break
                batches.append(item)
                samples += len(item)
            QUEUE_SAMPLES.set(self.queue.samples)
            self._commit(batches)
            await asyncio.sleep(0)  # the sources and sinks run between group commits

    def _commit(self, batches: list[Batch]) -> None:
        t0 = time.perf_counter()
        self._commit_step(batches)
        PIPELINE_STEP.observe(time.perf_counter() - t0)

    def _commit_step(self, batches: list[Batch]) -> None:
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
        metrics.samples_stored.inc(sum(b.n for b in batches))
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
            if self.settle_gc:
                gcpolicy.settle()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._run_task = asyncio.current_task()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        log.info(
            "starting",
            site=self.cfg.site.name,
            sources=[s.name for s in self.sources],
            store=str(self.cfg.store.path),
        )
        try:
            self.outbox.checkpoint_in_thread()  # a checkpoint's copy and fsync never on the loop
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for src in self.sources:
                    self._start_source(src)
                pipeline = tg.create_task(self._pipeline(), name="pipeline")
                for r in self.runners:
                    self._start_runner(r)
                service_tasks = [
                    tg.create_task(self._run_service(n, fn), name=f"service:{n}") for n, fn in self.services
                ]
                if not self.sources:
                    self._source_started("")
                await self._serve_until_stopped()
                source_tasks = [t for ts in self._source_tasks.values() for t in ts]
                sink_tasks = list(self._sink_tasks.values())
                await self._shutdown(source_tasks, pipeline, sink_tasks, service_tasks)
        finally:
            for cb in self.on_close:
                with suppress(Exception):
                    cb()
            self.outbox.close()
            loop.remove_signal_handler(signal.SIGTERM)
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGHUP)
            if self._forced:
                _exit_forced(self.outbox.appended_samples)
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
                    if self.stop_event.is_set():
                        log.exception("source failed while stopping")
                        return
                    log.exception("source failed; restarting", restart_in=round(delay, 1))
                if time.monotonic() - started > 60:
                    delay = self.source_restart_delay  # it ran for a while: start over with a short delay
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)

    async def _run_service(self, name: str, fn: Service) -> None:
        """Run a service (HTTP, a simulator, a command listener); restart it with backoff if it fails."""
        delay = self.source_restart_delay
        while True:
            started = time.monotonic()
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                EXTENSION_FAILURES.labels(f"service:{name}").inc()
                if self.stop_event.is_set():
                    log.exception("service failed while stopping", service=name)
                    return
                log.exception("service failed; restarting", service=name, restart_in=round(delay, 1))
            if time.monotonic() - started > 60:
                delay = self.source_restart_delay
            await asyncio.sleep(delay)
            delay = min(60.0, delay * 2)

    def request_stop(self, why: str = "request") -> None:
        if not self.stop_event.is_set():
            log.info("stopping", signal=why)
            for cb in self.on_stopping:
                cb()
            self.stop_event.set()
            self._wakeup.set()

    def _on_sigint(self) -> None:
        self._sigint_count += 1
        if self._sigint_count >= 2:
            self._force_exit()
            return
        self.request_stop("SIGINT")

    def _force_exit(self) -> None:
        """Second SIGINT: cancel every task now; `run()` closes the store and the journal (its `finally`)
        and exits 130. A task that does not end, or a close that hangs, is cut short after
        FORCED_EXIT_SECONDS by a timer thread."""
        log.warning("second interrupt: stopping now, closing the store", within_s=FORCED_EXIT_SECONDS)
        timer = threading.Timer(FORCED_EXIT_SECONDS, _exit_now)
        timer.daemon = True
        timer.start()
        task = self._run_task
        if task is None or task.done():
            _exit_now()
            return
        self._forced = True
        task.cancel()

    async def _shutdown(
        self,
        source_tasks: list[asyncio.Task[None]],
        pipeline: asyncio.Task[None],
        sink_tasks: list[asyncio.Task[None]],
        service_tasks: list[asyncio.Task[None]],
    ) -> None:
        deadline = time.monotonic() + self.cfg.runtime.grace_period
        await _cancel_and_wait(source_tasks)  # asks again if a source swallowed the cancellation
        await self.queue.put(None)  # everything the sources emitted is ahead of this
        await pipeline
        for runner in self.runners:
            left = max(0.0, deadline - time.monotonic())
            if not await runner.drain(left):
                log.warning("sink not caught up at shutdown; it resumes from its cursor", sink=runner.name)
        await _cancel_and_wait(sink_tasks + service_tasks)
        for runner in self.runners:
            with suppress(Exception):
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await runner.sink.close()

    # -- reload ---------------------------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: reload the configuration file (done by the main task, never during a shutdown)."""
        log.info("reload requested", path=str(self.loaded.path))
        self._reload_requested = True
        self._wakeup.set()

    async def _serve_until_stopped(self) -> None:
        while not self.stop_event.is_set():
            with suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if self._reload_requested and not self.stop_event.is_set():
                self._reload_requested = False
                await self.reload()

    def _start_source(self, src: Source) -> None:
        assert self._tg is not None
        task = self._tg.create_task(self._run_source(src), name=f"source:{src.name}")
        self._source_tasks.setdefault(src.name, []).append(task)

    def _start_runner(self, runner: SinkRunner) -> None:
        assert self._tg is not None
        self._sink_tasks[runner.name] = self._tg.create_task(runner.run(), name=f"sink:{runner.name}")

    async def _stop_sources(self, names: set[str]) -> None:
        await _cancel_and_wait([t for n, ts in self._source_tasks.items() if n in names for t in ts])
        self.sources = [s for s in self.sources if s.name not in names]
        for n in names:
            self._source_tasks.pop(n, None)
            self.source_types.pop(n, None)
            self.started_sources.discard(n)

    async def _stop_sink(self, name: str) -> None:
        task = self._sink_tasks.pop(name, None)
        if task is not None:
            await _cancel_and_wait([task])
        for runner in [r for r in self.runners if r.name == name]:
            self.runners.remove(runner)
            with suppress(Exception):
                async with asyncio.timeout(self.cfg.runtime.grace_period):
                    await runner.sink.close()

    def _call_hooks(self, hooks: list[Callable[..., None]], *args: object) -> None:
        for cb in hooks:
            try:
                cb(*args)
            except Exception:
                EXTENSION_FAILURES.labels(_name(cb)).inc()
                log.exception("reload hook failed", hook=_name(cb))

    async def reload(self) -> ReloadResult:
        """Load the configuration file again and apply what changed (see the module doc)."""
        self._call_hooks(self.on_reloading)
        if self.settle_gc:
            gcpolicy.thaw()  # what the reload lets go must be collectable
        try:
            result = await self._reload()
        finally:
            if self.settle_gc:
                gcpolicy.settle()
        self.last_reload = result
        config_reloads.labels("ok" if result.ok else "invalid").inc()
        config_reload_ok.set(1 if result.ok else 0)
        self._call_hooks(self.on_reload, result)
        return result

    async def _load_fresh(self) -> LoadedConfig | BaseException | None:
        """Load the file in a worker thread (profiles and DBC files may take a while; the loop goes on).

        None when a stop request came first: the shutdown never waits for a reload."""
        future = run_in_daemon_thread(load_or_error, self.loaded.path)
        deadline = time.monotonic() + RELOAD_LOAD_TIMEOUT
        while not future.done():
            await asyncio.wait({future}, timeout=0.2)
            if self.stop_event.is_set():
                return None
            if time.monotonic() > deadline:
                return TimeoutError(f"loading took longer than {RELOAD_LOAD_TIMEOUT:.0f} s")
        return future.result()

    async def _reload(self) -> ReloadResult:
        fresh = await self._load_fresh()
        if fresh is None:
            return ReloadResult(False, problems=["abandoned: the gateway is stopping"])
        if isinstance(fresh, ConfigError):
            problems = [str(p) for p in fresh.problems]
            log.error("reload rejected: the configuration is invalid; the running one stays", problems=problems)
            return ReloadResult(False, problems=problems)
        if isinstance(fresh, BaseException):  # a bug in a check must not take the running gateway down
            log.error(
                "reload rejected: the configuration could not be loaded; the running one stays",
                error=f"{type(fresh).__name__}: {fresh}",
                exc_info=fresh,
            )
            return ReloadResult(False, problems=[f"{self.loaded.path}: {type(fresh).__name__}: {fresh}"])
        plan = plan_reload(self.loaded, fresh)
        new = effective_config(self.loaded, fresh)
        try:  # build everything before stopping anything: a failure leaves the running set untouched
            built = sources_by_type(new, plan.source_types)
            sinks = {n: app.build_sink(n, new.config.sinks[n], new) for n in plan.start_sinks}
        except Exception as exc:
            log.exception("reload rejected: cannot build the new sources or sinks; the running ones stay")
            return ReloadResult(False, problems=[f"{self.loaded.path}: {exc}"])
        old_names = {s.name for s in self.loaded.enabled_sources}
        new_names = {s.name for s in new.enabled_sources}
        names = {t: [s.name for s in srcs] for t, srcs in built.items()}
        stop, start = source_changes(plan, old_names, new_names, dict(self.source_types), names)
        await self._stop_sources(stop)
        for name in sorted(plan.stop_sinks):
            await self._stop_sink(name)
        if new.config.logging != self.cfg.logging:
            from gateway.ops.logs import configure_logging

            log_cfg = new.config.logging
            configure_logging(log_cfg.level, log_cfg.format, library_level=log_cfg.library_level)
        self.loaded, self.cfg = new, new.config
        for type_name, srcs in built.items():
            for src in srcs:
                if src.name in start:
                    self.sources.append(src)
                    self.source_types[src.name] = type_name
                    self._start_source(src)
        for name, sink in sinks.items():
            runner = SinkRunner(name, sink, self.outbox, new.config.sinks[name])
            self.runners.append(runner)
            self._start_runner(runner)
        forget_metrics(stop - start, plan.stop_sinks - plan.start_sinks)
        changes = plan.describe()
        log.info("configuration reloaded", changes=changes, restarted_sources=sorted(stop | start))
        return ReloadResult(True, changes=changes, loaded=new, removed=sorted(stop - start))


async def _cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait until they ended, cancelling again if one swallowed the request.

    A task inside `asyncio.wait_for` (ours use `asyncio.timeout`, but libraries such as pymodbus do)
    whose inner wait completes in the same instant can lose a cancellation on Python 3.11; asking
    again (after a second, so that a clean-up in progress is not cut short) ends it. Used at reload
    and at shutdown."""
    while pending := [t for t in tasks if not t.done()]:
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=1.0)


def _exit_now() -> None:
    """The forced exit when closing did not finish in time (or nothing was running)."""
    with suppress(Exception):
        log.error("forced exit: the store was not closed in time", within_s=FORCED_EXIT_SECONDS)
        sys.stderr.flush()
    os._exit(130)


def _exit_forced(stored_samples: int) -> None:
    """The forced exit once the tasks were cancelled and the store and journal closed."""
    with suppress(Exception):
        log.warning("stopped (forced): store closed", stored_samples=stored_samples)
        sys.stderr.flush()
    os._exit(130)
