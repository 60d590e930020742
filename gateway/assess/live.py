"""The estimators in the daemon: usable capacity measured batch by batch, published after each full discharge.

Pure (no event loop, no I/O): `LiveAssessment.feed(batches)` takes the batches the runtime committed and
returns an `Assessment` per rack and full discharge measured meanwhile; `assessment_batch` makes the
samples the gateway publishes of them (`assessed_capacity`, Ah, and `assessed_soh`, %, rack level).

Per rack the state is one `ChunkBuilder` (the rack's current, pack voltage, BMS figures and cell voltages
on a time grid, `CHUNK_STEPS` steps at a time) and one `UsableCapacity` (a few numbers while a discharge
runs: where it began, the charge since), the same estimators `bms-gateway assess` runs over a window.
With an OCV table (`assess.ocv_table`) each rack also runs `PartialCycles` (gateway.assess.partial) and
an `Assessment` is made of each pair of rest points that gives an estimate (method `partial_cycles`),
stamped at the end of the second rest. So memory per rack is one chunk, whatever runs for how long; a
result is known at most one chunk (`CHUNK_STEPS` × the rack's period) after the discharge (the rest
after the second rest point) ended. A rack gets its state when a batch first
brings its current or cell voltages; past `MAX_RACKS` racks, more are refused (counted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.assess.capacity import UsableCapacity
from gateway.assess.config import AssessConfig
from gateway.assess.cycles import Limits
from gateway.assess.ocvtable import OcvTable
from gateway.assess.partial import PartialCycles
from gateway.assess.series import ChunkBuilder
from gateway.lru import LruCache
from gateway.model import Batch, BatchKind, Keys, Sample

SOURCE = "assess"  # the source (and device) of the batches of assessed values
CHUNK_STEPS = 60  # grid steps a rack's chunk holds: one minute at 1 s
MAX_RACKS = 1024
_SHAPES = 256  # key tables whose racks are remembered
_MEASURED = frozenset({"cell_voltage", "rack_current"})  # a rack is assessed once it reports one of these
_BMS_SAMPLE = 64  # values of the BMS's SoH kept per rack (the live path does not compare them itself)


@dataclass(frozen=True, slots=True)
class Configured:
    """What a rack's source configuration says, where `assess:` says nothing (each None if unknown)."""

    nominal_ah: float | None = None
    period_s: float | None = None


@dataclass(frozen=True, slots=True)
class Assessment:
    """One full discharge of a rack, measured: from the last full step to the first cell's cutoff; or
    (method `partial_cycles`) one pair of rest points through the OCV table."""

    rack: str
    start_ns: int
    end_ns: int
    capacity_ah: float
    soh_pct: float | None  # capacity_ah against nominal_ah; None without a nominal capacity
    nominal_ah: float | None
    method: str = "full_discharge"  # or partial_cycles


class RackAssessor:
    """One rack: its batches in, an `Assessment` after each full discharge out."""

    def __init__(self, rack: str, limits: Limits, period_s: float, steps: int = CHUNK_STEPS,
                 table: OcvTable | None = None) -> None:  # fmt: skip
        self.rack = rack
        self.limits = limits
        self.builder = ChunkBuilder(rack, period_s, steps)
        self.capacity = UsableCapacity(limits, sample_size=_BMS_SAMPLE)
        self.partial = PartialCycles(table, limits) if table is not None else None

    def feed(self, batch: Batch) -> list[Assessment]:
        out: list[Assessment] = []
        for chunk in self.builder.feed(batch):
            self.capacity.update(chunk)
            out += [self._of(d.start_ns, d.end_ns, d.ah) for d in self.capacity.take_discharges()]
            if self.partial is not None:
                self.partial.update(chunk)
                out += [self._of(e.start_ns, e.end_ns, e.capacity_ah, "partial_cycles")
                        for e in self.partial.take_estimates()]  # fmt: skip
        return out

    def _of(self, start_ns: int, end_ns: int, ah: float, method: str = "full_discharge") -> Assessment:
        nominal = self.limits.nominal_ah
        soh = 100.0 * ah / nominal if nominal else None
        return Assessment(self.rack, start_ns, end_ns, ah, soh, nominal, method)

    @property
    def left_out(self) -> int:
        """Points the chunks could not take: older than the chunk being filled, or of a cell first seen late."""
        return self.builder.late_points + self.builder.unknown_points


class LiveAssessment:
    """Every rack's assessor; see the module docstring."""

    def __init__(self, cfg: AssessConfig, configured: Mapping[str, Configured] | None = None,
                 max_racks: int = MAX_RACKS, table: OcvTable | None = None) -> None:  # fmt: skip
        self.cfg = cfg
        self.table = table  # the OCV table of assess.ocv_table, loaded by the caller
        self.configured = dict(configured or {})
        self.max_racks = max_racks
        self.racks: dict[str, RackAssessor] = {}
        self.refused: set[str] = set()  # racks seen past max_racks
        self._shapes: LruCache[int, tuple[str, ...]] = LruCache(_SHAPES)

    def feed(self, batches: Iterable[Batch]) -> list[Assessment]:
        out: list[Assessment] = []
        for b in batches:
            if b.kind != BatchKind.SAMPLES or b.n == 0 or b.source == SOURCE:
                continue
            for rack in self._racks_of(b.keys):
                assessor = self.racks.get(rack) or self._add(rack)
                if assessor is not None:
                    out += assessor.feed(b)
        return out

    def _racks_of(self, keys: Keys) -> tuple[str, ...]:
        racks = self._shapes.get(keys.id)
        if racks is None:
            racks = tuple(dict.fromkeys(k.rack for k in keys.rows if k.rack and k.quantity in _MEASURED))
            self._shapes.put(keys.id, racks)
        return racks

    def _add(self, rack: str) -> RackAssessor | None:
        if len(self.racks) >= self.max_racks:
            if len(self.refused) < MAX_RACKS:  # the names kept for the log and the metric, bounded too
                self.refused.add(rack)
            return None
        c = self.configured.get(rack, Configured())
        a = self.racks[rack] = RackAssessor(
            rack, self.cfg.limits(rack, c.nominal_ah), self.cfg.period_of(rack, c.period_s), table=self.table
        )
        return a

    @property
    def left_out(self) -> int:
        return sum(a.left_out for a in self.racks.values())


def assessment_batch(results: Sequence[Assessment]) -> Batch:
    """The samples of these assessments, each at the end of its discharge: `assessed_capacity` (Ah) and,
    with a nominal capacity, `assessed_soh` (%)."""
    samples: list[Sample] = []
    for a in results:
        samples.append(Sample(a.end_ns, "assessed_capacity", round(a.capacity_ah, 3), "Ah", rack=a.rack))
        if a.soh_pct is not None:
            samples.append(Sample(a.end_ns, "assessed_soh", round(a.soh_pct, 2), "%", rack=a.rack))
    return Batch.of_samples(SOURCE, samples, device=SOURCE)
