"""The estimators against the simulator's truth (no event loop): a simulated rack on the capacity test
with a weak cell, a high-resistance cell, a stuck cell voltage reading, a rack voltage bias, a BMS that
overstates SoH by 5 points and whose SoC drifts, a dropout (a gap) and a comm-loss stretch; its batches
through `chunks_from_batches` and every estimator, each figure held against the truth document."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from gateway.assess.capacity import CapacityResult, UsableCapacity
from gateway.assess.cells import CellAnalysis, CellsResult
from gateway.assess.completeness import Completeness, CompletenessResult
from gateway.assess.consistency import PackVoltage, PackVoltageResult, SocDrift, SocDriftResult
from gateway.assess.cycles import Limits
from gateway.assess.findings import Finding, findings
from gateway.assess.sensors import SensorCheck, SensorsResult
from gateway.assess.series import CellId, chunks_from_batches
from gateway.model import QUALITY_CODE, Batch
from gateway.sources.sim import truth
from gateway.sources.sim.config import SimulatedSourceConfig
from gateway.sources.sim.feed import NS, RackFeed

RACK = "rack-t"
PERIOD = 10.0  # s: one sample every 1 s interval x speed 10 (the model steps 1 s)
HOURS = 13.0  # two full discharges (the second ends about 12.7 h in) with partial cycles between
START_NS = 1_700_000_000 * NS
COMM_LOSS = QUALITY_CODE["comm_loss"]
COMM_LOSS_S = (7.5 * 3600, 7.5 * 3600 + 1200)  # 20 min of comm_loss quality, between the full discharges
MARGIN_V = 0.05  # at 10 s a sample the last one before the cutoff is up to 0.03 V above it (cycles.py)

FAULTY: dict[str, Any] = {
    "cells": {
        "capacity_sd": 0.01,
        "weak": [{"module": 2, "cell": 5, "capacity_factor": 0.9}],
        "high_resistance": [{"module": 1, "cell": 9, "resistance_factor": 3.0}],
    },
    "bms": {"soh_offset": 5.0, "capacity_ah": 280.0, "soc_drift_per_day": 5.0},
    "pack_voltage_bias": 0.8,
    "faults": [
        {"kind": "stuck_voltage", "at": 4 * 3600, "duration": 3 * 3600, "module": 1, "cell": 3},
        {"kind": "dropout", "at": 5 * 3600, "duration": 1800},
    ],
}


def rack_config(modules: int, cells_per_module: int, **extra: Any) -> SimulatedSourceConfig:
    return SimulatedSourceConfig.model_validate(
        {
            "name": RACK,
            "modules": modules,
            "cells_per_module": cells_per_module,
            "interval": 1.0,
            "speed": PERIOD,
            "clock": "simulated",
            "current_profile": "capacity_test",
            **extra,
        }
    )


@dataclass
class Run:
    """The truth document and what the estimators made of the samples."""

    doc: dict[str, Any]
    comm_loss_steps: int
    capacity: CapacityResult
    cells: CellsResult
    sensors: SensorsResult
    pack: PackVoltageResult
    soc: SocDriftResult
    completeness: CompletenessResult
    findings: list[Finding]
    seconds: float

    @property
    def params(self) -> dict[str, Any]:
        return self.doc["parameters"]  # type: ignore[no-any-return]

    def phases(self, phase: str) -> list[dict[str, Any]]:
        return [e for e in self.doc["events"] if e.get("phase") == phase]


def comm_loss(batches: list[Batch], start_s: float, end_s: float) -> tuple[list[Batch], int]:
    """The batches with those of [start, end) s after START_NS turned to comm_loss quality, repeating
    the last values known (as a source does when its device stops answering), and how many were."""
    out: list[Batch] = []
    last: Batch | None = None
    turned = 0
    for b in batches:
        t = (int(b.ts[0]) - START_NS) / NS
        if start_s <= t < end_s and last is not None:
            q = np.full(b.n, COMM_LOSS, dtype=np.uint8)
            out.append(Batch(b.source, b.keys, b.ts, last.values, q, None, last.objects, device=b.device))
            turned += 1
            continue
        last = b
        out.append(b)
    return out, turned


def simulate_and_assess(cfg: SimulatedSourceConfig, lost: tuple[float, float] | None = None) -> Run:
    t0 = time.perf_counter()
    feed = RackFeed(cfg, start_ns=START_NS)
    params = truth.parameters(feed)
    events: list[dict[str, object]] = []
    batches: list[Batch] = []
    for out in feed.run(HOURS * 3600):
        events += out.events
        if out.batch is not None and out.batch.n:
            batches.append(out.batch)
    doc: dict[str, Any] = truth.document(params, events)
    turned = 0
    if lost is not None:
        batches, turned = comm_loss(batches, *lost)
    # The capacity test's own limits, with the margin a 10 s record needs; SoH against the usable
    # capacity of a rack of nominal cells at those limits (the truth's SoH is stated so).
    test = doc["parameters"]["test"]
    limits = Limits(full_v=test["charge_voltage"], taper_v=test["charge_voltage"] - 0.05,
                    empty_v=test["cutoff_voltage"], margin_v=MARGIN_V,
                    nominal_ah=doc["parameters"]["nominal_usable_capacity_ah"])  # fmt: skip
    cap, cells, sensors = UsableCapacity(limits), CellAnalysis(limits), SensorCheck()
    pack, soc, done = PackVoltage(), SocDrift(limits=limits), Completeness(PERIOD)
    for chunk in chunks_from_batches(batches, RACK, PERIOD):
        for e in (cap, cells, sensors, pack, soc, done):
            e.update(chunk)
    c, ce, se, pa, so, co = cap.result(), cells.result(), sensors.result(), pack.result(), soc.result(), done.result()
    return Run(doc, turned, c, ce, se, pa, so, co, findings(co, c, ce, se, pa, so), time.perf_counter() - t0)


@pytest.fixture(scope="module")
def faulty() -> Run:
    return simulate_and_assess(rack_config(2, 16, **FAULTY), COMM_LOSS_S)


@pytest.fixture(scope="module")
def healthy() -> Run:
    return simulate_and_assess(rack_config(2, 16, cells={"capacity_sd": 0.01}))


def cell_findings(r: Run) -> set[tuple[str, int | None, int | None]]:
    return {(f.code, f.module, f.cell) for f in r.findings if f.cell is not None}


def test_usable_capacity_within_3_percent_of_the_truth(faulty: Run) -> None:
    usable = faulty.params["usable_capacity_ah"]
    # the truth's own account of each discharge agrees (the discharges the estimator measured)
    assert [e["discharged_ah"] for e in faulty.phases("rest_empty")] == pytest.approx([usable] * 2, rel=0.001)
    c = faulty.capacity
    assert c.insufficient is None and len(c.discharges) == 2 and c.incomplete_discharges == 0
    assert c.independent_ah == pytest.approx(usable, rel=0.03)
    for d in c.discharges:
        assert d.ah == pytest.approx(usable, rel=0.03)
    assert c.independent_soh_pct == pytest.approx(faulty.params["true_soh_pct"], rel=0.03)


def test_soh_overstated_by_5_points(faulty: Run) -> None:
    c = faulty.capacity
    assert c.bms_soh_pct == pytest.approx(faulty.params["bms"]["soh_reported_pct"], abs=0.01)
    assert c.soh_difference_pct == pytest.approx(5.0, abs=1.5)
    assert c.verdict == "soh_overstated"
    assert [f.severity for f in faulty.findings if f.code == "soh_overstated"] == ["major"]


def test_the_weak_and_the_high_resistance_cell_are_found_and_no_other_cell(faulty: Run) -> None:
    weak = {(w["module"], w["cell"]) for w in faulty.params["weak_cells"]}
    high = {(h["module"], h["cell"]) for h in faulty.params["high_resistance_cells"]}
    stuck = {(f["module"], f["cell"]) for f in faulty.params["faults"] if f["kind"] == "stuck_voltage"}
    assert set(faulty.cells.weak) == {CellId(*c) for c in weak}
    assert set(faulty.cells.high_resistance) == {CellId(*c) for c in high}
    expected = {("weak_cell", *c) for c in weak} | {("high_resistance_cell", *c) for c in high}
    expected |= {("stuck_sensor", *c) for c in stuck}
    assert cell_findings(faulty) == expected  # nothing else about any cell
    # the weak cell has the lowest relative capacity, the high-resistance one about its factor
    ids = faulty.cells.cell_ids
    assert ids[int(np.nanargmin(faulty.cells.relative_capacity))] in {CellId(*c) for c in weak}
    (hm, hc), factor = next(iter(high)), faulty.params["high_resistance_cells"][0]["resistance_factor"]
    assert faulty.cells.relative_resistance[ids.index(CellId(hm, hc))] == pytest.approx(factor, rel=0.15)


def test_the_stuck_sensor_is_found(faulty: Run) -> None:
    froze = [e for e in faulty.doc["events"] if e["event"] == "stuck"]
    assert [(e["quantity"], e["module"], e["cell"]) for e in froze] == [("cell_voltage", 1, 3)]
    flags = [(s.family, s.sensor, s.problem) for s in faulty.sensors.flags]
    assert flags == [("cell_voltage", CellId(1, 3), "stuck")]


def test_pack_voltage_bias_within_0_3_v(faulty: Run) -> None:
    assert faulty.pack.bias_v == pytest.approx(faulty.params["pack_voltage_bias_v"], abs=0.3)
    assert [f.code for f in faulty.findings if f.code == "pack_voltage_bias"] == ["pack_voltage_bias"]


def test_soc_drift_counted_with_the_bms_reported_capacity(faulty: Run) -> None:
    assert faulty.soc.capacity_source == "bms_capacity"
    assert faulty.soc.capacity_ah == pytest.approx(faulty.params["bms"]["soc_basis_ah"])
    assert faulty.soc.drift_pct_per_day == pytest.approx(faulty.params["bms"]["soc_drift_per_day"], abs=1.0)
    assert any(f.code == "soc_drift" for f in faulty.findings)


def test_coverage_within_0_005_with_a_known_gap_and_comm_loss(faulty: Run) -> None:
    done = faulty.completeness
    dropout = next(f for f in faulty.params["faults"] if f["kind"] == "dropout")
    lost_s = COMM_LOSS_S[1] - COMM_LOSS_S[0]
    assert faulty.comm_loss_steps == lost_s / PERIOD
    window_s = done.expected_steps * PERIOD
    assert window_s == pytest.approx(HOURS * 3600, abs=2 * PERIOD)
    expected = 1.0 - (dropout["duration"] + lost_s) / window_s
    assert done.coverage == pytest.approx(expected, abs=0.005)
    assert done.gap_count == 1 and done.gap_seconds == pytest.approx(dropout["duration"], abs=PERIOD)
    gap = done.gaps[0]
    assert (gap.start_ns - START_NS) / NS == pytest.approx(dropout["at"], abs=PERIOD)
    assert done.comm_loss_seconds == pytest.approx(lost_s, abs=PERIOD)


def test_a_healthy_rack_gives_no_cell_findings(healthy: Run) -> None:
    assert healthy.cells.weak == () and healthy.cells.high_resistance == ()
    assert healthy.sensors.flags == ()
    assert healthy.capacity.independent_ah == pytest.approx(healthy.params["usable_capacity_ah"], rel=0.03)
    assert healthy.capacity.verdict == "consistent"
    assert healthy.pack.bias_v == pytest.approx(0.0, abs=0.3)
    assert healthy.completeness.coverage == pytest.approx(1.0, abs=0.005)
    assert healthy.findings == []


def test_a_240_cell_rack_against_the_truth() -> None:
    cells: dict[str, Any] = {
        **FAULTY["cells"],
        "weak": [{"module": 7, "cell": 5, "capacity_factor": 0.9}],
        "high_resistance": [{"module": 12, "cell": 9, "resistance_factor": 3.0}],
    }
    faults = [{**FAULTY["faults"][0], "module": 15, "cell": 2}, FAULTY["faults"][1]]
    r = simulate_and_assess(rack_config(20, 12, **{**FAULTY, "cells": cells, "faults": faults}), COMM_LOSS_S)
    assert r.capacity.independent_ah == pytest.approx(r.params["usable_capacity_ah"], rel=0.03)
    assert r.capacity.verdict == "soh_overstated"
    assert cell_findings(r) == {("weak_cell", 7, 5), ("high_resistance_cell", 12, 9), ("stuck_sensor", 15, 2)}
    assert r.pack.bias_v == pytest.approx(0.8, abs=0.3)
    dropout_s = 1800.0
    lost_s = COMM_LOSS_S[1] - COMM_LOSS_S[0]
    window_s = r.completeness.expected_steps * PERIOD
    assert r.completeness.coverage == pytest.approx(1.0 - (dropout_s + lost_s) / window_s, abs=0.005)
