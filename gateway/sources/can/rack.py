"""One rack on a CAN bus: its compiled plan, its cyclic supervision, its communication state, and the
batch of each window.

A window's frames are decoded per message id (`MessagePlan.decode_window`) into `Part`s: a row per
frame, each row one block's points. `take` hands them on as one batch, in rounds: round r holds the
r-th row of every block that has one, blocks in the rack's order. When the window's last round is a
single round of fewer blocks than the others (the window ended inside a cycle), it waits for the next
window, where its rows are round 0 (a round waits once, one window at most): a window of a cyclic bus
is then whole cycles whatever its phase, and the key tables are few (kept in a bounded cache), so
every consumer prepares its work per table once. Stale and comm_loss fill repeat each block's last
clean row with the new quality.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import structlog

from gateway import metrics as core_metrics
from gateway.model import QUALITY_CODE, Batch, DeviceState, DeviceStatus, Key, Keys, Quality, Value
from gateway.sources.can import metrics
from gateway.sources.can.block import Part
from gateway.sources.can.config import CanSourceConfig
from gateway.sources.can.devicetime import TimeLog
from gateway.sources.can.plan import RackPlan, Window
from gateway.sources.can.signals import F64, I64
from gateway.sources.can.supervision import Supervisor

log = structlog.get_logger("source.can")
SHAPES_MAX = 512  # key tables of rounds remembered per rack (by the blocks they hold)


@dataclass(frozen=True, slots=True)
class Last:
    """A block's last clean row: what stale and comm_loss fill repeat."""

    values: F64  # the block's columns
    objects: dict[int, Value] | None  # by column


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
        self.carried: list[Part] = []  # the last round of the previous window, first in the next one
        self.held: list[Batch] = []  # batches a cancelled emit did not hand on
        self.statuses: list[DeviceStatus] = []  # every change since the last batch, in order
        self.decoded = 0
        self.j1939 = plan.table.j1939
        self.seen: dict[int, None] = {}  # keys of the frames of this window that decoded (in order)
        self.last: dict[int, Last] = {}  # block index -> its last clean row
        self._shapes: OrderedDict[tuple[int, ...], Keys] = OrderedDict()
        self.time_log = TimeLog(self.name)  # a message's device time turning invalid, and valid again

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
            self._keep_last(part)
        if window.heard:
            self.seen[key] = None
        rule = self.plan.messages[key].time_rule
        if window.times is not None and rule is not None:
            self.time_log.update(self.plan.messages[key].name, rule.signal, window.times)

    def _keep_last(self, part: Part) -> None:
        rows = np.flatnonzero(part.clean)[::-1]
        if not len(rows):
            return
        blocks, first = np.unique(part.blocks[rows], return_index=True)  # each block's last clean row
        by_row: dict[int, dict[int, Value]] = {}
        for (i, c), v in (part.objects or {}).items():
            by_row.setdefault(i, {})[c] = v
        for b, i in zip(blocks.tolist(), rows[first].tolist(), strict=True):
            self.last[b] = Last(part.values[i].copy(), by_row.get(i))

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
        blocks = self.plan.blocks
        for b, last in self.last.items():
            if key is None or blocks[b].key == key:
                objects = {(0, c): v for c, v in last.objects.items()} if last.objects else None
                q = np.full((1, len(last.values)), code, dtype=np.uint8)
                one = np.array([b], dtype=np.intp)
                self.parts.append(Part(one, last.values[None, :], q, objects, np.array([ts]), np.zeros(1, dtype=bool)))

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

    def take(self, ts: int, *, flush: bool = False) -> list[Batch]:
        """What to hand on: a batch per status change, then the window's rows as one batch (see the
        module); with `flush`, the round kept for the next window too."""
        held, self.held = self.held, []
        if not self.parts and not self.statuses and not self.carried:
            return held
        rows = self._rounds(ts, flush)
        statuses: list[DeviceStatus | None] = list(self.statuses) or [None]
        out = [Batch(self.name, device=self.name, status=st, created=ts) for st in statuses[:-1]]
        if rows is None:
            rows = Batch(self.name, device=self.name, created=ts)
        rows.status = statuses[-1]
        self.parts, self.statuses = [], []
        if rows.n or rows.status is not None:
            out.append(rows)
        return held + out

    def hold(self, batches: list[Batch]) -> None:
        """Batches an emit did not hand on (cancelled): first in line at the next `take`."""
        self.held = batches + self.held

    def _rounds(self, created: int, flush: bool) -> Batch | None:
        """The rows as one batch of rounds (see the module), a few array steps for the whole window; the
        last round waits for the next window when it is one round of fewer blocks than the others."""
        parts, self.carried = self.carried + self.parts, []
        if not parts:
            return None
        blocks = np.concatenate([p.blocks for p in parts])
        n = len(blocks)
        widths = np.concatenate([np.full(len(p.blocks), p.values.shape[1], dtype=np.intp) for p in parts])
        sizes = np.cumsum([0] + [p.values.size for p in parts])[:-1]
        starts = np.concatenate(
            [at + np.arange(len(p.blocks)) * p.values.shape[1] for at, p in zip(sizes, parts, strict=True)]
        )  # each row's first point in the parts' columns, end to end
        by_block = np.argsort(blocks, kind="stable")  # arrival order within a block
        sb = blocks[by_block]
        first = np.flatnonzero(np.concatenate(([True], sb[1:] != sb[:-1])))
        counts = np.diff(np.append(first, n))
        rank = np.arange(n) - np.repeat(first, counts)  # the round of each row
        in_rounds = np.lexsort((sb, rank))
        order = by_block[in_rounds]  # rows by round, then by block
        levels = np.unique(counts).tolist()  # round r holds the blocks with more than r rows
        cut = n
        if not flush and len(levels) > 1 and levels[-1] - levels[-2] == 1:  # (a kept row has round 0: kept once)
            cut = int(np.searchsorted(rank[in_rounds], levels[-2]))
            self.carried = _rows_of(parts, order[cut:])
            levels.pop()
        order = order[:cut]
        width = widths[order]
        at = np.concatenate(([0], np.cumsum(width)))  # each row's first point in the batch
        take = np.repeat(starts[order] - at[:-1], width) + np.arange(at[-1])
        present = sb[first]
        shape: list[int] = []
        r = 0
        for level in levels:
            shape += [*present[counts >= level].tolist(), r - level]  # the blocks, and (negative) their rounds
            r = level
        return Batch(
            self.name,
            self._keys(tuple(shape)),
            np.repeat(np.concatenate([p.ts for p in parts])[order], width),
            np.concatenate([p.values.ravel() for p in parts])[take],
            np.concatenate([p.quality.ravel() for p in parts])[take],
            _device_ts(parts, order, width),
            objects=_objects(parts, order, at),
            device=self.name,
            created=created,
        )

    def _keys(self, shape: tuple[int, ...]) -> Keys:
        """The key table of a shape: runs of block indexes, each followed by minus its rounds (cached)."""
        keys = self._shapes.get(shape)
        if keys is None:
            blocks = self.plan.blocks
            rows: list[Key] = []
            run: list[int] = []
            for b in shape:
                if b >= 0:
                    run.append(b)
                else:
                    rows += [k for i in run for k in blocks[i].rows] * -b
                    run = []
            keys = self._shapes[shape] = Keys.of(rows)
            if len(self._shapes) > SHAPES_MAX:
                self._shapes.popitem(last=False)
        else:
            self._shapes.move_to_end(shape)
        return keys


