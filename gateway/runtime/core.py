"""The runtime: one TaskGroup owns every task; sources → bounded queue → processors → outbox → sinks.

The parts live beside it: the pipeline (queue → processors → outbox → observers) in
`gateway.runtime.pipeline`, restarting what failed in `gateway.runtime.supervise`, stopping in
`gateway.runtime.shutdown`, loading a configuration again in `gateway.runtime.reloading`.

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
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import suppress
from typing import Any

import structlog

from gateway import app
from gateway.alarms.gatewayalarm import GatewayAlarms
from gateway.config.settings import LoadedConfig
from gateway.model import Batch
from gateway.ops.reload import (
    ReloadResult,
    config_reload_ok,
    config_reloads,
    effective_config,
    forget_metrics,
    plan_reload,
    source_changes,
)
from gateway.runtime import gcpolicy
from gateway.runtime.batchqueue import BatchQueue
from gateway.runtime.pipeline import Observer, Pipeline, Processor
from gateway.runtime.reloading import load_fresh, rejected
from gateway.runtime.shutdown import (
    exit_forced,
    force_exit,
    install_signal_handlers,
    remove_signal_handlers,
    shut_down,
)
from gateway.runtime.supervise import (
    EXTENSION_FAILURES,
    SOURCE_FAILURES,
    call_hooks,
    cancel_and_wait,
    supervise,
)
from gateway.sinks.runner import SinkRunner
from gateway.sources.base import Source, SourceContext, sources_by_type
from gateway.store.outbox import Outbox

log = structlog.get_logger("runtime")

Service = Callable[[], Coroutine[Any, Any, None]]  # a long-running task (HTTP, watchdog, command listener)


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
        self.pipeline = Pipeline(self.queue, self.outbox, self.runners)  # shares the list of runners
        self.processors: list[Processor] = self.pipeline.processors
        self.observers: list[Observer] = self.pipeline.observers
        self.emit: Callable[[Batch], Awaitable[None]] = self.pipeline.emit  # a source's way into the queue
        self.emit_now: Callable[[Batch], None] = self.pipeline.emit_now  # alarm transitions: never wait
        self.on_reloading: list[Callable[[], None]] = []  # a reload begins
        self.on_reload: list[Callable[[ReloadResult], None]] = []  # a reload ended (applied or rejected)
        self.last_reload: ReloadResult | None = None
        self._reload_requested = False
        self._wakeup = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._source_tasks: dict[str, list[asyncio.Task[None]]] = {}  # by name (a list: names may repeat)
        self._sink_tasks: dict[str, asyncio.Task[None]] = {}
        self.services: list[tuple[str, Service]] = []  # (task name, coroutine function)
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
        install_signal_handlers(loop, stop=self.request_stop, interrupt=self._on_sigint, reload=self.request_reload)
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
                pipeline = tg.create_task(self.pipeline.run(self.cfg.store.commit_interval), name="pipeline")
                for r in self.runners:
                    self._start_runner(r)
                service_tasks = [
                    tg.create_task(self._run_service(n, fn), name=f"service:{n}") for n, fn in self.services
                ]
                if not self.sources:
                    self._source_started("")
                await self._serve_until_stopped()
                await shut_down(
                    grace_period=self.cfg.runtime.grace_period,
                    queue=self.queue,
                    source_tasks=[t for ts in self._source_tasks.values() for t in ts],
                    pipeline=pipeline,
                    runners=self.runners,
                    other_tasks=[*self._sink_tasks.values(), *service_tasks],
                )
        finally:
            for cb in self.on_close:
                with suppress(Exception):
                    cb()
            self.outbox.close()
            remove_signal_handlers(loop)
            if self._forced:
                exit_forced(self.outbox.appended_samples)
        log.info("stopped", stored_samples=self.outbox.appended_samples)
        return 0

    async def _run_source(self, src: Source) -> None:
        """Run a source; if it fails (a bug, never a device fault), log it and restart it with backoff.

        One failing source never takes the daemon or the other sources down."""
        ctx = SourceContext(self.emit, lambda: self._source_started(src.name), self.cfg.site.name)
        with structlog.contextvars.bound_contextvars(source=src.name):
            await supervise(
                lambda: src.run(ctx),
                kind="source",
                name=src.name,
                first_delay=self.source_restart_delay,
                stopping=self.stop_event.is_set,
                failed=SOURCE_FAILURES.labels(src.name).inc,
            )

    async def _run_service(self, name: str, fn: Service) -> None:
        """Run a service (HTTP, a simulator, a command listener); restart it with backoff if it fails."""
        await supervise(
            fn,
            kind="service",
            name=name,
            first_delay=self.source_restart_delay,
            stopping=self.stop_event.is_set,
            failed=EXTENSION_FAILURES.labels(f"service:{name}").inc,
        )

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
            self._forced = force_exit(self._run_task)
            return
        self.request_stop("SIGINT")

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
        await cancel_and_wait([t for n, ts in self._source_tasks.items() if n in names for t in ts])
        self.sources = [s for s in self.sources if s.name not in names]
        for n in names:
            self._source_tasks.pop(n, None)
            self.source_types.pop(n, None)
            self.started_sources.discard(n)

    async def _stop_sink(self, name: str) -> None:
        task = self._sink_tasks.pop(name, None)
        if task is not None:
            await cancel_and_wait([task])
        for runner in [r for r in self.runners if r.name == name]:
            self.runners.remove(runner)
            with suppress(Exception):
                async with asyncio.timeout(self.cfg.runtime.grace_period):
                    await runner.sink.close()

    async def reload(self) -> ReloadResult:
        """Load the configuration file again and apply what changed (see the module doc)."""
        call_hooks(self.on_reloading, what="reload hook")
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
        call_hooks(self.on_reload, result, what="reload hook")
        return result

    async def _reload(self) -> ReloadResult:
        fresh = await load_fresh(self.loaded.path, self.stop_event.is_set)
        if not isinstance(fresh, LoadedConfig):
            return rejected(self.loaded.path, fresh)
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
