"""What a device's cycles say about its data, logged when it changes; and the device's time.

After a cycle is made into a batch, `DeviceWatch.finish` gives the batch the device's time (its
clock registers, when the profile declares them) as `device_ts`, and logs one line when a state
point starts or stops reading a value its `states:` does not name, a scale register starts or stops
giving a factor, or the clock starts or stops holding a valid time: each names the device and the
register, never a line per poll. Counted in `bms_gateway_modbus_decode_faults_total{device,kind}`.
"""

from __future__ import annotations

import numpy as np
import structlog

from gateway.model import Batch
from gateway.sources.modbus import metrics
from gateway.sources.modbus.clock import ClockPlan, clock_words, device_time_ns
from gateway.sources.modbus.cycle import Cycle
from gateway.sources.modbus.plan import Point
from gateway.sources.modbus.refs import ScaleRef
from gateway.sources.modbus.scaled import invalid_refs

log = structlog.get_logger("source.modbus")


class DeviceWatch:
    """One device's decode faults by point and register, and its clock."""

    def __init__(self, device: str, clock: ClockPlan | None) -> None:
        self.device = device
        self.clock = clock
        self.unknown: dict[Point, int] = {}  # state point -> the unknown raw value it last read
        self.invalid: dict[ScaleRef, int] = {}  # scale register -> the raw value that gives no factor
        self.clock_valid: bool | None = None

    def finish(self, cycle: Cycle, batch: Batch) -> None:
        """Log what changed in this cycle and stamp the batch with the device's time."""
        if cycle.read:
            self._states(cycle)
            self._scales(cycle)
        if self.clock is not None:
            ns = self._clock(cycle)
            if ns is not None and batch.n:
                batch.device_ts = np.full(batch.n, ns, dtype=np.int64)

    def _states(self, cycle: Cycle) -> None:
        now: dict[Point, int] = {}
        for seg in cycle.read:
            for row in seg.decoded.unknown:
                value = seg.decoded.objects.get(row)
                p = seg.decoder.points[row]
                now[p] = int(str(value)[len("unknown(") : -1]) if isinstance(value, str) else -1
        for p, raw in now.items():
            if self.unknown.get(p) != raw:
                metrics.decode_faults.labels(self.device, "unknown_state").inc()
                log.warning(
                    "modbus state value unknown",
                    device=self.device,
                    point=p.label,
                    register=f"{p.table}:{p.address}",
                    bits=list(p.bits) if p.bits else p.bit,
                    raw=raw,
                    known=dict(p.states),
                )
        if not self.unknown and not now:
            return
        read = {p for seg in cycle.read for p in seg.decoder.points} if self.unknown else set()  # only in a fault
        for p in [p for p in self.unknown if p in read and p not in now]:
            log.info("modbus state value known again", device=self.device, point=p.label)
        self.unknown = {p: r for p, r in self.unknown.items() if p not in read} | now

    def _scales(self, cycle: Cycle) -> None:
        refs: dict[ScaleRef, None] = {}
        for seg in cycle.read:
            if seg.decoder.scaled is not None:
                refs.update(dict.fromkeys(seg.decoder.scaled.refs))
        if not refs:
            return
        now = dict(invalid_refs(list(refs), cycle.aux))
        for ref, raw in now.items():
            if self.invalid.get(ref) != raw:
                metrics.decode_faults.labels(self.device, "invalid_scale").inc()
                log.warning(
                    "modbus scale register gives no factor",
                    device=self.device,
                    register=ref.label,
                    kind=ref.kind,
                    raw=raw,
                    points="quality bad",
                )
        for ref in [r for r in self.invalid if r in refs and r not in now and r.key in cycle.aux]:
            log.info("modbus scale register valid again", device=self.device, register=ref.label, kind=ref.kind)
        self.invalid = {r: v for r, v in self.invalid.items() if r not in refs or r.key not in cycle.aux} | now

    def _clock(self, cycle: Cycle) -> int | None:
        assert self.clock is not None
        words = clock_words(self.clock, cycle.aux)
        if words is None:  # not read this cycle (its block was lost): no time, no change
            return None
        ns = device_time_ns(self.clock, words)
        valid = ns is not None
        if valid != self.clock_valid:
            if not valid:
                metrics.decode_faults.labels(self.device, "invalid_clock").inc()
                log.warning(
                    "modbus device clock invalid: no device time",
                    device=self.device,
                    register=self.clock.label,
                    format=self.clock.format,
                    raw=[f"0x{w:04X}" for w in words],
                )
            elif self.clock_valid is not None:
                log.info("modbus device clock valid again", device=self.device, register=self.clock.label)
        self.clock_valid = valid
        return ns
