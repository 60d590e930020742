"""One streaming pass over a window: batches in, every rack's estimators and plot traces updated chunk by chunk.

`assess_window(batches, settings_of, window)` reads the time-ordered batches once; each rack met
(or only the racks asked for) gets its own `ChunkBuilder` (gateway.assess.series) and `RackPass`,
which feeds every chunk to every estimator and to the traces of the report's plots. Memory is one
chunk per rack plus the estimators' bounded state, whatever the window's length.

`infer_period` guesses the sample period from the first batches when neither the user nor the
configuration gives one: per rack, the median time between consecutive `rack_current` samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice

import numpy as np

from gateway.assess.capacity import UsableCapacity
from gateway.assess.cells import CellAnalysis
from gateway.assess.completeness import Completeness
from gateway.assess.consistency import PackVoltage, SocDrift
from gateway.assess.cycles import Limits
from gateway.assess.energy import Energy
from gateway.assess.ocvtable import OcvTable
from gateway.assess.partial import PartialCycles
from gateway.assess.sensors import SensorCheck
from gateway.assess.series import ChunkBuilder, RackChunk
from gateway.assess.traces import EndVoltages, Traces
from gateway.model import Batch, BatchKind

RACK_CACHE = 256  # key tables whose racks are remembered


@dataclass(frozen=True, slots=True)
class Window:
    since_ns: int | None = None
    until_ns: int | None = None  # inclusive, as `export --until`

    @property
    def end_ns(self) -> int | None:
        """The exclusive end."""
        return None if self.until_ns is None else self.until_ns + 1


@dataclass(frozen=True, slots=True)
class RackSettings:
    """How one rack is assessed, and where each setting comes from (said in the report)."""

    period_s: float
    period_source: str
    limits: Limits
    limits_source: str
    nominal_source: str | None
    margin_source: str = "none"
    ocv_table: OcvTable | None = None  # for the capacity from partial cycles (gateway.assess.partial)


@dataclass
class RackPass:
    """Every estimator of one rack, fed the same chunks."""

    rack: str
    settings: RackSettings
    window: Window
    steps: int = 3600
    builder: ChunkBuilder = field(init=False)
    completeness: Completeness = field(init=False)
    capacity: UsableCapacity = field(init=False)
    partial: PartialCycles = field(init=False)
    cells: CellAnalysis = field(init=False)
    sensors: SensorCheck = field(init=False)
    pack: PackVoltage = field(init=False)
    soc: SocDrift = field(init=False)
    energy: Energy = field(init=False)
    traces: Traces = field(init=False)
    ends: EndVoltages = field(init=False)
    first_ns: int | None = None
    last_ns: int | None = None

    def __post_init__(self) -> None:
        s, w = self.settings, self.window
        lim = s.limits
        self.builder = ChunkBuilder(self.rack, s.period_s, self.steps)
        self.completeness = Completeness(s.period_s, w.since_ns, w.end_ns)
        self.capacity = UsableCapacity(lim)
        self.partial = PartialCycles(s.ocv_table, lim)
        self.cells = CellAnalysis(lim)
        self.sensors = SensorCheck()
        self.pack = PackVoltage()
        self.soc = SocDrift(limits=lim)  # counts with the BMS's reported capacity, else nominal
        self.energy = Energy(lim.nominal_ah, lim)
        width = None
        if w.since_ns is not None and w.end_ns is not None:
            p = round(s.period_s * 1e9)
            width = max(p, -(-(w.end_ns - w.since_ns) // (800 * p)) * p)
        self.traces = Traces(w.since_ns, width)
        self.ends = EndVoltages(lim)

    def feed(self, batch: Batch) -> None:
        for chunk in self.builder.feed(batch):
            self.update(chunk)

    def finish(self) -> None:
        last = self.builder.finish()
        if last is not None:
            self.update(last)

    def update(self, chunk: RackChunk) -> None:
        if chunk.n == 0:
            return
        self.first_ns = int(chunk.t[0]) if self.first_ns is None else self.first_ns
        self.last_ns = int(chunk.t[-1])
        for e in (self.completeness, self.capacity, self.partial, self.cells, self.sensors, self.pack, self.soc,
                  self.energy, self.traces, self.ends):  # fmt: skip
            e.update(chunk)


def racks_in(batch: Batch, cache: dict[int, frozenset[str]]) -> frozenset[str]:
    """The racks a batch's points name (remembered per key table)."""
    racks = cache.get(batch.keys.id)
    if racks is None:
        if len(cache) >= RACK_CACHE:
            cache.clear()
        racks = cache[batch.keys.id] = frozenset(k.rack for k in batch.keys.rows if k.rack)
    return racks


def assess_window(
    batches: Iterable[Batch],
    settings_of: Callable[[str], RackSettings],
    window: Window,
    only: frozenset[str] | None = None,
    steps: int = 3600,
) -> dict[str, RackPass]:
    """Every rack's pass over the batches (only the racks in `only`, when given), by rack in order met."""
    passes: dict[str, RackPass] = {}
    cache: dict[int, frozenset[str]] = {}
    for batch in batches:
        if batch.kind != BatchKind.SAMPLES or batch.n == 0:
            continue
        for rack in sorted(racks_in(batch, cache)):
            if only is not None and rack not in only:
                continue
            p = passes.get(rack)
            if p is None:
                p = passes[rack] = RackPass(rack, settings_of(rack), window, steps)
            p.feed(batch)
    for p in passes.values():
        p.finish()
    return passes


def infer_period(batches: Iterator[Batch], look: int = 200) -> tuple[dict[str, float], Iterator[Batch]]:
    """Per rack, the median time between its `rack_current` samples in the first `look` sample batches
    (rounded to the millisecond), and the batches again, whole."""
    head = list(islice(batches, look))
    times: dict[str, list[int]] = {}
    for b in head:
        if b.kind != BatchKind.SAMPLES:
            continue
        for i, k in enumerate(b.keys.rows):
            if k.quantity == "rack_current":
                times.setdefault(k.rack, []).append(int(b.ts[i]))
    periods: dict[str, float] = {}
    for rack, ts in times.items():
        d = np.diff(np.unique(np.asarray(ts, dtype=np.int64)))
        if len(d):
            periods[rack] = max(0.001, round(float(np.median(d)) / 1e9, 3))
    return periods, chain(head, batches)
