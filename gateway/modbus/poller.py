"""The Modbus TCP poller: one task per endpoint (host:port); its unit ids share one connection in turn.

Read-only by construction: the only client calls are the four read functions (codes 1-4), chosen
from `FUNCTION_CODES`, and a trace hook refuses to let any other function code leave the process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from gateway.modbus import metrics, sunspec
from gateway.modbus.cycle import Cycle
from gateway.modbus.device import ILLEGAL_ADDRESS, DeviceRun, Outcome
from gateway.modbus.plan import READ_FUNCTION_CODES, Block
from gateway.modbus.schedule import backoff_delay, first_due
from gateway.modbus.wire import FAST_RESPONSES
from gateway.model import Batch, DeviceState, Quality
from gateway.sources.base import SourceContext

log = structlog.get_logger("source.modbus")

# Called with every block outcome (recording): device, block, outcome.
ResponseHook = Callable[[DeviceRun, Block, Outcome], None]


class WriteRefused(AssertionError):
    """A non-read function code was about to be sent: a bug, never allowed toward a BMS."""


def _read_only(sending: bool, pdu: Any) -> Any:
    if sending and pdu.function_code not in READ_FUNCTION_CODES:
        raise WriteRefused(f"refusing to send Modbus function code {pdu.function_code}: the gateway only reads")
    return pdu


class ConnectionLost(Exception):
    pass


def _cancelled_meanwhile() -> None:
    """Raise the cancellation of the current task if a read swallowed it. pymodbus awaits responses
    with `asyncio.wait_for`, which on Python 3.11 returns the result instead of raising when the task
    is cancelled in the loop turn the response arrives (CPython gh-86296): the endpoint would then
    poll on and never stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _request_timeout(client: AsyncModbusTcpClient, seconds: float) -> None:
    """Each device's own response timeout on the shared connection. pymodbus keeps one timeout per
    client (its transaction manager's comm_params); without that attribute the endpoint's applies."""
    params = getattr(getattr(client, "ctx", None), "comm_params", None)
    if params is not None and hasattr(params, "timeout_connect"):
        params.timeout_connect = seconds


