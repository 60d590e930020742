"""The simulated rack as a feed of batches, pure (no event loop, no I/O): what the source emits.

`RackFeed.next(ts)` advances the model one sample interval (interval × speed simulated seconds, in
steps of at most `max_step`) and gives the batch of that time, or the status batch of a dropout.
`RackFeed.run(seconds)` runs it on the simulated clock, for tests and benchmarks. The truth the
feed states (its parameters, and the events since the last call) is in gateway.sources.sim.truth.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from gateway.model import EMPTY_KEYS, Batch, DeviceState, DeviceStatus, Key, Keys
from gateway.sources.sim.battery import RackModel, RackParams
from gateway.sources.sim.config import SimulatedSourceConfig
from gateway.sources.sim.sensors import Fault

NS = 1_000_000_000


def model_from(cfg: SimulatedSourceConfig) -> RackModel:
    params = RackParams(
        modules=cfg.modules,
        cells_per_module=cfg.cells_per_module,
        sensors_per_module=cfg.sensors_per_module,
        capacity_ah=cfg.capacity_ah,
        resistance_ohm=cfg.cells.resistance_ohm,
        initial_soc=cfg.initial_soc,
        current_amplitude=cfg.current_amplitude,
        current_period=cfg.current_period,
        ambient=cfg.ambient,
        spread=cfg.spread,
        seed=cfg.seed,
        profile=cfg.current_profile,
        test=cfg.capacity_test,
        cells=cfg.cells,
        bms=cfg.bms,
        pack_voltage_bias=cfg.pack_voltage_bias,
    )
    faults = [Fault(f.kind, f.at, f.duration, f.cell, f.severity, f.module) for f in cfg.faults]
    return RackModel(params, faults)


@dataclass(frozen=True, slots=True)
class Produced:
    """One sample interval: its batch (None while the rack is dropped out), the device state that began
    with it (None if unchanged), and what happened in the model meanwhile (truth events, time-ordered)."""

    batch: Batch | None
    began: DeviceState | None
    events: list[dict[str, object]] = field(default_factory=list)


class RackFeed:
    """One simulated rack, stepped one sample interval at a time."""

    def __init__(self, cfg: SimulatedSourceConfig, start_ns: int = 0) -> None:
        self.cfg = cfg
        self.model = model_from(cfg)
        self.start_ns = start_ns  # the simulated clock's zero
        self.state = DeviceState.STARTING
        self.keys = EMPTY_KEYS  # the model reports one shape for its parameters: one key table, made once
        self._rows: tuple[Key, ...] = ()

    def clock_ns(self) -> int:
        """The simulated clock now: start + simulated seconds."""
        return self.start_ns + round(self.model.t * NS)

    def advance(self) -> None:
        """Step the model over one sample interval, in equal steps no longer than max_step."""
        dt = self.cfg.interval * self.cfg.speed
        n = max(1, math.ceil(dt / self.cfg.max_step - 1e-9))
        for _ in range(n):
            self.model.step(dt / n)

    def next(self, ts: int | None = None) -> Produced:
        """Advance one interval; the batch stamped ts (ns), or on the simulated clock when ts is None."""
        self.advance()
        stamp = self.clock_ns() if ts is None else ts
        cfg = self.cfg
        if self.model.dropped_out():
            if self.state == DeviceState.OFFLINE:
                return Produced(None, None, self._events(ts))
            self.state = DeviceState.OFFLINE
            off = DeviceStatus(cfg.name, DeviceState.OFFLINE, "simulated dropout", stamp)
            batch = Batch(cfg.name, device=cfg.name, status=off, created=stamp)
            return Produced(batch, DeviceState.OFFLINE, self._events(ts))
        began, status = None, None
        if self.state != DeviceState.ONLINE:
            began = self.state = DeviceState.ONLINE
            status = DeviceStatus(cfg.name, DeviceState.ONLINE, "", stamp)
        reading = self.model.reading()
        if reading.rows is not self._rows:
            self._rows = reading.rows
            self.keys = Keys.of(Key(k.quantity, k.unit, cfg.rack_tag, k.module, k.cell) for k in reading.rows)
        n = len(self.keys)
        stamps, good = np.full(n, stamp, dtype=np.int64), np.zeros(n, dtype=np.uint8)
        batch = Batch(cfg.name, self.keys, stamps, reading.values, good, None, reading.objects or None,
                      device=cfg.name, status=status, created=stamp)  # fmt: skip
        return Produced(batch, began, self._events(ts))

    def _events(self, ts: int | None) -> list[dict[str, object]]:
        """The model's events, each with its time in ns: on the simulated clock, or the wall time ts of
        the interval they happened in."""
        out = self.model.drain_events()
        for ev in out:
            ev["ts"] = self.start_ns + round(float(ev["t"]) * NS) if ts is None else ts  # type: ignore[arg-type]
        return out

    def run(self, seconds: float) -> Iterator[Produced]:
        """The next `seconds` simulated seconds, stamped on the simulated clock."""
        for _ in range(round(seconds / (self.cfg.interval * self.cfg.speed))):
            yield self.next()
