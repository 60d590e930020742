"""The pipeline: the bounded source queue → processors → a group commit to the outbox → observers,
then the sink runners are told there is more to deliver.

A group is what arrived within one commit interval, up to `commit_max_samples`; between groups the
event loop is free for the sources and sinks. A processor or observer that raises is counted and
logged and costs no data: the batches are stored regardless.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence

import structlog
from prometheus_client import Counter, Gauge, Histogram

from gateway import metrics
from gateway.model import Batch
from gateway.runtime.batchqueue import BatchQueue
from gateway.runtime.supervise import EXTENSION_FAILURES, name_of
from gateway.sinks.runner import SinkRunner
from gateway.store.outbox import Outbox

log = structlog.get_logger("runtime")

Processor = Callable[[list[Batch]], list[Batch]]  # returns extra batches (e.g. alarm events) to store
Observer = Callable[[list[Batch]], None]  # sees every committed batch (live status, metrics)

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


class Pipeline:
    """Queue → processors → outbox → observers → sink runners, for the life of one Runtime.

    `runners` is the Runtime's own list (a reload adds and removes runners in it)."""

    def __init__(self, queue: BatchQueue, outbox: Outbox, runners: Sequence[SinkRunner]) -> None:
        self.queue = queue
        self.outbox = outbox
        self.runners = runners
        self.processors: list[Processor] = []
        self.observers: list[Observer] = []
        self.commit_max_samples = COMMIT_MAX_SAMPLES
        self._queue_full_logged = -QUEUE_FULL_LOG_EVERY  # monotonic time of the last "queue full" line

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

    def emit_now(self, batch: Batch) -> None:
        """Queue a record batch the gateway made (alarm transitions) at once, past the bound: it keeps
        its place after what was journaled before it and ahead of what a later commit journals."""
        self.queue.put_now(batch)

    async def run(self, commit_interval: float) -> None:
        """Take batches from the queue and group-commit them until the end marker (`None`)."""
        done = False
        last = -math.inf  # monotonic time the last group commit began
        while not done:
            first = await self.queue.get()
            if first is None:
                break
            # Paced, not delayed: a batch after a quiet spell is committed at once; under a steady stream
            # the commits are `commit_interval` apart, each with what came meanwhile.
            batches, done = await self._gather(first, last + commit_interval)
            last = time.monotonic()
            QUEUE_SAMPLES.set(self.queue.samples)
            self.commit(batches)
            await asyncio.sleep(0)  # the sources and sinks run between group commits

    async def _gather(self, first: Batch, deadline: float) -> tuple[list[Batch], bool]:
        """The group that starts with `first`: what comes before `deadline`, up to `commit_max_samples`;
        and whether the end marker came."""
        batches = [first]
        samples = len(first)
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
                return batches, True
            batches.append(item)
            samples += len(item)
        return batches, False

    def commit(self, batches: list[Batch]) -> None:
        """One group commit: processors, the outbox append, observers; then wake the sink runners."""
        t0 = time.perf_counter()
        self._commit_step(batches)
        PIPELINE_STEP.observe(time.perf_counter() - t0)

    def _commit_step(self, batches: list[Batch]) -> None:
        # Alarm transitions queued since the group was gathered were journaled before what this group's
        # processing journals: they are stored with it, ahead of that (each rack's events in journal order).
        batches = batches + self.queue.take_now()
        extra: list[Batch] = []
        for process in self.processors:
            try:
                extra.extend(process(batches))
            except Exception:  # a bug in a processor must not cost the data: it is stored regardless
                EXTENSION_FAILURES.labels(name_of(process)).inc()
                log.exception("processor failed; batches stored without its output", processor=name_of(process))
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
                EXTENSION_FAILURES.labels(name_of(observe)).inc()
                log.exception("observer failed", observer=name_of(observe))
        for runner in self.runners:
            runner.notify()