class ModbusEndpoint:
    """Polls every device behind one host:port over one connection."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: list[DeviceRun],
        on_response: ResponseHook | None = None,
        *,
        fast: bool = True,
    ) -> None:
        """`fast=False` decodes with pymodbus's own response classes and point by point (the
        reference for tests and benchmarks); by default registers come from `wire` and decoders take
        runs of them at once."""
        self.host, self.port = host, port
        self.devices = devices
        self.name = f"modbus@{host}:{port}"
        self.label = f"{host}:{port}"
        cfgs = [d.cfg for d in devices]
        self.timeout = max(c.timeout for c in cfgs)
        self.backoff_initial = min(c.backoff_initial for c in cfgs)
        self.backoff_max = max(c.backoff_max for c in cfgs)
        self.pause_after_connect = max(c.pause_after_connect for c in cfgs)
        self.pause_between = max(c.pause_between_requests for c in cfgs)
        self.close_after_cycle = any(c.close_after_cycle for c in cfgs)
        self.on_response = on_response
        self.client: AsyncModbusTcpClient | None = None
        self.sent = 0  # requests sent (all read function codes)
        self.gate: asyncio.Event | None = None  # when set by a co-started simulator: wait before connecting
        self.phase = 0.0  # fraction of a device slot this endpoint's devices start later (see first_due)
        self.fast = fast
        for d in devices:
            d.fast = fast
        self._requests = {fc: metrics.requests.labels(self.label, str(fc)) for fc in READ_FUNCTION_CODES}
        self._latency = metrics.latency.labels(self.label)

    def move(self, host: str, port: int) -> None:
        """Point the endpoint elsewhere before it runs (the demo's simulator on a free port)."""
        self.host, self.port = host, port
        self.name, self.label = f"modbus@{host}:{port}", f"{host}:{port}"
        self._requests = {fc: metrics.requests.labels(self.label, str(fc)) for fc in READ_FUNCTION_CODES}
        self._latency = metrics.latency.labels(self.label)

    # -- connection -----------------------------------------------------------------------------

    async def _connect(self) -> bool:
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,  # reconnects are ours: jittered backoff, see run()
            reconnect_delay_max=0,
            trace_pdu=_read_only,
        )
        if self.fast:
            for response in FAST_RESPONSES:
                client.register(response)
        ok = await client.connect()
        metrics.connects.labels(self.label, "ok" if ok else "failed").inc()
        if not ok:
            client.close()
            return False
        self.client = client
        if self.pause_after_connect:
            await asyncio.sleep(self.pause_after_connect)
        return True

    def _close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, ctx: SourceContext) -> None:
        log.info("modbus endpoint started", endpoint=self.label, devices=[d.name for d in self.devices])
        ctx.started()
        if self.gate is not None:
            await self.gate.wait()
        now = time.monotonic()
        together = self.close_after_cycle  # one connection per cycle of all devices: start them together
        for k, d in enumerate(self.devices):
            d.start(now if together else first_due(now, d.shortest_interval, k + self.phase, len(self.devices)))
        attempt = 0
        try:
            while True:
                if self.client is None:
                    if not await self._connect():
                        await self._all_offline(ctx, "connection refused or unreachable")
                        delay = backoff_delay(attempt, self.backoff_initial, self.backoff_max)
                        attempt += 1
                        log.debug("modbus reconnect", endpoint=self.label, delay=round(delay, 3))
                        await asyncio.sleep(delay)
                        continue
                    if attempt:
                        log.info("modbus endpoint reconnected", endpoint=self.label, attempts=attempt)
                    attempt = 0
                try:
                    polled = await self._cycle(ctx)
                except ConnectionLost as exc:
                    self._close()
                    await self._all_offline(ctx, f"connection lost: {exc}")
                    continue
                if polled and self.close_after_cycle:
                    self._close()
                await self._sleep_until_due()
        finally:
            self._close()
            log.info("modbus endpoint stopped", endpoint=self.label, requests=self.sent)

    async def _sleep_until_due(self) -> None:
        nxt = min(d.next_time() for d in self.devices)
        delay = nxt - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _cycle(self, ctx: SourceContext) -> bool:
        """Poll every device that is due, in turn. Returns whether anything was polled."""
        polled = False
        for dev in self.devices:
            now = time.monotonic()
            intervals = dev.due_intervals(now)
            if not intervals:
                continue
            if dev.may_probe(now):
                polled = True
                await self._poll_device(ctx, dev, intervals)
            dev.advance(intervals, time.monotonic())
        return polled

    async def _all_offline(self, ctx: SourceContext, reason: str) -> None:
        for d in self.devices:
            batch = d.offline_batch(reason)
            if batch is not None:
                await ctx.emit(batch)

    async def _poll_device(self, ctx: SourceContext, dev: DeviceRun, intervals: list[float]) -> None:
        """One cycle of one device, emitted as one batch. An offline device is first probed with one
        request, no retries. Samples already read when the connection drops are emitted, not lost."""
        cycle = Cycle()
        batch: Batch | None = None
        if dev.needs_discovery:
            if await self._discover(dev) is None:
                batch = dev.cycle_batch(None, answered=False, reason="no answer during SunSpec discovery")
                if batch is not None:
                    await ctx.emit(batch)
                return
            intervals = list(dev.blocks)
        blocks = dev.blocks_for(intervals)
        probing = dev.state == DeviceState.OFFLINE
        answered_any = False
        i = 0
        try:
            for i, block in enumerate(blocks):
                if not probing and dev.skip_bad(block):
                    cycle.quality(dev.decoder(block), time.time_ns(), dev.rack, Quality.BAD)
                    continue
                outcome = await self._read(dev, block, retries=0 if probing else dev.cfg.retries)
                if not outcome.answered:
                    if not answered_any:
                        reason = outcome.error or f"exception {outcome.code}"
                        batch = dev.cycle_batch(None, answered=False, reason=reason)
                        return
                    # It answered part of the cycle: keep what it gave, the rest is comm_loss this time.
                    dev.lost(cycle, blocks[i:], outcome.ts)
                    break
                answered_any = True
                probing = False
                await self._resolve(dev, block, outcome, cycle)
            batch = dev.cycle_batch(cycle, answered=True)
        except ConnectionLost:
            if cycle.samples:
                dev.lost(cycle, blocks[i:], time.time_ns())
                batch = dev.cycle_batch(cycle, answered=True)
            raise
        finally:
            if batch is not None and (batch.samples or batch.status is not None):
                await ctx.emit(batch)

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
        """Add a block's samples to the cycle; an illegal-address failure splits it and reads the
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
        """Read one block, with retries on timeout. Raises ConnectionLost when the socket is gone."""
        client = self.client
        if client is None:
            raise ConnectionLost("not connected")
        fc = block.function_code
        if fc not in READ_FUNCTION_CODES:  # defence in depth: a plan can only hold reads
            raise WriteRefused(f"function code {fc} is not a read")
        call = {1: client.read_coils, 2: client.read_discrete_inputs, 3: client.read_holding_registers}.get(
            fc, client.read_input_registers
        )
        _request_timeout(client, dev.cfg.timeout)
        outcome = Outcome(time.time_ns(), error="timeout")
        for _ in range(retries + 1):
            if self.pause_between and self.sent:
                await asyncio.sleep(self.pause_between)
            self.sent += 1
            self._requests[fc].inc()
            t0 = time.perf_counter()
            try:
                rr = await call(block.start, count=block.count, device_id=dev.unit_id)
            except ConnectionException as exc:
                metrics.errors.labels(dev.name, "connection").inc()
                raise ConnectionLost(str(exc)) from exc
            except ModbusIOException:
                metrics.errors.labels(dev.name, "timeout").inc()
                if not client.connected:
                    raise ConnectionLost("no response; connection closed") from None
                outcome = Outcome(time.time_ns(), error="timeout")
                continue
            except ModbusException as exc:
                metrics.errors.labels(dev.name, "bad_response").inc()
                outcome = Outcome(time.time_ns(), error=f"bad response: {exc}")
                continue
            _cancelled_meanwhile()
            ts = time.time_ns()  # the response arrival time is the samples' timestamp
            self._latency.observe(time.perf_counter() - t0)
            if rr.isError():
                outcome = Outcome(ts, code=int(rr.exception_code))
                metrics.errors.labels(dev.name, f"exception_{outcome.code}").inc()
            elif fc in (1, 2):
                outcome = Outcome(ts, words=list(rr.bits[: block.count]))
            else:  # a list of ints from `wire`, a copy of pymodbus's own
                words = rr.registers
                outcome = Outcome(ts, words=words if type(words) is list else list(words))
            break
        if self.on_response is not None:
            self.on_response(dev, block, outcome)
        return outcome
