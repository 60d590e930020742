"""The Modbus poller: one task per link (a TCP or TLS endpoint host:port, an RTU-over-TCP converter, a
serial RTU bus); its unit ids share the one connection or line in turn, one request at a time.

Read-only by construction: the only client calls are the four read functions (codes 1-4), chosen
from `READ_FUNCTION_CODES`, and the framer's trace hook refuses to let any other function code leave
the process (`framing`). Every reply is checked against its request there too.

A lost connection costs no device a cycle by itself: a drop noticed between cycles is reconnected
before the next request, one during a read is reconnected at once for the read's retry. A device
whose cycle still could not be read has a failed cycle, as after a timeout, and goes offline after
`offline_after` of them in a row (the on-delay of its `comm_loss`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from gateway.model import DeviceState, Quality
from gateway.runtime.backoff import Backoff
from gateway.sources.base import SourceContext
from gateway.sources.modbus import metrics, sunspec
from gateway.sources.modbus.cycle import Cycle
from gateway.sources.modbus.device import ILLEGAL_ADDRESS, DeviceRun, Outcome
from gateway.sources.modbus.framing import RejectedReply, WriteRefused
from gateway.sources.modbus.link import ConnectionLost, Link
from gateway.sources.modbus.plan import READ_FUNCTION_CODES, Block
from gateway.sources.modbus.replies import BAD_CRC
from gateway.sources.modbus.schedule import first_due
from gateway.sources.modbus.transport import LinkSettings

log = structlog.get_logger("source.modbus")

# Called with every block outcome (recording): device, block, outcome.
ResponseHook = Callable[[DeviceRun, Block, Outcome], None]

__all__ = ["ConnectionLost", "ModbusEndpoint", "ResponseHook", "WriteRefused"]

TIMED_OUT = Outcome(0, error="timeout")  # what a read is before its first attempt ends


class ModbusEndpoint:
    """Polls every device behind one host:port (or on one serial port) over one connection."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: list[DeviceRun],
        on_response: ResponseHook | None = None,
        base_dir: Path | None = None,
    ) -> None:
        """`host`, `port`: where a network link goes (a serial link's port is its first device's);
        `base_dir`: the configuration's directory (relative TLS file paths)."""
        self.devices = devices
        self.settings = LinkSettings.of(devices[0].cfg, base_dir)
        cfgs = [d.cfg for d in devices]
        self.timeout = max(c.timeout for c in cfgs)
        self.reconnect_initial = min(c.reconnect_initial for c in cfgs)
        self.reconnect_max = max(c.reconnect_max for c in cfgs)
        self.pause_after_connect = max(c.pause_after_connect for c in cfgs)
        self.pause_between = max(c.pause_between_requests for c in cfgs)
        self.close_after_cycle = any(c.close_after_cycle for c in cfgs)
        self.on_response = on_response
        self.gate: asyncio.Event | None = None  # when set by a co-started simulator: wait before connecting
        self.phase = 0.0  # fraction of a device slot this endpoint's devices start later (see first_due)
        self.connect_due = 0.0  # monotonic time of the next connect attempt while disconnected
        self.move(host, port)

    def move(self, host: str, port: int) -> None:
        """Point a network endpoint elsewhere before it runs (the demo's simulator on a free port)."""
        self.host, self.port = host, port
        if not self.settings.serial:
            self.settings = self.settings.moved(host, port)
        self.label = self.settings.label
        self.name = f"modbus@{self.label}"
        backoff = Backoff(self.reconnect_initial, self.reconnect_max)  # reset by the link's first answer
        self.link = Link(host, port, self.timeout, self.pause_after_connect, backoff, self.settings)

    @property
    def sent(self) -> int:
        """Requests sent (all read function codes)."""
        return self.link.sent

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, ctx: SourceContext) -> None:
        devices = [d.name for d in self.devices]
        log.info("modbus endpoint started", endpoint=self.label, transport=self.settings.transport, devices=devices)
        ctx.started()
        if self.gate is not None:
            await self.gate.wait()
        now = time.monotonic()
        together = self.close_after_cycle  # one connection per cycle of all devices: start them together
        for k, d in enumerate(self.devices):
            d.start(now if together else first_due(now, d.shortest_interval, k + self.phase, len(self.devices)))
        try:
            while True:
                if not await self._connected(ctx):
                    continue
                try:
                    polled = await self._cycle(ctx)
                except ConnectionLost as exc:
                    self.link.drop(str(exc))
                    continue
                if polled and self.close_after_cycle:
                    self.link.close()
                await self._sleep_until(self._next_due())
        finally:
            self.link.close()
            log.info("modbus endpoint stopped", endpoint=self.label, requests=self.sent)

    async def _connected(self, ctx: SourceContext) -> bool:
        """Whether the endpoint has a connection, opening one when it has none (at once after a drop,
        then with jittered backoff). Without one, the devices that came due miss their cycle, and
        this waits until the next device or connect attempt is due."""
        if self.link.client is not None:
            if self.link.connected:
                return True
            self.link.drop("closed by the device")  # noticed between cycles: nothing was lost yet
        if time.monotonic() >= self.connect_due:
            outage = self.link.up is False
            if await self.link.connect():
                self.connect_due = 0.0
                for d in self.devices if outage else ():  # offline devices: probed on the new connection now
                    d.probe_due = 0.0
                return True
            self.connect_due = time.monotonic() + self.link.backoff.next_delay()
            log.debug("modbus reconnect", endpoint=self.label, delay=round(self.connect_due - time.monotonic(), 3))
        await self._missed(ctx, "no connection to the endpoint")
        await self._sleep_until(min(self.connect_due, self._next_due()))
        return False

    def _next_due(self) -> float:
        return min(d.next_time() for d in self.devices)

    async def _sleep_until(self, when: float) -> None:
        delay = when - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _missed(self, ctx: SourceContext, reason: str) -> None:
        """The devices due now miss this cycle (the endpoint has no connection)."""
        now = time.monotonic()
        for dev in self.devices:
            intervals = dev.due_intervals(now)
            if not intervals:
                continue
            batch = dev.missed(intervals, reason)
            if batch is not None:
                await ctx.emit(batch)
            dev.advance(intervals, time.monotonic())

    async def _cycle(self, ctx: SourceContext) -> bool:
        """Poll every device that is due, in turn. Returns whether anything was polled."""
        polled = False
        for dev in self.devices:
            now = time.monotonic()
            intervals = dev.due_intervals(now)
            if not intervals:
                continue
            try:
                if dev.may_probe(now):
                    polled = True
                    await self._poll_device(ctx, dev, intervals)
            finally:  # a cycle cut short by a lost connection is over too
                dev.advance(intervals, time.monotonic())
        return polled

    async def _poll_device(self, ctx: SourceContext, dev: DeviceRun, intervals: list[float]) -> None:
        """One cycle of one device, emitted as one batch. An offline device is first probed with one
        request, no retries. Values already read when the device stops answering or the connection
        is lost are emitted, not lost; the blocks it missed are `stale`."""
        cycle = Cycle()
        if dev.needs_discovery:
            if await self._discover(dev) is None:
                batch = dev.cycle_batch(None, answered=False, reason="no answer during SunSpec discovery")
                if batch is not None:
                    await ctx.emit(batch)
                return
            intervals = list(dev.blocks)
        blocks = dev.blocks_for(intervals)
        probing = dev.state == DeviceState.OFFLINE
        answered, done, reason = False, 0, ""  # done: blocks of the cycle read or left out so far
        lost: ConnectionLost | None = None
        try:
            for block in blocks:
                if not probing and dev.skip_bad(block):
                    cycle.lost(dev.decoder(block), time.time_ns(), Quality.BAD)
                    done += 1
                    continue
                outcome = await self._read(dev, block, retries=0 if probing else dev.cfg.retries)
                if not outcome.answered:
                    reason = outcome.error or f"exception {outcome.code}"
                    break
                answered, probing, done = True, False, done + 1
                await self._resolve(dev, block, outcome, cycle)
        except ConnectionLost as exc:
            lost, reason = exc, f"connection lost: {exc}"
        dev.lost(cycle, blocks[done:], time.time_ns())
        batch = dev.cycle_batch(cycle, answered, reason)
        if batch is not None and (batch.n or batch.status is not None):
            await ctx.emit(batch)
        if lost is not None:
            raise lost

    async def _discover(self, dev: DeviceRun) -> bool | None:
        """Read the SunSpec chain and extend the device's plan. None when the device did not answer."""
        answered = False

        async def read(address: int, count: int) -> list[int] | None:
            nonlocal answered
            outcome = await self._read(dev, Block("holding", address, count, dev.default_interval), dev.cfg.retries)
            answered = answered or outcome.answered
            return [int(w) for w in outcome.words] if outcome.words is not None else None

        models = await sunspec.discover(read, dev.profile.sunspec_bases)
        if not answered:
            return None
        dev.needs_discovery = False
        if not models:
            log.error("no SunSpec marker found", device=dev.name, bases=dev.profile.sunspec_bases)
            return False
        found = sunspec.points_from_models(models, dev.default_interval)
        dev.set_points(dev.explicit + found)
        log.info(
            "SunSpec models discovered",
            device=dev.name,
            models=[(m.model_id, m.address) for m in models],
            points=len(found),
            reads=sum(len(b) for b in dev.blocks.values()),
        )
        return True

    async def _resolve(self, dev: DeviceRun, block: Block, outcome: Outcome, cycle: Cycle) -> None:
        """Add a block's columns to the cycle; an illegal-address failure splits it and reads the
        halves now."""
        if outcome.code == ILLEGAL_ADDRESS and len(block.points) > 1:
            for half in dev.split(block):
                res = await self._read(dev, half, retries=dev.cfg.retries)
                if not res.answered:  # the device went away mid-split: mark the half bad this cycle
                    res = Outcome(res.ts, code=res.code, error=res.error)
                await self._resolve(dev, half, res, cycle)
            return
        if outcome.code == ILLEGAL_ADDRESS:
            dev.mark_bad(block.points[0], ILLEGAL_ADDRESS)
        dev.take(cycle, block, outcome)

    async def _read(self, dev: DeviceRun, block: Block, retries: int) -> Outcome:
        """Read one block, with retries on timeout; a retry after a lost connection goes out on a new
        one, opened at once. Raises ConnectionLost when the connection is gone and no retry is left or
        it cannot be opened again."""
        fc = block.function_code
        if fc not in READ_FUNCTION_CODES:  # defence in depth: a plan can only hold reads
            raise WriteRefused(f"function code {fc} is not a read")
        outcome = TIMED_OUT  # (every attempt sets its own)
        for attempt in range(retries + 1):
            if self.pause_between and self.sent:
                await asyncio.sleep(self.pause_between)
            try:
                rr = await self.link.read(dev.unit_id, fc, block.start, block.count, dev.cfg.timeout)
            except ConnectionLost as exc:
                metrics.errors.labels(dev.name, "connection").inc()
                self.link.drop(str(exc))
                if attempt < retries and await self.link.connect():
                    continue
                raise
            except ModbusException as exc:
                metrics.errors.labels(dev.name, "bad_response").inc()
                outcome = Outcome(time.time_ns(), error=f"bad response: {exc}")
                continue
            if rr is None:
                metrics.errors.labels(dev.name, "timeout").inc()
                outcome = Outcome(time.time_ns(), error="timeout")
                continue
            outcome = self._outcome(dev, block, rr)
            if outcome.mismatch == BAD_CRC and attempt < retries:
                continue  # damaged on the line: asked again (counted, and the outcome if the last)
            break
        if self.on_response is not None:
            self.on_response(dev, block, outcome)
        return outcome

    @staticmethod
    def _outcome(dev: DeviceRun, block: Block, rr: ModbusPDU) -> Outcome:
        """The outcome of a response (its arrival time is its values' timestamp); errors counted."""
        ts = time.time_ns()
        if isinstance(rr, RejectedReply):
            kind = rr.mismatch.kind
            metrics.errors.labels(dev.name, kind).inc()
            return Outcome(ts, mismatch=kind, error=rr.mismatch.detail)
        if rr.isError():
            metrics.errors.labels(dev.name, f"exception_{rr.exception_code}").inc()
            return Outcome(ts, code=int(rr.exception_code))
        if block.function_code in (1, 2):
            return Outcome(ts, words=list(rr.bits[: block.count]))
        return Outcome(ts, words=rr.registers)  # an array from `wire`
