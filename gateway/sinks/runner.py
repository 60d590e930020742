"""The sink runner: the shared delivery policy, written once for every sink.

It reads its sink's cursor in the outbox, batches rows by size and age, writes, acknowledges only
what the sink confirmed, backs off with jitter while the server is down (honouring `Retry-After`),
and catches up in order when it returns. Each sink has its own runner and cursor, so a sink that is
down never holds back the others.

Latency and throughput: a partial batch waits at most `batch_max_age` seconds for more rows; a full
batch (a backlog after an outage) is written at once, one after the other, at full speed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator, Sequence

import structlog

from gateway import metrics
from gateway.alarms.gatewayalarm import GatewayAlarms, sink_auth_failed
from gateway.config.base import SinkBase
from gateway.errors import SinkError
from gateway.runtime.backoff import Backoff
from gateway.sinks.base import Rejected, Sink, SinkAuthError
from gateway.sinks.config import UplinkSinkBase
from gateway.sinks.exceptionfilter import ExceptionFilter
from gateway.store.outbox import Outbox, Row

log = structlog.get_logger("sink")

METRICS_EVERY = 1.0  # seconds between pending/lag refreshes while idle
METRICS_MIN_GAP = 0.5  # during a backlog drain, pending/lag (a scan of the backlog) at most this often
RETRY_AFTER_MAX = 3600.0  # a server's Retry-After is honoured up to an hour


def batch_wait(samples: int, since_write: float, max_samples: int, max_age: float, draining: bool) -> float:
    """Seconds to wait for more rows before writing what is buffered (0: write now). Writes are paced,
    not delayed: a partial batch waits until `max_age` after the previous write began, so rows that
    come after a quiet spell go at once, and under a steady stream the writes are `max_age` apart, each
    with what came meanwhile. (The buffered rows came after that write began: none waits longer than
    `max_age`.)"""
    if samples >= max_samples or draining:
        return 0.0
    return min(max_age, max(0.0, max_age - since_write))


def retry_delay(backoff: float, retry_after: float | None) -> float:
    """Delay before the next attempt: the server's Retry-After (up to an hour) when it gave one, else
    `backoff`, the jittered delay of gateway.runtime.backoff."""
    if retry_after is not None:
        return min(max(0.0, retry_after), RETRY_AFTER_MAX)
    return backoff


def count(rows: Sequence[Row]) -> int:
    return sum(len(r.batch) for r in rows)


# What a sink that keeps state about its writes takes in at start: the last rows it had delivered.
RESUME_ROWS = 5_000
RESUME_SAMPLES = 100_000


class SinkRunner:
    def __init__(
        self, name: str, sink: Sink, outbox: Outbox, cfg: SinkBase, alarms: GatewayAlarms | None = None
    ) -> None:
        """`alarms`: where the sink's gateway alarm is reported (default: the outbox's)."""
        self.name = name
        self.alarms = alarms if alarms is not None else outbox.alarms
        self.sink = sink
        self.outbox = outbox
        self.cfg = cfg
        self._wake = asyncio.Event()
        self.connected = False
        self.draining = False
        self.failures = 0  # consecutive failed attempts
        self.last_error = ""
        self.delivered = 0
        self.dead_lettered = 0
        self.auth_alarm = False
        rbe = cfg.report_by_exception if isinstance(cfg, UplinkSinkBase) else None
        self.exceptions = None if rbe is None else ExceptionFilter(name, rbe)  # report by exception
        outbox.add_consumer(name)
        self.position = outbox.acked(name)
        self._log = log.bind(sink=name)
        self._buffer: list[Row] = []
        self._refreshed = 0.0
        self._wrote_at = -math.inf  # monotonic time the last write began

    def notify(self) -> None:
        """New rows were committed."""
        self._wake.set()

    def caught_up(self) -> bool:
        return self.position >= self.outbox.last_seq()

    @property
    def suppressed(self) -> int:
        """Samples report by exception did not send, since start."""
        return 0 if self.exceptions is None else self.exceptions.suppressed

    def delivered_tail(self) -> Iterator[Row]:
        """The last rows this sink had delivered (up to RESUME_ROWS rows and RESUME_SAMPLES samples),
        oldest first, read one by one: what a sink with state about its writes takes in at start
        (`Sink.resume`)."""
        first = self.position + 1
        total = 0
        sizes = self.outbox.db.execute(
            "SELECT seq, n FROM batches WHERE seq <= ? ORDER BY seq DESC LIMIT ?", (self.position, RESUME_ROWS)
        )
        for seq, n in sizes:
            total += n
            if total > RESUME_SAMPLES:
                break
            first = seq
        sizes.close()
        for row in self.outbox.query(after_seq=first - 1):
            if row.seq > self.position:
                return
            yield row

    def _resume(self) -> None:
        resume = getattr(self.sink, "resume", None)
        if resume is None or self.position <= 0:
            return
        try:
            series = resume(self.delivered_tail())
        except Exception as exc:  # never a reason not to deliver: the guard starts empty as before
            self._log.warning("could not resume the sink's state from the store", error=str(exc))
            return
        self._log.info("sink state resumed from delivered rows", series=series)

    async def run(self) -> None:
        backoff = Backoff(self.cfg.backoff_initial, self.cfg.backoff_max)
        self.refresh_metrics()
        self._resume()
        while True:
            try:
                if not self.connected:
                    await self.sink.open()
                    self.connected = True
                    metrics.sink_connected.labels(self.name).set(1)
                    if not self.failures:
                        self._log.info("sink connected", pending_samples=self.outbox.pending(self.position).samples)
                rows = await self._next_batch()
                await self._write(rows)
            except SinkError as exc:
                self._buffer = []  # re-read after the pause: the budget may have dropped rows meanwhile
                delay = retry_delay(backoff.next_delay(), exc.retry_after)
                if not exc.retry:
                    delay = max(delay, self.cfg.backoff_max)
                self._failed(exc, delay)
                await self._sleep(delay)
                continue
            backoff.reset()

    async def _next_batch(self) -> list[Row]:
        """Wait for rows and gather them until the batch is full or its oldest row is old enough."""
        while True:
            self._sync_cursor()
            have = count(self._buffer)
            after = self._buffer[-1].seq if self._buffer else self.position
            room = self.cfg.batch_max_samples - have
            if room > 0:
                more = self.outbox.read(after, max_samples=room, at_least_one=not self._buffer)
                self._buffer.extend(more)
                have += count(more)
            if not self._buffer:
                await self._idle(METRICS_EVERY)
                continue
            # Paced from the last write's start (monotonic: a clock step cannot stall it).
            since = time.monotonic() - self._wrote_at
            full = have >= self.cfg.batch_max_samples or (room > 0 and self._backlog_after(self._buffer[-1].seq))
            wait = batch_wait(have, since, self.cfg.batch_max_samples, self.cfg.batch_max_age, self.draining or full)
            if wait <= 0:
                rows, self._buffer = self._buffer, []
                self._wrote_at = time.monotonic()
                return rows
            await self._idle(wait)

    def _backlog_after(self, seq: int) -> bool:
        """More rows than fit are already stored: a backlog, so write now (full-speed drain)."""
        return self.outbox.last_seq() > seq

    def _sync_cursor(self) -> None:
        """The store's budget may have moved the cursor past rows it dropped (counted there)."""
        acked = self.outbox.acked(self.name)
        if acked > self.position:
            self._log.warning("cursor moved by the store budget", from_seq=self.position, to_seq=acked)
            self.position = acked
            self._buffer = [r for r in self._buffer if r.seq > acked]

    async def _idle(self, timeout: float) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can swallow a cancellation
                await self._wake.wait()
        except TimeoutError:
            # Idle: the retention age applies even when nothing new is stored (counted in the outbox).
            self.outbox.enforce_budget()
            self.refresh_metrics()

    async def _sleep(self, delay: float) -> None:
        """Back off; metrics keep moving meanwhile so an outage shows as a growing lag."""
        deadline = time.monotonic() + delay
        while True:
            self.refresh_metrics()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, METRICS_EVERY))

    async def _write(self, rows: list[Row]) -> None:
        self.outbox.hold(self.name, rows[0].seq)
        # Report by exception: the samples to send; they count as sent only once the sink confirmed them.
        out = rows if self.exceptions is None else self.exceptions.apply(rows)
        t0 = time.perf_counter()
        try:
            rejected = await self.sink.write(out) if out else []
        except BaseException:
            if self.exceptions is not None:
                self.exceptions.rollback()
            raise
        finally:
            self.outbox.release(self.name)
        if self.exceptions is not None:
            self.exceptions.commit()
        metrics.sink_write_seconds.labels(self.name).observe(time.perf_counter() - t0)
        metrics.sink_delivery_seconds.labels(self.name).observe(max(0.0, (time.time_ns() - rows[-1].ts) / 1e9))
        last = rows[-1].seq
        if rejected:
            self._dead_letter(rejected)
        self.outbox.ack(self.name, last)
        self.position = last
        n = count(out)  # (what report by exception left out is counted as suppressed, not delivered)
        self.delivered += n
        metrics.sink_delivered.labels(self.name).inc(n)
        metrics.sink_batches.labels(self.name).inc()
        if self.auth_alarm or self.alarms.restored:  # (restored: raised before a restart, maybe by this sink)
            self._auth_alarm(False, "")
        if self.failures:
            self._log.info("sink delivering again", after_failures=self.failures)
            self.failures = 0
            self.last_error = ""
            metrics.sink_connected.labels(self.name).set(1)
        now = time.monotonic()
        if now - self._refreshed >= METRICS_MIN_GAP or self.caught_up():
            self.refresh_metrics()

    def _dead_letter(self, rejected: Sequence[Rejected]) -> None:
        """Keep what the server refused for good, with its reason, so the stream goes on."""
        for r in rejected:
            self.outbox.add_dead_letters(self.name, r.seq, r.status, r.reason, [r.item])
        self.dead_lettered += len(rejected)
        metrics.sink_dead_lettered.labels(self.name).inc(len(rejected))
        first = rejected[0]
        self._log.error(
            "server rejected points; kept in the dead-letter table",
            points=len(rejected),
            status=first.status,
            reason=first.reason,
        )

    def _auth_alarm(self, active: bool, message: str) -> None:
        """The gateway alarm `gateway:sink_auth_failed:<sink>` while the server refuses the credentials
        (reported to the alarm engine; with none, its event row is stored as before)."""
        self.auth_alarm = active
        metrics.sink_auth_failed.labels(self.name).set(1 if active else 0)
        message = message or f"sink {self.name} accepts the credentials again"
        if not self.alarms.set(sink_auth_failed(self.name), active, message):
            return  # no news (a success after a restart, with no alarm of this sink restored)
        events = self.alarms.take_events()
        if events:
            self.outbox.append(events)
        if active:
            self._log.critical("server refuses the gateway's credentials; data kept until fixed", error=message)
        else:
            self._log.info("server accepts the credentials again")

    def _failed(self, exc: SinkError, delay: float) -> None:
        if isinstance(exc, SinkAuthError) and not self.auth_alarm:
            self._auth_alarm(True, f"sink {self.name}: {exc}")
        metrics.sink_retries.labels(self.name).inc()
        metrics.sink_connected.labels(self.name).set(0)
        self.failures += 1
        msg = str(exc)
        if self.failures == 1 or msg != self.last_error or not exc.retry:
            # Logged when the failure starts or changes, not on every retry.
            level = self._log.error if not exc.retry else self._log.warning
            level("sink write failed; data kept, retrying", error=msg, retry_in=round(delay, 2))
        self.last_error = msg
        self.connected = False  # the next attempt opens again (a sink's open() is idempotent)

    def refresh_metrics(self) -> None:
        self._refreshed = time.monotonic()
        _rows, samples, oldest = self.outbox.pending(self.position)
        metrics.sink_pending.labels(self.name).set(samples)
        lag = 0.0 if oldest is None else max(0.0, (time.time_ns() - oldest) / 1e9)
        metrics.sink_lag.labels(self.name).set(lag)

    async def drain(self, timeout: float) -> bool:
        """Write partial batches at once and wait until every committed row is delivered or the timeout passes."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while not self.caught_up() and time.monotonic() < deadline:
            self.notify()
            await asyncio.sleep(0.02)
        return self.caught_up()
