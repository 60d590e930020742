"""The live state behind the status page: the latest reading of every point, device states, active alarms.

`LiveState` is a runtime observer: it sees every committed batch and keeps, per point (rack,
quantity, module, cell), the newest sample; per device, its last `DeviceStatus`; per rack, the
active alarms of the last ALARM record `{"type": "active", "rack": ..., "active": [...]}`. It does
no I/O; `snapshot()` turns it into plain JSON-ready data.

A batch with a `Layout` costs nothing per sample and holds no sample twice: the newest batch of each
layout (by digest: the same points) stands for its points, and views merge them over the points of
batches without a layout. Before a batch without a layout that may touch the same racks, the layout
batches of those racks are folded into the points first, so the newest sample of a point always wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any

from gateway.model import Batch, BatchKind, Layout, Sample

PointKey = tuple[str, str, int | None, int | None]  # rack, quantity, module, cell
MAX_LAYOUTS = 4096  # racks of layouts remembered (by layout id; the oldest are computed again)
MAX_LAYOUT_SAMPLES = 400_000  # samples of the newest layout batches kept apart; past it the oldest are folded
_point_key = itemgetter(2, 0, 3, 4)  # a layout key (quantity, unit, rack, module, cell) → its PointKey

# Rack-level quantities shown in the rack overview, in this order.
OVERVIEW = (
    "soc",
    "rack_voltage",
    "rack_current",
    "cell_voltage_min",
    "cell_voltage_max",
    "cell_temperature_max",
)


class Kept:
    """The newest batch of a layout as the columns that vary (time, value, quality, device time):
    about a quarter of the memory of its Sample tuples; samples are made again when a view asks."""

    __slots__ = ("device_ts", "n", "qualities", "ts", "values")

    def __init__(self, samples: list[Sample]) -> None:
        self.n = len(samples)
        cols = tuple(zip(*samples, strict=True)) if samples else ((),) * 9
        self.ts, self.values, self.qualities = cols[0], cols[2], cols[4]
        dts = cols[8]
        self.device_ts: tuple[int | None, ...] | None = None if dts.count(None) == self.n else dts

    def sample(self, layout: Layout, i: int) -> Sample:
        k = layout.keys[i]
        dts = None if self.device_ts is None else self.device_ts[i]
        return _new(Sample, (self.ts[i], k[0], self.values[i], k[1], self.qualities[i], k[2], k[3], k[4], dts))

    def samples(self, layout: Layout) -> list[Sample]:
        dts = repeat(None, self.n) if self.device_ts is None else self.device_ts
        return [
            _new(Sample, (t, k[0], v, k[1], q, k[2], k[3], k[4], d))
            for k, t, v, q, d in zip(layout.keys, self.ts, self.values, self.qualities, dts, strict=True)
        ]


_new = tuple.__new__


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


class LiveState:
    """Observer of committed batches (see module doc)."""

    def __init__(self) -> None:
        self._points: dict[PointKey, Sample] = {}
        # The newest batch of each layout by digest, oldest first: (layout, samples, racks).
        self._latest: dict[str, tuple[Layout, Kept, frozenset[str]]] = {}
        self._latest_samples = 0
        self._latest_racks: dict[str, int] = {}  # rack → how many of the kept layout batches have it
        self._racks: dict[int, frozenset[str]] = {}  # by layout id
        self._rack_level_index: dict[int, tuple[int, ...]] = {}  # by layout id: indices of rack-level keys
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
        """The newest sample of every point (a new dict: the layout batches merged over the rest)."""
        if not self._latest:
            return self._points
        merged = dict(self._points)
        for layout, kept, _racks in self._latest.values():
            merged.update(zip(map(_point_key, layout.keys), kept.samples(layout), strict=True))
        return merged

    def rack_points(self) -> dict[PointKey, Sample]:
        """The newest sample of every rack-level point (no module, no cell): what the rack overview
        shows, without making the samples of every cell again."""
        merged = {k: s for k, s in self._points.items() if k[2] is None and k[3] is None}
        for layout, kept, _racks in self._latest.values():
            for i in self._rack_level(layout):
                k = layout.keys[i]
                merged[(k[2], k[0], None, None)] = kept.sample(layout, i)
        return merged

    def _rack_level(self, layout: Layout) -> tuple[int, ...]:
        found = self._rack_level_index.get(layout.id)
        if found is None:
            if len(self._rack_level_index) >= MAX_LAYOUTS:
                self._rack_level_index.clear()
            found = tuple(i for i, k in enumerate(layout.keys) if k[3] is None and k[4] is None)
            self._rack_level_index[layout.id] = found
        return found

    def _layout_racks(self, layout: Layout) -> frozenset[str]:
        racks = self._racks.get(layout.id)
        if racks is None:
            if len(self._racks) >= MAX_LAYOUTS:
                self._racks.clear()
            racks = self._racks[layout.id] = frozenset(k[2] for k in layout.keys)
        return racks

    def _keep_latest(self, layout: Layout, samples: list[Sample], racks: frozenset[str]) -> None:
        digest = layout.digest
        self._drop_latest(digest)  # re-inserted at the end: the dict's order is the batches' order
        self._latest[digest] = (layout, Kept(samples), racks)
        self._latest_samples += len(samples)
        for rack in racks:
            self._latest_racks[rack] = self._latest_racks.get(rack, 0) + 1
        while self._latest_samples > MAX_LAYOUT_SAMPLES and len(self._latest) > 1:
            self._fold(next(iter(self._latest)))

    def _drop_latest(self, digest: str) -> tuple[Layout, Kept, frozenset[str]] | None:
        old = self._latest.pop(digest, None)
        if old is not None:
            self._latest_samples -= old[1].n
            for rack in old[2]:
                left = self._latest_racks[rack] - 1
                if left:
                    self._latest_racks[rack] = left
                else:
                    del self._latest_racks[rack]
        return old

    def _fold(self, digest: str) -> None:
        """Move a kept layout batch into the points (it is older than every batch kept after it)."""
        old = self._drop_latest(digest)
        if old is not None:
            self._points.update(zip(map(_point_key, old[0].keys), old[1].samples(old[0]), strict=True))

    def _samples(self, batch: Batch) -> None:
        layout = batch.layout
        if layout is not None and len(layout.keys) == len(batch.samples):
            layout_racks = self._layout_racks(layout)
            self._keep_latest(layout, batch.samples, layout_racks)
            racks: set[str] | frozenset[str] = layout_racks
        else:
            racks = {s.rack for s in batch.samples}
            if not racks.isdisjoint(self._latest_racks):
                for digest in [d for d, (_l, _s, r) in self._latest.items() if not r.isdisjoint(racks)]:
                    self._fold(digest)  # older than this batch: folded first, so this one wins
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
        racks = {k[0] for k in self._points} | set(self._latest_racks) | {r for r, a in self.alarms.items() if a}
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
        points = self.rack_points()
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
