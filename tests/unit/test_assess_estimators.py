"""The assessment's estimators on a synthetic rack with known truth (no event loop, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from gateway.assess.capacity import CapacityResult, UsableCapacity
from gateway.assess.cells import CellAnalysis, CellsResult
from gateway.assess.completeness import Completeness
from gateway.assess.consistency import PackVoltage, PackVoltageResult, SocDrift, SocDriftResult
from gateway.assess.cycles import Limits
from gateway.assess.energy import Energy, EnergyResult
from gateway.assess.findings import Finding, findings
from gateway.assess.sensors import SensorCheck, SensorsResult
from gateway.assess.series import CellId, chunks_from_batches
from gateway.model import Batch
from tests.assess_support import RACK, Synth

LIMITS = Limits(nominal_ah=100.0)


@dataclass
class Results:
    synth: Synth
    capacity: CapacityResult
    cells: CellsResult
    sensors: SensorsResult
    pack: PackVoltageResult
    soc: SocDriftResult
    energy: EnergyResult
    findings: list[Finding]


def assess(s: Synth, batches: list[Batch], soc_capacity: float | None = None, steps: int = 3600) -> Results:
    cap, cells, sens = UsableCapacity(LIMITS), CellAnalysis(LIMITS), SensorCheck()
    pack, soc, energy = PackVoltage(), SocDrift(soc_capacity, LIMITS), Energy(100.0, LIMITS)
    done = Completeness(1.0)
    for chunk in chunks_from_batches(batches, RACK, 1.0, steps=steps):
        for e in (cap, cells, sens, pack, soc, energy, done):
            e.update(chunk)
    r = Results(s, cap.result(), cells.result(), sens.result(), pack.result(), soc.result(), energy.result(), [])
    r.findings = findings(done.result(), r.capacity, r.cells, r.sensors, r.pack, r.soc)
    return r


@pytest.fixture(scope="module")
def faulty() -> Results:
    """A weak cell (85 % capacity), a high-resistance cell (3×), pack voltage reading 1.2 V high, a stuck
    temperature sensor, a BMS SoC drifting 3 points a day and a BMS SoH 5 points above the truth."""
    s = Synth(weak={5: 0.85}, high_r={11: 3.0}, pack_bias_v=1.2, stuck_temp=2, soc_drift_per_day=3.0).run()
    s.bms_soh = s.usable_soh + 5.0
    return assess(s, s.batches(), soc_capacity=float(1 / np.mean(1 / s.capacity)))


def codes(r: Results, code: str) -> list[Finding]:
    return [f for f in r.findings if f.code == code]


def test_usable_capacity_within_3_percent_of_the_truth(faulty: Results) -> None:
    truth = faulty.synth.discharged_ah[0]
    assert faulty.capacity.insufficient is None
    assert faulty.capacity.independent_ah == pytest.approx(truth, rel=0.03)
    assert len(faulty.capacity.discharges) == 2


def test_soh_overstated_when_the_bms_says_5_points_more(faulty: Results) -> None:
    assert faulty.capacity.verdict == "soh_overstated"
    assert faulty.capacity.independent_soh_pct == pytest.approx(faulty.synth.usable_soh, abs=3.0)
    assert faulty.capacity.bms_soh_pct == pytest.approx(faulty.synth.bms_soh)
    assert [f.severity for f in codes(faulty, "soh_overstated")] == ["major"]


def test_soh_consistent_and_understated() -> None:
    s = Synth().run(cycles=1)
    s.bms_soh = s.usable_soh + 1.0
    assert assess(s, s.batches()).capacity.verdict == "consistent"
    s.bms_soh = s.usable_soh - 5.0
    assert assess(s, s.batches()).capacity.verdict == "soh_understated"


def test_the_weak_and_the_high_resistance_cell_are_found_and_no_other(faulty: Results) -> None:
    assert faulty.cells.weak == (CellId(1, 6),)
    assert faulty.cells.high_resistance == (CellId(2, 4),)
    assert [(f.module, f.cell) for f in codes(faulty, "weak_cell")] == [(1, 6)]
    assert [(f.module, f.cell) for f in codes(faulty, "high_resistance_cell")] == [(2, 4)]
    rel = faulty.cells.relative_capacity
    truth = faulty.synth.capacity / np.median(faulty.synth.capacity)
    assert rel[5] == pytest.approx(truth[5], abs=0.02)
    r_truth = faulty.synth.resistance / np.median(faulty.synth.resistance)
    assert faulty.cells.relative_resistance == pytest.approx(r_truth, rel=0.05)


def test_a_healthy_rack_has_no_findings() -> None:
    s = Synth(bms_soh=0.0).run(cycles=1)
    s.bms_soh = s.usable_soh
    r = assess(s, s.batches(), soc_capacity=float(1 / np.mean(1 / s.capacity)))
    assert r.findings == []
    assert r.cells.weak == () and r.cells.high_resistance == ()


def test_stuck_temperature_sensor_is_found(faulty: Results) -> None:
    assert [(f.problem, f.sensor) for f in faulty.sensors.flags] == [("stuck", CellId(1, 3))]
    assert [(f.module, f.cell) for f in codes(faulty, "stuck_sensor")] == [(1, 3)]


def test_stuck_cell_voltage_sensor_is_found() -> None:
    s = Synth(stuck_cell=9).run(cycles=1)
    r = assess(s, s.batches())
    stuck = [f.sensor for f in r.sensors.flags if f.problem == "stuck" and f.family == "cell_voltage"]
    assert stuck == [CellId(2, 2)]


def test_pack_voltage_bias_within_0_3_v(faulty: Results) -> None:
    assert faulty.pack.bias_v == pytest.approx(1.2, abs=0.3)
    assert faulty.pack.residual_v == pytest.approx(0.05, abs=0.02)
    assert len(codes(faulty, "pack_voltage_bias")) == 1


def test_soc_drift_per_day(faulty: Results) -> None:
    assert faulty.soc.drift_pct_per_day == pytest.approx(3.0, abs=0.5)
    assert len(codes(faulty, "soc_drift")) == 1


def test_energy_throughput_cycles_and_efficiency(faulty: Results) -> None:
    e = faulty.energy
    assert e.ah_out == pytest.approx(sum(faulty.synth.discharged_ah), rel=0.01)
    assert e.equivalent_full_cycles == pytest.approx(e.ah_out / 100.0)
    assert e.round_trip_efficiency is not None and 0.9 < e.round_trip_efficiency < 1.0
    assert len(e.cycles) == 2


def test_coverage_with_a_known_gap_and_comm_loss_stretch() -> None:
    s = Synth().run(cycles=1)
    n = len(s.t)
    gap, loss = (5000, 5700), (9000, 9300)
    done = Completeness(1.0, start_ns=int(s.t[0]), end_ns=int(s.t[-1]) + 1_000_000_000)
    for chunk in chunks_from_batches(s.batches(per_batch=7, gap=gap, comm_loss=loss), RACK, 1.0, steps=1000):
        done.update(chunk)
    r = done.result()
    assert r.coverage == pytest.approx((n - 700 - 300) / n, abs=0.005)
    assert r.expected_steps == n
    assert [(g.start_ns, g.seconds) for g in r.gaps] == [(int(s.t[5000]), 700.0)]
    assert r.comm_loss_seconds == 300.0
    assert findings(r) == [] or findings(r)[0].code == "low_coverage"


def test_low_coverage_finding_and_a_window_wider_than_the_data() -> None:
    s = Synth().run(cycles=1)
    n = len(s.t)
    done = Completeness(1.0, start_ns=int(s.t[0]) - n * 1_000_000_000, end_ns=int(s.t[-1]) + 1_000_000_000)
    for chunk in chunks_from_batches(s.batches(), RACK, 1.0):
        done.update(chunk)
    r = done.result()
    assert r.coverage == pytest.approx(0.5, abs=0.005)
    assert r.gap_seconds == n
    assert [f.code for f in findings(r)] == ["low_coverage"]


def test_insufficient_data_is_said_not_guessed() -> None:
    s = Synth().run(cycles=1)
    part = [b for b in s.batches() if b.ts[0] < s.t[1500]]  # rest and part of a discharge: no cutoff
    r = assess(s, part)
    assert r.capacity.independent_ah is None and r.capacity.insufficient
    assert r.capacity.verdict is None and r.capacity.verdict_insufficient
    assert r.cells.capacity_insufficient and not r.cells.weak
    assert r.soc.drift_pct_per_day is None and r.soc.insufficient
    assert r.energy.round_trip_efficiency is None and r.energy.insufficient
    assert r.findings == []
    nothing = Completeness(1.0).result()
    assert nothing.coverage is None and nothing.insufficient


def test_a_hole_in_the_current_record_voids_that_discharge() -> None:
    s = Synth().run(cycles=1)
    r = assess(s, s.batches(gap=(2000, 2200)))
    assert r.capacity.independent_ah is None
    assert r.capacity.incomplete_discharges == 1


def test_chunk_size_does_not_change_the_results(faulty: Results) -> None:
    s = faulty.synth
    small = assess(s, s.batches(per_batch=13), soc_capacity=faulty.soc.capacity_ah, steps=500)
    assert small.capacity.independent_ah == pytest.approx(faulty.capacity.independent_ah, rel=1e-9)
    assert small.cells.weak == faulty.cells.weak
    assert small.cells.high_resistance == faulty.cells.high_resistance
    assert small.pack.bias_v == pytest.approx(faulty.pack.bias_v, abs=0.01)
    assert small.energy.kwh_out == pytest.approx(faulty.energy.kwh_out, rel=1e-9)
    assert [f.code for f in small.findings] == [f.code for f in faulty.findings]
