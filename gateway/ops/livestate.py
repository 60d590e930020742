"""The live state behind the status page: the latest reading of every point, device states, active alarms.

`LiveState` is a runtime observer: it sees every committed batch and keeps, per point (rack,
quantity, module, cell), the newest sample; per device, its last `DeviceStatus`; per rack, the
active alarms of the last ALARM record `{"type": "active", "rack": ..., "active": [...]}`. It does
no I/O; `snapshot()` turns it into plain JSON-ready data.

A batch with a `Layout` costs nothing per sample: only the newest batch of each layout is kept
(pending), and its samples go into `points` (keys prepared once per layout) when a view is asked
for, at most every `FLUSH_EVERY` seconds otherwise (so superseded samples are let go), or before a
batch without a layout that may touch the same racks (so the newest sample of a point always wins).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.model import Batch, BatchKind, Layout, Sample

PointKey = tuple[str, str, int | None, int | None]  # rack, quantity, module, cell
FLUSH_EVERY = 10.0  # seconds between folding pending layout batches into `points` when no view asks
MAX_LAYOUTS = 4096  # prepared layouts kept (the oldest are prepared again when seen again)

# Rack-level quantities shown in the rack overview, in this order.
OVERVIEW = (
    "soc",
    "rack_voltage",
    "rack_current",
    "cell_voltage_min",
    "cell_voltage_max",
    "cell_temperature_max",
)


@dataclass(slots=True)
class DeviceInfo:
    state: str = "starting"
    reason: str = ""
    since: int = 0  # ns: when the state last changed
    last_batch: int = 0  # ns: newest batch with samples
    samples: int = 0
    racks: set[str] = field(default_factory=set)


def json_value(value: object) -> object:
    """A sample value as JSON allows it (NaN and infinities become strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def age_seconds(now: int, ts: int) -> float:
    return round(max(0, now - ts) / 1e9, 3)


def alarm_severity(alarm: object) -> str:
    if isinstance(alarm, dict):
        return str(alarm.get("severity", "unknown"))
    return "unknown"


class LayoutPoints:
    """A layout's point keys in sample order and its racks, prepared once."""

    __slots__ = ("keys", "racks")

    def __init__(self, layout: Layout) -> None:
        self.keys: tuple[PointKey, ...] = tuple((k[2], k[0], k[3], k[4]) for k in layout.keys)
        self.racks = frozenset(k[2] for k in layout.keys)


class LiveState:
    """Observer of committed batches (see module doc)."""

    def __init__(self) -> None:
        self._points: dict[PointKey, Sample] = {}
        self._layouts: dict[int, LayoutPoints] = {}  # by layout id
        self._pending: dict[int, tuple[LayoutPoints, list[Sample]]] = {}  # newest batch per layout id
        self._pending_racks: set[str] = set()
        self._flushed = time.monotonic()
        self.devices: dict[str, DeviceInfo] = {}  # by device (a rack's BMS, a Modbus unit, a CAN bus)
        self.sources: dict[str, DeviceInfo] = {}  # by source (samples and last batch only)
        self.alarms: dict[str, list[Any]] = {}
        self.batches = 0
        self.samples = 0

    def __call__(self, batches: list[Batch]) -> None:
        for batch in batches:
            self.batches += 1
            if batch.kind == BatchKind.ALARM:
                self._alarm_records(batch.records)
            if batch.status is not None:
                st = batch.status
                dev = self.devices.setdefault(st.device or batch.source, DeviceInfo())
                if dev.state != st.state or not dev.since:
                    dev.since = st.ts or batch.created
                dev.state, dev.reason = str(st.state), st.reason
            if batch.samples:
                self._samples(batch)

    @property
    def points(self) -> dict[PointKey, Sample]:
        """The newest sample of every point."""
        self._flush()
        return self._points

    def _flush(self) -> None:
        points = self._points
        for entry, samples in self._pending.values():
            points.update(zip(entry.keys, samples, strict=True))
        self._pending.clear()
        self._pending_racks.clear()
        self._flushed = time.monotonic()

    def _prepared(self, layout: Layout) -> LayoutPoints:
        entry = self._layouts.get(layout.id)
        if entry is None:
            if len(self._layouts) >= MAX_LAYOUTS:
                self._flush()  # pending entries refer to prepared layouts by id
                self._layouts.clear()
            entry = self._layouts[layout.id] = LayoutPoints(layout)
        return entry

    def _samples(self, batch: Batch) -> None:
        layout = batch.layout
        if layout is not None and len(layout.keys) == len(batch.samples):
            entry = self._prepared(layout)
            self._pending[layout.id] = (entry, batch.samples)
            self._pending_racks |= entry.racks
            racks: set[str] | frozenset[str] = entry.racks
            if time.monotonic() - self._flushed >= FLUSH_EVERY:
                self._flush()
        else:
            racks = {s.rack for s in batch.samples}
            if not self._pending_racks.isdisjoint(racks):
                self._flush()  # a pending layout batch is older than this one: it goes first
            points = self._points
            for s in batch.samples:
                points[(s.rack, s.quantity, s.module, s.cell)] = s
        n = len(batch.samples)
        for info in (self.devices.setdefault(batch.device or batch.source, DeviceInfo()),
                     self.sources.setdefault(batch.source, DeviceInfo())):  # fmt: skip
            info.last_batch = max(info.last_batch, batch.created)
            info.samples += n
            info.racks |= racks
        self.samples += n

    def _alarm_records(self, records: Iterable[dict[str, object]]) -> None:
        for rec in records:
            if rec.get("type") != "active":
                continue
            rack = str(rec.get("rack", ""))
            active = rec.get("active")
            self.alarms[rack] = list(active) if isinstance(active, list) else []

    def forget_device(self, device: str) -> None:
        """A source removed by a reload: drop its entries (its last points stay, ageing)."""
        self.devices.pop(device, None)
        self.sources.pop(device, None)

    def device_rows(self, now: int) -> list[dict[str, object]]:
        return [
            {
                "device": name,
                "state": dev.state,
                "reason": dev.reason,
                "since": dev.since,
                "racks": sorted(dev.racks),
                "age_s": age_seconds(now, dev.last_batch) if dev.last_batch else None,
            }
            for name, dev in sorted(self.devices.items())
        ]

    # -- views ------------------------------------------------------------------------------------

    def alarm_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for active in self.alarms.values():
            for alarm in active:
                sev = alarm_severity(alarm)
                counts[sev] = counts.get(sev, 0) + 1
        return counts

    def rack_names(self) -> list[str]:
        racks = {k[0] for k in self.points} | {r for r, a in self.alarms.items() if a}
        for dev in self.devices.values():
            racks |= dev.racks
        return sorted(r for r in racks if r)

    def rack_device(self, rack: str) -> tuple[str, DeviceInfo] | None:
        for name, dev in self.devices.items():
            if rack in dev.racks:
                return name, dev
        return None

    def racks(self, now: int) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        points = self.points
        for rack in self.rack_names():
            found = self.rack_device(rack)
            entry: dict[str, object] = {
                "rack": rack,
                "device": found[0] if found else "",
                "state": found[1].state if found else "unknown",
                "reason": found[1].reason if found else "",
                "age_s": age_seconds(now, found[1].last_batch) if found and found[1].last_batch else None,
                "alarms": len(self.alarms.get(rack, [])),
            }
            for q in OVERVIEW:
                s = points.get((rack, q, None, None))
                entry[q] = None if s is None else json_value(s.value)
            out.append(entry)
        return out

    def active_alarms(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for rack in sorted(self.alarms):
            for alarm in self.alarms[rack]:
                item = dict(alarm) if isinstance(alarm, dict) else {"name": str(alarm)}
                item.setdefault("rack", rack)
                out.append({k: json_value(v) for k, v in item.items()})
        return out

    def point_rows(self, now: int, rack: str | None = None) -> list[list[object]]:
        """[rack, quantity, module, cell, value, unit, quality, age_s], sorted by rack, module, cell, quantity."""
        points = self.points
        keys = [k for k in points if rack is None or k[0] == rack]
        keys.sort(key=lambda k: (k[0], k[2] is not None, k[2] or 0, k[3] is not None, k[3] or 0, k[1]))
        rows: list[list[object]] = []
        for key in keys:
            s = points[key]
            value, age = json_value(s.value), age_seconds(now, s.ts)
            rows.append([key[0], key[1], key[2], key[3], value, s.unit, str(s.quality), age])
        return rows
