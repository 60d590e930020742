"""Live assessment in the runtime (`assess.enabled`): an observer feeds the estimators, a service publishes.

- Observer: every committed group of batches goes to `LiveAssessment.feed` (gateway.assess.live, pure);
  the assessments it returns become one batch of samples (`assessed_capacity`, `assessed_soh` per rack).
- Service `assess`: emits those batches into the pipeline like a source, so they pass the alarm engine
  (the `soh_mismatch` rule compares them with the BMS's SoH), are stored and are delivered like any sample.
  An observer cannot wait for room in the queue; the service can. Nothing is emitted once the gateway
  is stopping: what waits then is logged (the `assess` command measures it again from the record).
"""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path

import structlog
from prometheus_client import Counter

from gateway.assess.live import Assessment, Configured, LiveAssessment, assessment_batch
from gateway.assess.ocvtable import OcvTable, OcvTableError, load_ocv_table
from gateway.assess.setup import hints_from_config
from gateway.metrics import REGISTRY
from gateway.model import Batch
from gateway.runtime.core import Runtime

log = structlog.get_logger("assess")

PENDING_MAX = 1000  # result batches waiting for the queue (one per group commit that finished a discharge)

assessments = Counter(
    "bms_gateway_assessments", "Full discharges measured live (assessed_capacity published), by rack", ["rack"],
    registry=REGISTRY,
)  # fmt: skip
assess_left_out = Counter(
    "bms_gateway_assess_left_out_points",
    "Points the live assessment could not place on its time grid (older than the chunk being filled, or of a "
    "cell first seen after the rack's first chunk)",
    registry=REGISTRY,
)
assess_racks_refused = Counter(
    "bms_gateway_assess_racks_refused", "Racks not assessed live: more racks than the live assessment holds",
    registry=REGISTRY,
)  # fmt: skip


class AssessService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        hints = hints_from_config(rt.loaded)  # the one reading of a rack's nominal capacity and interval
        configured = {r: Configured(h.nominal_ah, h.period_s) for r, h in hints.items()}
        self.live = LiveAssessment(rt.cfg.assess, configured, table=_table(rt.cfg.assess.ocv_table))
        self.pending: deque[Batch] = deque()
        self.stopping = False
        self._wake = asyncio.Event()
        self._left_out = 0
        self._refused = 0

    def observe(self, batches: list[Batch]) -> None:
        """Observer: feed the committed batches; queue the assessments they completed for the service."""
        results = self.live.feed(batches)
        self._count()
        if not results:
            return
        for a in results:
            assessments.labels(a.rack).inc()
            log.info("capacity assessed", rack=a.rack, capacity_ah=round(a.capacity_ah, 2), soh_pct=_round(a),
                     nominal_ah=a.nominal_ah, method=a.method,
                     span_s=round((a.end_ns - a.start_ns) / 1e9))  # fmt: skip
        if len(self.pending) >= PENDING_MAX:  # the queue has not taken a batch for PENDING_MAX discharges
            self.pending.popleft()
            log.warning("live assessment results dropped: the pipeline does not take them", kept=PENDING_MAX)
        self.pending.append(assessment_batch(results))
        self._wake.set()

    def _count(self) -> None:
        left_out = self.live.left_out
        if left_out > self._left_out:
            assess_left_out.inc(left_out - self._left_out)
            self._left_out = left_out
        refused = len(self.live.refused)
        if refused > self._refused:
            assess_racks_refused.inc(refused - self._refused)
            log.warning("racks not assessed live: too many racks", refused=sorted(self.live.refused)[:20],
                        assessed=len(self.live.racks))  # fmt: skip
            self._refused = refused

    async def run(self) -> None:
        while not self.stopping:
            await self._wake.wait()
            self._wake.clear()
            while self.pending and not self.stopping:
                await self.rt.emit(self.pending.popleft())

    def stop(self) -> None:
        self.stopping = True
        self._wake.set()
        if self.pending:
            log.warning("live assessment results not published: the gateway is stopping",
                        batches=len(self.pending))  # fmt: skip


def _table(path: Path | None) -> OcvTable | None:
    """The OCV table of assess.ocv_table; a bad one is logged once (file:line) and partial cycles are not
    measured live (the daemon runs on; `bms-gateway assess` refuses the same table with the error)."""
    if path is None:
        return None
    try:
        return load_ocv_table(path)
    except OcvTableError as exc:
        log.error("OCV table not usable: capacity from partial cycles is not measured live", error=str(exc))
        return None


def _round(a: Assessment) -> float | None:
    return None if a.soh_pct is None else round(a.soh_pct, 2)


def install(rt: Runtime) -> None:
    if not rt.cfg.assess.enabled:
        return
    svc = AssessService(rt)
    rt.observers.append(svc.observe)
    rt.services.append(("assess", svc.run))
    rt.on_stopping.append(svc.stop)
