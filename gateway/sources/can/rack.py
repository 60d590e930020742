"""One rack on a CAN bus: its compiled plan, its cyclic supervision, its communication state, and the
batches of its windows.

A window's frames are decoded per message id (`MessagePlan.decode_window`) into `Part`s, rows of the
rack's blocks. `take` hands them on as batches of columns: round r holds the r-th row of every block
that has one, blocks in the rack's order, so a window with one frame per message is one batch, and a
batch's key table is one of few (kept in a bounded cache). Stale and comm_loss fill repeat each
block's last clean row with the new quality.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import structlog

from gateway import metrics as core_metrics
from gateway.model import QUALITY_CODE, Batch, DeviceState, DeviceStatus, Keys, Quality, Value
from gateway.sources.can import metrics
from gateway.sources.can.block import Block, Objects, Part
from gateway.sources.can.config import CanSourceConfig
from gateway.sources.can.plan import RackPlan, Window
from gateway.sources.can.signals import F64, I64, U8
from gateway.sources.can.supervision import Supervisor

log = structlog.get_logger("source.can")
SHAPES_MAX = 512  # key tables of rounds remembered per rack (by the blocks they hold)


@dataclass(slots=True)
class Rows:
    """A block's rows of one batch round after round (the parts of a window joined), with their times."""

    block: Block
    values: F64
    quality: U8
    objects: Objects | None
    ts: I64


def _merge(parts: list[Part]) -> Rows:
    if len(parts) == 1:
        p = parts[0]
        return Rows(p.block, p.values, p.quality, p.objects, np.full(len(p.values), p.ts, dtype=np.int64))
    objects: Objects = {}
    at = 0
    for p in parts:
        if p.objects:
            objects.update({(at + i, c): v for (i, c), v in p.objects.items()})
        at += len(p.values)
    return Rows(
        parts[0].block,
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.quality for p in parts]),
        objects or None,
        np.concatenate([np.full(len(p.values), p.ts, dtype=np.int64) for p in parts]),
    )


