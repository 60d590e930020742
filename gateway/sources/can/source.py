"""The CAN source (`type: can`): one bus shared by every rack on it, decoded with DBC files.

Racks on the same interface and channel share one python-can bus (the builder receives every `can`
instance at once); the bus gets acceptance filters for the frame ids the racks decode. The source
only receives: it never transmits onto a BMS bus. A failed bus is reopened with jittered exponential
backoff; meanwhile its racks are `offline` and nothing crashes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import can
import structlog

from gateway import metrics as core_metrics
from gateway.model import DeviceState
from gateway.runtime.backoff import Backoff
from gateway.sources.base import Source, SourceContext
from gateway.sources.can import metrics
from gateway.sources.can.busmode import SET_ON_THE_INTERFACE, listen_only_note
from gateway.sources.can.checks import bus_key, compile_instance
from gateway.sources.can.config import CanProfile, CanSourceConfig
from gateway.sources.can.decode import BY_SOURCE, ERROR_FRAME, EXTENDED, REMOTE, UNKNOWN_ID, WRONG_SOURCE
from gateway.sources.can.rack import Rack
from gateway.sources.can.reader import BusReader, Frame, open_bus

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

log = structlog.get_logger("source.can")

MAX_UNKNOWN_LABELS = 256
CAN_ERR_BUSOFF = 0x00000040  # error class bit of a SocketCAN error frame (linux/can/error.h)


class CanBusSource:
    """Reads one bus and decodes its frames for every rack on it."""

    def __init__(self, name: str, cfgs: list[CanSourceConfig], racks: list[Rack]) -> None:
        self.name = name
        self.cfg = cfgs[0]
        self.racks = racks
        self.bus_label = f"{self.cfg.interface}:{self.cfg.channel}"
        # frame key -> racks decoding it (usually one); J1939 racks use their own keys
        self.routes: dict[int, list[Rack]] = {}
        self.j1939_racks = [r for r in racks if r.plan.table.j1939]
        for rack in racks:
            if rack.plan.table.j1939:
                continue
            for key in rack.plan.messages:
                self.routes.setdefault(key, []).append(rack)
        self.unknown_ids: set[int] = set()
        self._last_error_log = 0.0
        self._failing = False
        self.frames = 0
        self.produced = 0
        self.bus: can.BusABC | None = None

    def filters(self) -> list[dict[str, Any]] | None:
        if any(r.cfg.accept_all for r in self.racks):
            return None
        out: list[dict[str, Any]] = []
        for rack in self.racks:
            for key in rack.plan.messages:
                ext = bool(key & EXTENDED)
                if rack.plan.table.j1939 and ext:
                    pf = (key >> 16) & 0xFF
                    mask = 0x03FF0000 if pf < 240 else 0x03FFFF00
                    if key & BY_SOURCE:  # a message of one source address: the key holds it
                        mask |= 0xFF
                    elif rack.cfg.source_address is not None:
                        mask |= 0xFF
                        key = key | rack.cfg.source_address
                    out.append({"can_id": key & 0x1FFFFFFF, "can_mask": mask, "extended": True})
                else:
                    out.append({"can_id": key & 0x1FFFFFFF, "can_mask": 0x1FFFFFFF if ext else 0x7FF, "extended": ext})
        return out

    async def run(self, ctx: SourceContext) -> None:
        cfg = self.cfg
        backoff = Backoff(cfg.reconnect_initial, cfg.reconnect_max)
        started = False
        note = listen_only_note(cfg.interface, cfg.channel) if cfg.listen_only else None
        if note is not None:  # once per start, not per reopen
            (log.info if cfg.interface in SET_ON_THE_INTERFACE else log.warning)(
                "CAN bus not opened listen-only by the gateway", bus=self.bus_label, note=note
            )
        try:
            while True:
                reader: BusReader | None = None
                try:
                    self.bus = open_bus(
                        cfg.interface,
                        cfg.channel,
                        bitrate=cfg.bitrate,
                        fd=cfg.fd,
                        port=cfg.port,
                        loopback_only=cfg.loopback_only,
                        filters=self.filters(),
                        listen_only=cfg.listen_only,
                    )
                    reader = BusReader(self.bus, max_buffer=cfg.receive_buffer)
                    reader.start()
                    metrics.bus_up.labels(self.bus_label).set(1)
                    log.info("CAN bus open", bus=self.bus_label, racks=[r.name for r in self.racks])
                    if not started:
                        ctx.started()
                        started = True
                    backoff.reset()
                    self._failing = False
                    await self._read(ctx, reader)
                except (can.CanError, OSError, ValueError, ImportError) as exc:
                    if not started:
                        ctx.started()  # readiness must not wait for a bus that is down
                        started = True
                    await self._bus_failed(ctx, exc, reader)
                    await backoff.sleep()
                    metrics.reconnects.labels(self.bus_label).inc()
                finally:
                    self._close(reader)
        finally:
            log.info("CAN source stopped", bus=self.bus_label, frames=self.frames, produced_samples=self.produced)

    def _close(self, reader: BusReader | None) -> None:
        if reader is not None:
            reader.stop()
            self._count_dropped(reader)
        if self.bus is not None:
            try:
                self.bus.shutdown()
            except Exception as exc:  # shutting down a broken bus may fail too; it is closed either way
                log.debug("bus shutdown failed", bus=self.bus_label, error=str(exc))
            self.bus = None
            metrics.bus_up.labels(self.bus_label).set(0)

    async def _bus_failed(self, ctx: SourceContext, exc: BaseException, reader: BusReader | None) -> None:
        reason = f"CAN bus {self.bus_label} failed: {type(exc).__name__}: {exc}"
        if not self._failing:  # once per outage; the retries log at debug level
            log.warning("CAN bus error; reopening with backoff", bus=self.bus_label, error=str(exc))
        else:
            log.debug("CAN bus still failing", bus=self.bus_label, error=str(exc))
        self._failing = True
        ts = time.time_ns()
        for rack in self.racks:
            rack.set_state(DeviceState.OFFLINE, reason, ts)
        await self._emit(ctx, flush=True)  # a round kept for the next window does not wait for the backoff

    def _count_dropped(self, reader: BusReader) -> None:
        # `reader.dropped` only grows (the receive thread writes it); report the difference
        n = reader.dropped - reader.reported_dropped
        if n > 0:
            reader.reported_dropped += n
            metrics.dropped.labels(self.bus_label).inc(n)
            log.error("CAN frames dropped: receive buffer full", bus=self.bus_label, frames=n)

    async def _read(self, ctx: SourceContext, reader: BusReader) -> None:
        cfg = self.cfg
        tick = min(r.supervisor.next_check_in() for r in self.racks)
        next_check = time.monotonic() + tick
        try:
            while True:
                wait = max(0.01, next_check - time.monotonic())
                if any(r.carried for r in self.racks):  # a round kept for this window waits one window at most
                    wait = min(wait, cfg.batch_window)
                frames = await reader.batch(cfg.batch_window, cfg.batch_max_frames, wait)
                if frames:
                    self._decode(frames)
                self._count_dropped(reader)
                now = time.monotonic()
                if now >= next_check:
                    ts = time.time_ns()
                    for rack in self.racks:
                        rack.supervise(now, ts)
                    next_check = now + tick
                await self._emit(ctx)
        except asyncio.CancelledError:
            await self._drain(ctx, reader)
            raise

    async def _drain(self, ctx: SourceContext, reader: BusReader) -> None:
        """At shutdown: decode and hand on what was already received (the pipeline is still running)."""
        reader.stop()
        left = list(reader.buffer)
        reader.buffer.clear()
        if left:
            self._decode(left)
        await self._emit(ctx, flush=True)
        if left:
            log.info("CAN frames received before the stop were stored", bus=self.bus_label, frames=len(left))

    def _decode(self, frames: list[Frame]) -> None:
        """One window: frames grouped by id in arrival order, each group decoded at once per rack."""
        ts = time.time_ns()
        now = time.monotonic()
        errors: Counter[tuple[int, str]] = Counter()
        bus_off = False
        unknown: Counter[int] = Counter()
        routes = self.routes
        groups: dict[int, list[bytes]] = {}  # frame key -> the data of its frames
        j1939: dict[tuple[int, int, int], list[bytes]] = {}  # (J1939 rack, key, id) -> the data of its frames
        for aid, ext, is_error, remote, data, _dlc, _fd, _t in frames:
            if is_error:
                errors[(aid, ERROR_FRAME)] += 1
                if aid & CAN_ERR_BUSOFF:
                    bus_off = True
                continue
            key = (aid & 0x1FFFFFFF) | EXTENDED if ext else aid & 0x7FF
            group = None if remote else groups.get(key)
            if group is not None:
                group.append(data)
                continue
            racks = routes.get(key)
            if racks is None:
                if not (self.j1939_racks and ext and self._j1939(aid, data, remote, errors, j1939)):
                    unknown[key] += 1
            elif remote:
                errors[(aid, REMOTE)] += len(racks)
            else:
                groups[key] = [data]
        for key, datas in groups.items():
            for rack in routes[key]:
                self._window(rack, key, key & 0x1FFFFFFF, datas, ts, errors)
        for (i, key, aid), datas in j1939.items():
            self._window(self.j1939_racks[i], key, aid, datas, ts, errors)
        self.frames += len(frames)
        metrics.frames.labels(self.bus_label).inc(len(frames))
        for rack in self.racks:
            if rack.seen:
                rack.heard(now, ts)  # once per window: the same `now` for every frame of it
            if rack.decoded:
                metrics.decoded.labels(self.bus_label, rack.name).inc(rack.decoded)
                rack.decoded = 0
        if bus_off:
            for rack in self.racks:
                rack.set_state(DeviceState.OFFLINE, f"CAN controller bus-off on {self.bus_label}", ts)
        n_err = sum(n for (_, reason), n in errors.items() if reason == ERROR_FRAME)
        if n_err and now - self._last_error_log > 10.0:
            self._last_error_log = now
            log.warning("CAN error frames on the bus", bus=self.bus_label, frames=n_err, bus_off=bus_off)
        for (aid, reason), n in errors.items():
            metrics.errors.labels(self.bus_label, f"0x{aid:X}", reason).inc(n)
        for key, n in unknown.items():
            if key not in self.unknown_ids and len(self.unknown_ids) < MAX_UNKNOWN_LABELS:
                self.unknown_ids.add(key)
                log.info("CAN frame id not decoded by any profile", bus=self.bus_label, id=f"0x{key & 0x1FFFFFFF:X}")
            label = f"0x{key & 0x1FFFFFFF:X}" if key in self.unknown_ids else "other"
            metrics.unknown.labels(self.bus_label, label).inc(n)
            metrics.errors.labels(self.bus_label, label, UNKNOWN_ID).inc(n)

    @staticmethod
    def _window(rack: Rack, key: int, aid: int, datas: list[bytes], ts: int, errors: Counter[tuple[int, str]]) -> None:
        window = rack.plan.messages[key].decode_window(datas, ts)
        rack.add(key, window)
        for reason, n in window.reasons.items():
            errors[(aid, reason)] += n

    def _j1939(
        self,
        aid: int,
        data: bytes,
        remote: bool,
        errors: Counter[tuple[int, str]],
        groups: dict[tuple[int, int, int], list[bytes]],
    ) -> bool:
        """A 29-bit frame to every J1939 rack that reads it; False if no rack knows its PGN (an unknown
        id). A known PGN from a source address no rack reads is counted once as wrong_source_address."""
        known = False
        read = False
        for i, rack in enumerate(self.j1939_racks):
            key = rack.plan.key(aid, True)
            route = rack.plan.route(key, aid, True, remote)
            if route == UNKNOWN_ID:
                continue
            known = True
            if route == WRONG_SOURCE:
                continue
            read = True
            if isinstance(route, str):
                errors[(aid, route)] += 1
            else:
                groups.setdefault((i, key, aid), []).append(data)
        if known and not read:
            errors[(aid, WRONG_SOURCE)] += 1
        return known

    async def _emit(self, ctx: SourceContext, *, flush: bool = False) -> None:
        ts = time.time_ns()
        for rack in self.racks:
            batches = rack.take(ts, flush=flush)
            for i, batch in enumerate(batches):
                try:
                    await ctx.emit(batch)
                except asyncio.CancelledError:  # not handed on: keep them for the drain at shutdown
                    rack.hold(batches[i:])
                    raise
                n = batch.n
                if n:
                    self.produced += n
                    core_metrics.samples_produced.labels(rack.name).inc(n)


def build(cfgs: Sequence[CanSourceConfig], loaded: LoadedConfig) -> list[Source]:
    groups: dict[tuple[str, str, int | None], list[CanSourceConfig]] = {}
    for cfg in cfgs:
        groups.setdefault(bus_key(cfg), []).append(cfg)
    out: list[Source] = []
    for (interface, channel, _port), group in groups.items():
        racks = []
        for cfg in group:
            plan = compile_instance(loaded, cfg)
            profile = loaded.profiles[cfg.profile]
            assert isinstance(profile, CanProfile)
            racks.append(Rack(cfg, plan, profile.comm_loss_timeout))
        name = group[0].name if len(group) == 1 else f"can:{interface}:{channel}"
        out.append(CanBusSource(name, group, racks))
    return out