def _rows_of(parts: list[Part], rows: npt.NDArray[np.intp]) -> list[Part]:
    """These rows (numbered through the parts end to end) as parts, in arrival order."""
    out = []
    base = 0
    for p in parts:
        mine = np.sort(rows[(rows >= base) & (rows < base + len(p.blocks))]) - base
        if len(mine):
            objects = None
            if p.objects:
                new = {int(i): j for j, i in enumerate(mine.tolist())}
                objects = {(new[i], c): v for (i, c), v in p.objects.items() if i in new} or None
            dts = None if p.device_ts is None else p.device_ts[mine]
            out.append(Part(p.blocks[mine], p.values[mine], p.quality[mine], objects, p.ts[mine], p.clean[mine], dts))
        base += len(p.blocks)
    return out


def _device_ts(parts: list[Part], order: npt.NDArray[np.intp], width: npt.NDArray[np.intp]) -> I64 | None:
    """Each point's device time (0: none), from its row's; None when no row has one."""
    if all(p.device_ts is None for p in parts):
        return None
    rows = [np.zeros(len(p.blocks), dtype=np.int64) if p.device_ts is None else p.device_ts for p in parts]
    return np.repeat(np.concatenate(rows)[order], width)


def _objects(parts: list[Part], order: npt.NDArray[np.intp], at: npt.NDArray[np.intp]) -> dict[int, Value] | None:
    """The values that are not numbers, by point index in the batch (rows past `order` are left out)."""
    if not any(p.objects for p in parts):
        return None
    where = np.full(sum(len(p.blocks) for p in parts), -1, dtype=np.intp)
    where[order] = np.arange(len(order))  # row -> its place in the batch
    out: dict[int, Value] = {}
    base = 0
    for p in parts:
        for (i, c), v in (p.objects or {}).items():
            row = int(where[base + i])
            if row >= 0:
                out[int(at[row]) + c] = v
        base += len(p.blocks)
    return out or None
