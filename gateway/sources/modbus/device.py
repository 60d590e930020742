"""The poll state of one Modbus device (unit id): its read plan, schedule, health and point faults.

No I/O here: the endpoint poller reads blocks and hands the outcomes in; this class turns them into
samples, status changes and log lines (on change only).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import structlog

from gateway import metrics as gw_metrics
from gateway.model import Batch, DeviceState, DeviceStatus, Quality
from gateway.runtime.backoff import Backoff
from gateway.sources.modbus import metrics
from gateway.sources.modbus.clock import clock_plan
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.cycle import Cycle, ShapeKeys
from gateway.sources.modbus.decode import BlockDecoder, Words
from gateway.sources.modbus.plan import Block, Point, plan_reads, split_block, unreadable_ranges
from gateway.sources.modbus.profile import ModbusProfile
from gateway.sources.modbus.schedule import next_due
from gateway.sources.modbus.sharing import SharedPlans
from gateway.sources.modbus.watch import DeviceWatch

log = structlog.get_logger("source.modbus")

ILLEGAL_ADDRESS = 2
# Exception codes that mean "the device behind the gateway did not answer", not "this register is bad".
NO_ANSWER_CODES = frozenset({10, 11})
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class Outcome(NamedTuple):
    """What one block read gave: registers/bits, an exception code, a reply that did not answer the
    request (`mismatch`, its kind), or no answer."""

    ts: int
    words: Words | None = None
    code: int | None = None  # Modbus exception code
    error: str | None = None  # timeout | connection | bad_response, or what the mismatched reply held
    mismatch: str | None = None  # replies.KINDS: the device answered, but not this request

    @property
    def answered(self) -> bool:
        return (
            self.words is not None
            or self.mismatch is not None
            or (self.code is not None and self.code not in NO_ANSWER_CODES)
        )

    @property
    def fault(self) -> str | None:
        """Why an answered block gave no values (None: it gave them), as counted and logged."""
        if self.mismatch is not None:
            return self.mismatch
        return None if self.code is None else f"exception_{self.code}"


class DeviceRun:
    """One unit id behind an endpoint."""

    def __init__(self, cfg: ModbusSourceConfig, profile: ModbusProfile, shared: SharedPlans | None = None) -> None:
        """`shared`: plans and decoders shared with the other devices of the source builder."""
        self.cfg = cfg
        self.name = cfg.name
        self.rack = cfg.rack_tag
        self.unit_id = cfg.unit_id
        self.shared = shared or SharedPlans()
        points, problems = self.shared.compiled(profile, cfg.interval)
        if problems:  # `validate` and start-up checks report these with their place first
            raise ValueError(f"{cfg.name}: {problems[0].message}")
        self.profile = profile
        self.default_interval = cfg.interval or profile.interval
        self.needs_discovery = profile.sunspec  # the SunSpec chain is read at first contact
        self.explicit = points
        self.points: list[Point] = []
        self.blocks: dict[float, list[Block]] = {}
        self.shapes = ShapeKeys(self.rack)
        self.set_points(points)
        self.due: dict[float, float] = {}
        self.state = DeviceState.STARTING
        self.failed_cycles = 0
        self.probe = Backoff(cfg.reconnect_initial, cfg.reconnect_max)  # an offline device's probes
        self.probe_due = 0.0
        self.bad: dict[Point, int] = {}  # points isolated by splitting -> exception code
        self.retry_bad: dict[Point, tuple[int, int]] = {}  # refused point -> (next cycle to try, step)
        self.faults: dict[tuple[str, int, int], str | None] = {}  # last fault per block (log on change)
        self.cycles = 0
        clock = clock_plan(profile.clock, profile.table, profile.address_base, profile.byte_order)
        self.watch = DeviceWatch(cfg.name, clock)  # unknown states, scale registers, the device's time
        self._children: dict[str, Any] = {}  # this device's metrics of every cycle, by name (see `_metric`)

    def set_points(self, points: list[Point]) -> None:
        """(Re)build the read plan; intervals that are new become due now."""
        profile = self.profile
        self.points = points
        one_per_point = self.cfg.one_request_per_point
        blocks = self.shared.plan(
            profile,
            points,
            one_per_point,
            lambda: plan_reads(
                points,
                max_registers=profile.max_registers,
                max_bits=profile.max_bits,
                max_gap=profile.max_gap,
                unreadable=unreadable_ranges(profile),
                one_per_point=one_per_point,
            ),
        )
        self.blocks = {}
        self.shapes.clear()
        for b in blocks:
            self.blocks.setdefault(b.interval, []).append(b)
        if hasattr(self, "due"):
            now = min(self.due.values(), default=0.0)
            self.due = {iv: self.due.get(iv, now) for iv in self.blocks or [self.default_interval]}

    # -- schedule -------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self.due = dict.fromkeys(self.blocks or [self.default_interval], now)

    @property
    def shortest_interval(self) -> float:
        return min(self.blocks or [self.default_interval])

    def due_intervals(self, now: float) -> list[float]:
        return [iv for iv, due in self.due.items() if due <= now]

    def next_time(self) -> float:
        return min(self.due.values())

    def advance(self, intervals: list[float], now: float) -> None:
        for iv in intervals:
            self.due[iv], skipped = next_due(self.due[iv], iv, now)
            if skipped:
                metrics.late_cycles.labels(self.name).inc(skipped)

    def blocks_for(self, intervals: list[float]) -> list[Block]:
        return [b for iv in intervals for b in self.blocks.get(iv, [])]

    def may_probe(self, now: float) -> bool:
        """An offline device is tried at most once per backoff step, so it cannot slow the others."""
        return self.state != DeviceState.OFFLINE or now >= self.probe_due

    # -- plan repair ----------------------------------------------------------------------------

    def split(self, block: Block) -> list[Block]:
        """Replace a block that failed with an illegal-address exception by its halves."""
        halves = split_block(block)
        lst = self.blocks[block.interval]
        if block in lst and len(halves) > 1:
            i = lst.index(block)
            lst[i : i + 1] = halves
            log.info(
                "modbus block split after illegal address",
                device=self.name,
                table=block.table,
                start=block.start,
                count=block.count,
                into=[(h.start, h.count) for h in halves],
            )
        return halves

    def mark_bad(self, point: Point, code: int) -> None:
        """A point refused on its own: retried after 1, 2, 4 ... 64 cycles, not every cycle."""
        _, step = self.retry_bad.get(point, (0, 1))
        self.retry_bad[point] = (self.cycles + step, min(step * 2, 64))
        if self.bad.get(point) != code:
            self.bad[point] = code
            log.warning(
                "modbus point refused by the device",
                device=self.name,
                point=point.label,
                code=code,
                meaning=EXCEPTION_NAMES.get(code, "unknown"),
            )
            metrics.bad_points.labels(self.name).set(len(self.bad))

    def skip_bad(self, block: Block) -> bool:
        """Whether this cycle leaves out a refused point's read (its samples are `bad` without asking)."""
        if len(block.points) != 1 or block.points[0] not in self.bad:
            return False
        due, _ = self.retry_bad.get(block.points[0], (0, 1))
        return self.cycles < due

    # -- outcomes -------------------------------------------------------------------------------

    def decoder(self, block: Block) -> BlockDecoder:
        return self.shared.decoder(block)

    def take(self, cycle: Cycle, block: Block, outcome: Outcome) -> None:
        """Add the samples of one block read to the cycle. An exception code, or a reply that does not
        answer the request, gives the block's points quality `bad` and no value (counted by the
        poller by kind), logged when the block's fault changes (a change between reply kinds is
        none: a device answering random bytes does not log every poll)."""
        key = (block.table, block.start, block.count)
        fault = "reply" if outcome.mismatch is not None else outcome.fault  # one state for every reply kind
        if self.faults.get(key) != fault and (fault is not None or key in self.faults):
            self._log_fault(block, outcome)
        self.faults[key] = fault
        if outcome.words is not None:
            if len(block.points) == 1 and block.points[0] in self.bad:
                log.info("modbus point readable again", device=self.name, point=block.points[0].label)
                del self.bad[block.points[0]]
                self.retry_bad.pop(block.points[0], None)
                metrics.bad_points.labels(self.name).set(len(self.bad))
            cycle.decoded(self.decoder(block), outcome.words, outcome.ts)
        else:
            cycle.lost(self.decoder(block), outcome.ts, Quality.BAD)

    def _log_fault(self, block: Block, outcome: Outcome) -> None:
        where = {
            "device": self.name,
            "unit_id": self.unit_id,
            "function": block.function_code,
            "table": block.table,
            "address": block.start,
            "count": block.count,
        }
        if outcome.mismatch is not None:
            kind, received = outcome.mismatch, outcome.error
            log.warning("modbus reply does not answer its request", kind=kind, received=received, **where)
        elif outcome.code is not None:
            meaning = EXCEPTION_NAMES.get(outcome.code, "unknown")
            log.warning("modbus exception", code=outcome.code, meaning=meaning, **where)
        else:
            log.info("modbus block readable again", **where)

    def lost(self, cycle: Cycle, blocks: list[Block], ts: int) -> None:
        """`stale` rows (no value) of blocks the cycle could not read: the device is not offline
        (yet), its points just missed this cycle. An offline device's points are `comm_loss`, once."""
        if self.state == DeviceState.OFFLINE:
            return
        for block in blocks:
            cycle.lost(self.decoder(block), ts, Quality.STALE)

    def missed(self, intervals: list[float], reason: str) -> Batch | None:
        """A cycle that came due while the endpoint had no connection: a failed cycle (the device goes
        offline after `offline_after` of them in a row). An offline device just waits."""
        if self.state == DeviceState.OFFLINE:
            return None
        cycle = Cycle()
        self.lost(cycle, self.blocks_for(intervals), time.time_ns())
        return self.cycle_batch(cycle, answered=False, reason=reason)

    def cycle_batch(self, cycle: Cycle | None, answered: bool, reason: str = "") -> Batch | None:
        """The batch of one poll cycle, with a DeviceStatus when the state changed and the cycle's
        key table. A cycle without an answer counts toward `offline_after` (the on-delay): within it the
        batch holds what the cycle has (`stale` samples of what it missed) and no status; then the
        device's offline batch, once."""
        ts = time.time_ns()
        self.cycles += 1
        self._metric("polls", metrics.polls).inc()
        cycle = cycle or Cycle()
        status = None
        if answered:
            self.failed_cycles = 0
            self.probe.reset()
            self._metric("last_success", metrics.last_success).set(ts / 1e9)
            new = DeviceState.DEGRADED if (self.bad or cycle.bad) else None
            status = self._set_state(new or DeviceState.ONLINE, "some points refused" if new else "", ts)
        else:
            self.failed_cycles += 1
            self.probe_due = time.monotonic() + self.probe.next_delay()
            if self.state == DeviceState.OFFLINE or self.failed_cycles >= self.cfg.offline_after:
                return self.offline_batch(reason, ts)
            if not cycle.rows:
                return None
        self._metric("produced", gw_metrics.samples_produced).inc(cycle.rows)
        batch = cycle.batch(self.name, self.shapes.of(cycle.decoders), status, ts)
        self.watch.finish(cycle, batch)
        return batch

    def _metric(self, name: str, family: Any) -> Any:
        """This device's child of a metric it updates every cycle, made at first use (`labels()` takes a
        lock and a lookup each time: 0.7 % of the 100-rack site's CPU)."""
        child = self._children.get(name)
        if child is None:
            child = self._children[name] = family.labels(self.name)
        return child

    def offline_batch(self, reason: str, ts: int | None = None) -> Batch | None:
        """comm_loss rows for every point and an OFFLINE status, once per outage."""
        if self.state == DeviceState.OFFLINE:
            return None
        ts = ts or time.time_ns()
        status = self._set_state(DeviceState.OFFLINE, reason, ts)
        cycle = Cycle()
        for block in self.blocks_for(list(self.blocks)):
            cycle.lost(self.decoder(block), ts, Quality.COMM_LOSS)
        gw_metrics.samples_produced.labels(self.name).inc(cycle.rows)
        return cycle.batch(self.name, self.shapes.of(cycle.decoders), status, ts)

    def _set_state(self, state: DeviceState, reason: str, ts: int) -> DeviceStatus | None:
        if state == self.state:
            return None
        old, self.state = self.state, state
        gw_metrics.device_online.labels(self.name).set(0 if state == DeviceState.OFFLINE else 1)
        if state == DeviceState.OFFLINE:
            log.warning("modbus device offline", device=self.name, unit_id=self.unit_id, reason=reason)
        elif old == DeviceState.OFFLINE:
            log.info("modbus device back online", device=self.name, unit_id=self.unit_id)
        return DeviceStatus(self.name, state, reason, ts)