class Rack:
    """One rack on a bus: its plan, its supervision, its state, and the rows not yet handed on."""

    def __init__(self, cfg: CanSourceConfig, plan: RackPlan, comm_loss_timeout: float) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.plan = plan
        limits = {k: m.cycle * m.stale_after for k, m in plan.messages.items() if m.cycle}
        self.supervisor = Supervisor(limits, comm_loss_timeout, time.monotonic())
        self.state = DeviceState.STARTING
        self.parts: list[Part] = []
        self.held: list[Batch] = []  # batches a cancelled emit did not hand on
        self.statuses: list[DeviceStatus] = []  # every change since the last batch, in order
        self.decoded = 0
        self.j1939 = plan.table.j1939
        self.seen: dict[int, None] = {}  # keys of the frames of this window that decoded (in order)
        self.last: dict[int, Part] = {}  # block index -> its last clean row (one row)
        self._shapes: OrderedDict[tuple[int, ...], Keys] = OrderedDict()

    def set_state(self, state: DeviceState, reason: str, ts: int) -> None:
        if state == self.state:
            return
        if state == DeviceState.OFFLINE:
            log.warning("device offline", source=self.name, reason=reason)
        elif state == DeviceState.DEGRADED:
            log.warning("device degraded", source=self.name, reason=reason)
        elif self.state != DeviceState.STARTING:
            log.info("device online", source=self.name)
        self.state = state
        answering = state in (DeviceState.ONLINE, DeviceState.DEGRADED)
        core_metrics.device_online.labels(self.name).set(1 if answering else 0)
        self.statuses.append(DeviceStatus(self.name, state, reason, ts))

    def add(self, key: int, window: Window) -> None:
        """A window's frames of one message: rows kept for the next batch, the message heard."""
        self.parts += window.parts
        self.decoded += window.decoded
        for part in window.parts:
            if part.last_ok >= 0:
                i = part.last_ok
                objects = {(0, c): v for (r, c), v in part.objects.items() if r == i} if part.objects else None
                self.last[part.block.index] = Part(
                    part.block, part.values[i : i + 1], part.quality[i : i + 1], objects or None, part.ts
                )
        if window.heard:
            self.seen[key] = None

    def heard(self, now: float, ts: int) -> None:
        """The frames of one window (keys in `seen`) arrived at `now`: supervision, and back online."""
        seen = self.supervisor.seen
        for key in self.seen:
            seen(key, now)
        self.seen.clear()
        if self.state in (DeviceState.STARTING, DeviceState.OFFLINE):
            self.set_state(DeviceState.ONLINE, "", ts)

    def _repeat(self, quality: Quality, ts: int, key: int | None = None) -> None:
        """Each block's last clean row again (of one message key, or all), with `quality`."""
        code = QUALITY_CODE[quality]
        for part in self.last.values():
            if key is None or part.block.key == key:
                q = np.full_like(part.quality, code)
                self.parts.append(Part(part.block, part.values, q, part.objects, ts))

    def supervise(self, now: float, ts: int) -> None:
        verdict = self.supervisor.check(now)
        for key in verdict.stale:
            metrics.stale.labels(self.name, self.plan.messages[key].name).inc()
            self._repeat(Quality.STALE, ts, key)
        if verdict.comm_loss is True:
            self.set_state(DeviceState.OFFLINE, "no frames: every cyclic message stopped", ts)
            self._repeat(Quality.COMM_LOSS, ts)
        elif verdict.comm_loss is False:
            self.set_state(DeviceState.ONLINE, "", ts)
        if self.state in (DeviceState.ONLINE, DeviceState.DEGRADED):
            stale = self.supervisor.stale
            if stale:  # answering, but some cyclic messages stopped
                names = sorted(self.plan.messages[k].name for k in stale)
                more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                self.set_state(DeviceState.DEGRADED, f"stale: {', '.join(names[:3])}{more}", ts)
            else:
                self.set_state(DeviceState.ONLINE, "", ts)

    def take(self, ts: int) -> list[Batch]:
        """What to hand on: a batch per status change, then the rounds of the rows (see the module)."""
        held, self.held = self.held, []
        if not self.parts and not self.statuses:
            return held
        rounds = self._rounds(ts)
        statuses: list[DeviceStatus | None] = list(self.statuses) or [None]
        out = [Batch(self.name, device=self.name, status=st, created=ts) for st in statuses[:-1]]
        if rounds:
            rounds[0].status = statuses[-1]
        else:
            rounds = [Batch(self.name, device=self.name, status=statuses[-1], created=ts)]
        self.parts, self.statuses = [], []
        return held + out + rounds

    def hold(self, batches: list[Batch]) -> None:
        """Batches an emit did not hand on (cancelled): first in line at the next `take`."""
        self.held = batches + self.held

    def _rounds(self, created: int) -> list[Batch]:
        by_block: dict[int, list[Part]] = {}
        for part in self.parts:
            by_block.setdefault(part.block.index, []).append(part)
        merged = [_merge(parts) for _, parts in sorted(by_block.items())]
        out: list[Batch] = []
        r = 0
        while merged:
            merged = [p for p in merged if len(p.values) > r]
            if not merged:
                break
            out.append(self._round(merged, r, created))
            r += 1
        return out

    def _round(self, parts: list[Rows], r: int, created: int) -> Batch:
        shape = tuple(p.block.index for p in parts)
        keys = self._shapes.get(shape)
        if keys is None:
            keys = self._shapes[shape] = Keys.of(k for p in parts for k in p.block.rows)
            if len(self._shapes) > SHAPES_MAX:
                self._shapes.popitem(last=False)
        objects: dict[int, Value] = {}
        at = 0
        for p in parts:
            if p.objects:
                objects.update({at + c: v for (i, c), v in p.objects.items() if i == r})
            at += p.block.width
        return Batch(
            self.name,
            keys,
            np.repeat(np.array([p.ts[r] for p in parts], dtype=np.int64), [p.block.width for p in parts]),
            np.concatenate([p.values[r] for p in parts]),
            np.concatenate([p.quality[r] for p in parts]),
            objects=objects or None,
            device=self.name,
            created=created,
        )
