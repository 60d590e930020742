"""A sink's report-by-exception filter: the rule of gateway.sinks.exception over outbox rows, as a transaction.

`apply(rows)` gives the rows to write (each samples batch cut to the samples that are sent) and remembers
what it would send as sent; the runner then calls `commit()` when the sink confirmed the write, or
`rollback()` when it failed, which puts the last sent samples back as they were: a failed write never
makes the uplink skip a value, and a retry of the same rows sends the same samples. The state lives in
memory: after a start (or a restart of the sink on reload) the first sample of every key is sent.

Per key table (a batch shape) the filter keeps a plan: the slot of each point's key and the rounds
(the r-th sample of each key in the batch). Rows of alarm events and status records pass as they are;
a samples row cut to nothing is left out (kept when it carries a device status change).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import structlog
from prometheus_client import Counter as PromCounter

from gateway import metrics
from gateway.lru import LruCache
from gateway.model import Batch, BatchKind, Key, Keys, Value
from gateway.sinks.config import ReportByException
from gateway.sinks.exception import Bools, Index, LastSent, Patterns, Saved, decide, object_changes
from gateway.store.outbox import Row

log = structlog.get_logger("sink")

suppressed_samples = PromCounter(
    "bms_gateway_sink_suppressed_samples",
    "Samples report by exception did not send to a sink (within the deadband, heartbeat not due)",
    ["sink", "quantity"],
    registry=metrics.REGISTRY,
)

PLANS_MAX = 1024  # key tables (batch shapes) whose plan is kept
UNRULED = -1  # the slot of a key without a deadband (always sent)


@dataclass(frozen=True, slots=True)
class TablePlan:
    """What the filter needs of one key table."""

    slots: Index  # per point: its key's slot, or UNRULED
    rounds: tuple[Index, ...]  # point indices of the r-th sample of each key with a rule
    quantity: Index  # per point: an index into `quantities`
    quantities: tuple[str, ...]


def rounds_of(slots: Index) -> tuple[Index, ...]:
    """The points with a slot, by occurrence: round r holds the r-th point of each slot, in point order."""
    ruled = np.flatnonzero(slots != UNRULED)
    if len(ruled) == 0:
        return ()
    order = ruled[np.argsort(slots[ruled], kind="stable")]
    ordered = slots[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.append(starts, len(order))))
    return tuple(np.sort(order[rank == r]) for r in range(int(rank.max()) + 1))


class ExceptionFilter:
    def __init__(self, sink: str, cfg: ReportByException) -> None:
        self.sink = sink
        self.patterns = Patterns(cfg)
        self.max_keys = cfg.max_keys
        self.last = LastSent()
        self._slots: dict[Key, int] = {}  # key -> slot (UNRULED: no deadband applies)
        self._plans: LruCache[int, TablePlan] = LruCache(PLANS_MAX)
        self._undo: list[Saved] = []
        self._pending: Counter[str] = Counter()  # quantity -> samples suppressed in the open transaction
        self._full_logged = False
        self.suppressed = 0  # samples suppressed in committed writes, since start

    def apply(self, rows: Sequence[Row]) -> list[Row]:
        """The rows to write. Opens a transaction: `commit()` or `rollback()` before the next call."""
        self.rollback()
        out = []
        for row in rows:
            b = row.batch
            if b.kind != BatchKind.SAMPLES or b.n == 0:
                out.append(row)
                continue
            send = self.sent(b)
            if send.all():
                out.append(row)
            elif send.any() or b.status is not None or b.records:
                out.append(Row(row.seq, row.ts, b.take(np.flatnonzero(send), intern=False)))
        return out

    def commit(self) -> Counter[str]:
        """The write was confirmed: keep the new last sent samples; the suppressed samples by quantity."""
        done, self._pending = self._pending, Counter()
        self._undo = []
        for quantity, n in done.items():
            suppressed_samples.labels(self.sink, quantity).inc(n)
        self.suppressed += done.total()
        return done

    def rollback(self) -> None:
        """The write failed: the last sent samples as before `apply`."""
        for saved in reversed(self._undo):
            self.last.restore(saved)
        self._undo = []
        self._pending = Counter()

    def sent(self, b: Batch) -> Bools:
        """Per point of a samples batch: sent or not (remembered as sent in the open transaction)."""
        plan = self._plan(b.keys)
        send = np.ones(b.n, dtype=np.bool_)
        objects = b.objects or {}
        for idx in plan.rounds:
            slots = plan.slots[idx]
            decision = decide(self.last.at(slots), b.values[idx], b.quality[idx], b.ts[idx])
            changed = decision.changed
            held: dict[int, Value] = {}
            if objects:
                differ, held = object_changes(self.last, slots, idx, objects)
                if held:
                    changed[[i for i, p in enumerate(idx.tolist()) if p in objects]] = False
                    changed[differ] = True
            go = decision.forced | changed
            send[idx] = go
            at = idx[go]
            gone = slots[go]
            kept = {s: held[s] for s in gone.tolist() if s in held}
            self._undo.append(self.last.put(gone, b.values[at], b.quality[at], b.ts[at], kept))
        if not send.all():
            counts = np.bincount(plan.quantity[~send], minlength=len(plan.quantities))
            for q in np.flatnonzero(counts).tolist():
                self._pending[plan.quantities[q]] += int(counts[q])
        return send

    def _plan(self, keys: Keys) -> TablePlan:
        plan = self._plans.get(keys.id)
        if plan is None:
            slots = np.fromiter((self._slot(k) for k in keys.rows), dtype=np.intp, count=len(keys))
            names = list(dict.fromkeys(k.quantity for k in keys.rows))
            where = {q: i for i, q in enumerate(names)}
            quantity = np.fromiter((where[k.quantity] for k in keys.rows), dtype=np.intp, count=len(keys))
            plan = TablePlan(slots, rounds_of(slots), quantity, tuple(names))
            self._plans.put(keys.id, plan)
        return plan

    def _slot(self, key: Key) -> int:
        slot = self._slots.get(key)
        if slot is not None:
            return slot
        rule = self.patterns.find(key)
        if rule is None:
            slot = UNRULED
        elif self.last.size >= self.max_keys:
            if not self._full_logged:
                self._full_logged = True
                log.warning("report by exception: max_keys reached; new keys are all sent", sink=self.sink,
                            max_keys=self.max_keys)  # fmt: skip
            return UNRULED
        else:
            slot = self.last.add(rule)
        if slot != UNRULED or len(self._slots) < 2 * self.max_keys:  # keys without a rule: up to a bound too
            self._slots[key] = slot
        return slot
