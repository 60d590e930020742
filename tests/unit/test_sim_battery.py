"""The simulator's physics: SoC integrates current, voltages follow OCV, losses heat, faults act."""

from __future__ import annotations

import itertools
import math

import pytest

from gateway.catalog import CATALOG
from gateway.model import Quality
from gateway.sources.sim.battery import OCV_TABLE, Fault, RackModel, RackParams, ocv


def rack(**kw: object) -> RackModel:
    faults = kw.pop("faults", [])
    return RackModel(RackParams(**kw), faults)  # type: ignore[arg-type]


def test_ocv_is_monotonic_and_hits_the_knots() -> None:
    for soc, v in OCV_TABLE:
        assert ocv(soc) == pytest.approx(v)
    values = [ocv(s / 10) for s in range(0, 1001)]
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert ocv(-5) == ocv(0) and ocv(120) == ocv(100)


def test_soc_integrates_current() -> None:
    # Constant 140 A charge into 280 Ah cells for 0.5 h adds 25 % SoC (no spread).
    m = rack(spread=0.0, initial_soc=40.0, current_amplitude=140.0, current_period=1e12)
    m.demanded_current = lambda t: 140.0  # type: ignore[method-assign]
    for _ in range(1800):
        m.step(1.0)
    assert all(s == pytest.approx(65.0, abs=1e-6) for s in m.soc)
    # And back: a discharge of the same charge returns to the start.
    m.demanded_current = lambda t: -140.0  # type: ignore[method-assign]
    for _ in range(1800):
        m.step(1.0)
    assert all(s == pytest.approx(40.0, abs=1e-6) for s in m.soc)
    assert m.energy_charged > 0 and m.energy_discharged > 0


def test_cell_voltages_follow_ocv_at_rest_and_rise_with_charge_current() -> None:
    m = rack(current_amplitude=0.0)
    m.step(1.0)
    for soc, v in zip(m.soc, m.cell_voltages(), strict=True):
        assert v == pytest.approx(ocv(soc))
    m2 = rack(current_amplitude=0.0)
    m2.step(1.0)
    m2.current = 100.0  # charging raises the terminal voltage by I*R
    for soc, r, v in zip(m2.soc, m2.resistance, m2.cell_voltages(), strict=True):
        assert v == pytest.approx(ocv(soc) + 100.0 * r)
    assert m.rack_voltage() == pytest.approx(sum(m.cell_voltages()))


def test_losses_heat_the_modules_and_rest_cools_them() -> None:
    m = rack(current_amplitude=200.0, current_period=1e12, initial_soc=50)
    m.demanded_current = lambda t: 200.0 if t < 3600 else 0.0  # type: ignore[method-assign]
    t0 = list(m.module_temp)
    for _ in range(3600):
        m.step(1.0)
    hot = list(m.module_temp)
    assert all(h > a for h, a in zip(hot, t0, strict=True))
    for _ in range(7200):
        m.step(1.0)
    assert all(c < h for c, h in zip(m.module_temp, hot, strict=True))


def test_spread_makes_cells_differ_and_seed_repeats() -> None:
    a, b = rack(seed=7), rack(seed=7)
    assert a.soc == b.soc and a.capacity == b.capacity
    assert len(set(a.capacity)) > 1
    assert rack(seed=8).soc != a.soc


def test_weak_cell_drifts_away_from_the_others() -> None:
    m = rack(
        spread=0.0, current_amplitude=140.0, current_period=1e12, faults=[Fault("weak_cell", cell=5, severity=1.0)]
    )
    m.demanded_current = lambda t: -140.0  # type: ignore[method-assign]
    for _ in range(1200):
        m.step(1.0)
    others = [s for i, s in enumerate(m.soc) if i != 4]
    assert m.soc[4] < min(others) - 5.0
    volts = m.cell_voltages()
    assert volts.index(min(volts)) == 4


def test_contactor_open_stops_current_and_reports_open() -> None:
    m = rack(faults=[Fault("contactor_open", at=10.0)])
    m.demanded_current = lambda t: 50.0  # type: ignore[method-assign]
    m.step(5.0)
    assert m.current == 50.0
    m.step(10.0)
    m.step(1.0)
    assert m.current == 0.0
    by = {s.quantity: s.value for s in m.samples(1, "r") if s.module is None}
    assert by["contactor_positive"] == "open" and by["bms_state"] == "fault"


def test_stuck_sensor_freezes_and_dropout_is_reported() -> None:
    m = rack(
        current_amplitude=200.0, faults=[Fault("stuck_sensor", at=0.0, cell=1), Fault("dropout", at=50, duration=10)]
    )
    m.demanded_current = lambda t: 200.0  # type: ignore[method-assign]
    m.step(1.0)
    first = m.sensor_temperatures()[0]
    for _ in range(40):
        m.step(1.0)
    temps = m.sensor_temperatures()
    assert temps[0] == first and temps[1] != pytest.approx(first, abs=1e-9)
    assert not m.dropped_out()
    for _ in range(10):
        m.step(1.0)
    assert m.dropped_out()
    for _ in range(11):
        m.step(1.0)
    assert not m.dropped_out()


def test_samples_carry_tags_units_and_consistent_statistics() -> None:
    p = RackParams(modules=3, cells_per_module=5, sensors_per_module=2)
    m = RackModel(p)
    m.step(1.0)
    samples = m.samples(123, "rack-9")
    cells = [s for s in samples if s.quantity == "cell_voltage"]
    assert len(cells) == 15
    assert {(s.module, s.cell) for s in cells} == {(mo, c) for mo in range(1, 4) for c in range(1, 6)}
    assert all(s.rack == "rack-9" and s.ts == 123 and s.quality == Quality.GOOD for s in samples)
    for s in samples:  # every quantity is in the catalog, with the catalog's unit
        assert s.unit == CATALOG[s.quantity].unit, s.quantity
    by = {s.quantity: s.value for s in samples if s.module is None}
    volts = [float(s.value) for s in cells]  # type: ignore[arg-type]
    assert by["cell_voltage_max"] == pytest.approx(max(volts), abs=1e-4)
    assert by["rack_voltage"] == pytest.approx(sum(volts), abs=0.01)
    assert not math.isnan(float(by["soc"]))  # type: ignore[arg-type]
    assert len([s for s in samples if s.quantity == "cell_temperature"]) == 6
