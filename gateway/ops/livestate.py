"""The live state behind the status page: the latest reading of every point, device states, active alarms.

`LiveState` is a runtime observer: it sees every committed batch and keeps, per point (rack,
quantity, module, cell), the newest reading; per device, its last `DeviceStatus`; per rack, the
active alarms of the last ALARM record `{"type": "active", "rack": ..., "active": [...]}`. It does
no I/O; `snapshot()` turns it into plain JSON-ready data.

A batch costs nothing per point and holds no reading twice: the newest batch of each key table (by
digest: the same points) stands for its points, kept in the order the batches came, so a view that
merges them oldest first gives each point its newest reading. Past `MAX_KEPT_POINTS` the oldest
kept batches are folded into a dict of samples (older than every batch still kept).
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from gateway.keys import distinct_keys
from gateway.model import QUALITIES, Batch, BatchKind, Keys, Sample


class PointKey(NamedTuple):
    """Which point a sample is: the live state's key (hashable, one per point)."""

    rack: str
    quantity: str
    module: int | None
    cell: int | None


MAX_KEPT_POINTS = 400_000  # points of the newest batches kept apart; past it the oldest are folded

# Rack-level quantities shown in the rack overview, in this order.
OVERVIEW = (
    "soc",
    "rack_voltage",
    "rack_current",
    "cell_voltage_min",
    "cell_voltage_max",
    "cell_temperature_max",
)


@dataclass(frozen=True, slots=True)
class Shape:
    """What the live state needs of a key table, prepared once per table."""

    racks: frozenset[str]
    rack_level: npt.NDArray[np.intp]  # indices of the points without module and cell


_SHAPES: weakref.WeakKeyDictionary[Keys, Shape] = weakref.WeakKeyDictionary()  # bounded by the live tables


def shape(keys: Keys) -> Shape:
    found = _SHAPES.get(keys)
    if found is None:
        distinct, number = distinct_keys(keys)  # (a CAN window's table repeats its keys)
        level = np.asarray([k.module is None and k.cell is None for k in distinct], dtype=bool)
        found = _SHAPES[keys] = Shape(frozenset(k.rack for k in distinct), np.flatnonzero(level[number]))
    return found


def point_keys(keys: Keys) -> list[PointKey]:
    """The live state's key of every point of a table, made when asked (kept per table, they were a
    tuple per point for as long as the table lived: 100,000 of them on a 100-rack site)."""
    return [PointKey(k.rack, k.quantity, k.module, k.cell) for k in keys.rows]


def samples_at(batch: Batch, index: npt.NDArray[np.intp]) -> list[Sample]:
    """The points at `index` of a batch as samples (a few points: no table of its own)."""
    rows = batch.keys.rows
    ts, values, quality = batch.ts[index].tolist(), batch.values[index].tolist(), batch.quality[index].tolist()
    dts = [0] * len(ts) if batch.device_ts is None else batch.device_ts[index].tolist()
    objects = batch.objects or {}
    out = []
    for j, i in enumerate(index.tolist()):
        k = rows[i]
        v = objects[i] if i in objects else None if values[j] != values[j] else values[j]
        q = QUALITIES[quality[j]]
        out.append(Sample(ts[j], k.quantity, v, k.unit, q, k.rack, k.module, k.cell, dts[j] or None))
    return out


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
        self._points: dict[PointKey, Sample] = {}  # folded: older than every kept batch
        self._latest: OrderedDict[str, Batch] = OrderedDict()  # the newest batch of each key table, oldest first
        self._latest_points = 0
        self._latest_racks: dict[str, int] = {}  # rack → how many of the kept batches have it
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
            if batch.n:
                self._samples(batch)

    @property
    def points(self) -> dict[PointKey, Sample]:
        """The newest sample of every point (a new dict: the kept batches merged over the folded points)."""
        if not self._latest:
            return self._points
        merged = dict(self._points)
        for b in self._latest.values():
            merged.update(zip(point_keys(b.keys), b.samples(), strict=True))
        return merged

    def rack_points(self) -> dict[PointKey, Sample]:
        """The newest sample of every rack-level point (no module, no cell): what the rack overview
        shows, without making the samples of every cell."""
        merged = {k: s for k, s in self._points.items() if k.module is None and k.cell is None}
        for b in self._latest.values():
            index = shape(b.keys).rack_level
            merged.update((PointKey(s.rack, s.quantity, None, None), s) for s in samples_at(b, index))
        return merged

    def _keep_latest(self, batch: Batch, racks: frozenset[str]) -> None:
        digest = batch.keys.digest
        self._drop_latest(digest)  # re-inserted at the end: the order is the batches' order
        self._latest[digest] = batch
        self._latest_points += batch.n
        for rack in racks:
            self._latest_racks[rack] = self._latest_racks.get(rack, 0) + 1
        while self._latest_points > MAX_KEPT_POINTS and len(self._latest) > 1:
            self._fold(next(iter(self._latest)))

    def _drop_latest(self, digest: str) -> Batch | None:
        old = self._latest.pop(digest, None)
        if old is not None:
            self._latest_points -= old.n
            for rack in shape(old.keys).racks:
                left = self._latest_racks[rack] - 1
                if left:
                    self._latest_racks[rack] = left
                else:
                    del self._latest_racks[rack]
        return old

    def _fold(self, digest: str) -> None:
        """Move a kept batch into the points (it is older than every batch kept after it)."""
        old = self._drop_latest(digest)
        if old is not None:
            self._points.update(zip(point_keys(old.keys), old.samples(), strict=True))

    def _samples(self, batch: Batch) -> None:
        racks = shape(batch.keys).racks
        self._keep_latest(batch, racks)
        n = batch.n
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
                s = points.get(PointKey(rack, q, None, None))
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
        keys = [k for k in points if rack is None or k.rack == rack]
        keys.sort(
            key=lambda k: (k.rack, k.module is not None, k.module or 0, k.cell is not None, k.cell or 0, k.quantity)
        )
        rows: list[list[object]] = []
        for key in keys:
            s = points[key]
            value, age = json_value(s.value), age_seconds(now, s.ts)
            rows.append([key.rack, key.quantity, key.module, key.cell, value, s.unit, str(s.quality), age])
        return rows
