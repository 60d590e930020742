"""One rack on a CAN bus: its compiled plan, its cyclic supervision and its communication state."""

from __future__ import annotations

import time

import structlog

from gateway import metrics as core_metrics
from gateway.model import Batch, DeviceState, DeviceStatus, Quality, Sample
from gateway.sources.can import metrics
from gateway.sources.can.config import CanSourceConfig
from gateway.sources.can.decode import OUT_OF_RANGE
from gateway.sources.can.plan import RackPlan
from gateway.sources.can.supervision import Supervisor

log = structlog.get_logger("source.can")


class Rack:
    """One rack on a bus: its plan, its supervision and its communication state."""

    def __init__(self, cfg: CanSourceConfig, plan: RackPlan, comm_loss_timeout: float) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.plan = plan
        limits = {k: m.cycle * m.stale_after for k, m in plan.messages.items() if m.cycle}
        self.supervisor = Supervisor(limits, comm_loss_timeout, time.monotonic())
        self.state = DeviceState.STARTING
        self.samples: list[Sample] = []
        self.statuses: list[DeviceStatus] = []  # every change since the last batch, in order
        self.decoded = 0
        self.j1939 = plan.table.j1939
        self.seen: dict[int, None] = {}  # keys of the frames of this window that decoded (in order)

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

    def decode(self, arbitration_id: int, is_extended: bool, data: bytes, ts: int, is_remote: bool) -> str:
        """One frame through the plan (`RackPlan.decode_frame`): its samples kept for the next batch, its
        message marked as heard when it decoded; the reason it was counted ("" when decoded cleanly)."""
        plan = self.plan
        key = plan.key(arbitration_id, is_extended)
        samples, reason = plan.decode(key, arbitration_id, is_extended, data, ts, is_remote=is_remote)
        if samples:
            self.samples += samples
            self.decoded += 1
        if not reason or reason == OUT_OF_RANGE:
            self.seen[key] = None
        return reason

    def heard(self, now: float, ts: int) -> None:
        """The frames of one window (keys in `seen`) arrived at `now`: supervision, and back online."""
        seen = self.supervisor.seen
        for key in self.seen:
            seen(key, now)
        self.seen.clear()
        if self.state in (DeviceState.STARTING, DeviceState.OFFLINE):
            self.set_state(DeviceState.ONLINE, "", ts)

    def supervise(self, now: float, ts: int) -> None:
        verdict = self.supervisor.check(now)
        for key in verdict.stale:
            plan = self.plan.messages[key]
            metrics.stale.labels(self.name, plan.name).inc()
            for (k, _mux), last in self.plan.last.items():
                if k == key:
                    self.samples.extend(s._replace(ts=ts, quality=Quality.STALE) for s in last)
        if verdict.comm_loss is True:
            self.set_state(DeviceState.OFFLINE, "no frames: every cyclic message stopped", ts)
            for last in self.plan.last.values():
                self.samples.extend(s._replace(ts=ts, quality=Quality.COMM_LOSS) for s in last)
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
        """What to hand on: one batch per status change (the last carries the samples)."""
        if not self.samples and not self.statuses:
            return []
        statuses: list[DeviceStatus | None] = list(self.statuses) or [None]
        out = [Batch(self.name, [], device=self.name, status=st, created=ts) for st in statuses[:-1]]
        out.append(Batch(self.name, self.samples, device=self.name, status=statuses[-1], created=ts))
        self.samples, self.statuses = [], []
        return out
