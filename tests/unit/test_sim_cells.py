"""The simulated rack's assessment parameters: per-cell capacity and resistance, weak and high-resistance
cells, SoH and fade, the BMS's reports with their errors, the rack voltage bias, stuck readings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gateway.model import Batch
from gateway.sources.sim import truth
from gateway.sources.sim.config import SimulatedSourceConfig
from gateway.sources.sim.feed import RackFeed, model_from


def sim(**kw: Any) -> SimulatedSourceConfig:
    return SimulatedSourceConfig.model_validate({"name": "r", "clock": "simulated", **kw})


def value(batch: Batch, quantity: str, module: int | None = None, cell: int | None = None) -> float:
    i = next(i for i, k in enumerate(batch.keys.rows) if (k.quantity, k.module, k.cell) == (quantity, module, cell))
    return float(batch.values[i])


def cells_of(batch: Batch) -> np.ndarray:
    return batch.values[[i for i, k in enumerate(batch.keys.rows) if k.quantity == "cell_voltage"]]


def test_a_weak_cell_reaches_the_cutoff_first_and_the_charge_limit_first() -> None:
    cfg = sim(modules=2, cells_per_module=6, spread=0.0, current_profile="capacity_test",
              capacity_test={"rest": 60, "partial_cycles": 0}, cells={"weak": [{"module": 2, "cell": 3,
              "capacity_factor": 0.8}]})  # fmt: skip
    feed = RackFeed(cfg)
    last: Batch | None = None
    ends: dict[str, tuple[dict[str, object], Batch]] = {}
    for out in feed.run(12 * 3600):
        for ev in out.events:
            if ev["event"] == "phase" and ev["phase"] in ("rest_full", "rest_empty") and last is not None:
                ends.setdefault(str(ev["phase"]), (ev, last))  # the batch before: the limit just reached
        last = out.batch
        if "rest_empty" in ends:
            break
    assert set(ends) == {"rest_full", "rest_empty"}
    for phase, position in (("rest_full", "cell_voltage_max_position"), ("rest_empty", "cell_voltage_min_position")):
        ev, batch = ends[phase]
        assert (ev["module"], ev["cell"]) == (2, 3)
        assert value(batch, position) == 6 + 3
        volts = cells_of(batch)
        others = np.delete(volts, 8)
        # the weak cell has left the others at the end of charge (above) and of discharge (below)
        assert abs(volts[8] - np.median(others)) > 0.05 and np.ptp(others) < 0.01
    assert value(ends["rest_empty"][1], "cell_voltage_min") <= 2.8 < float(np.delete(cells_of(ends["rest_empty"][1]),
                                                                                      8).min())  # fmt: skip


def test_the_rack_voltage_is_the_sum_of_the_cells_plus_its_bias() -> None:
    feed = RackFeed(sim(pack_voltage_bias=1.5, current_amplitude=150.0))
    for out in feed.run(120):
        b = out.batch
        assert b is not None
        volts = cells_of(b)
        assert value(b, "rack_voltage") == pytest.approx(volts.sum() + 1.5, abs=0.01)
        modules = sum(value(b, "module_voltage", m) for m in range(1, 5))
        assert modules == pytest.approx(volts.sum(), abs=0.01)  # the modules carry no bias
    plain = RackFeed(sim(current_amplitude=150.0))
    assert [value(o.batch, "rack_voltage") - 1.5 for o in RackFeed(sim(pack_voltage_bias=1.5, current_amplitude=150.0))
            .run(10) if o.batch] == pytest.approx([value(o.batch, "rack_voltage") for o in plain.run(10) if o.batch],
                                                  abs=0.011)  # fmt: skip


def test_a_stuck_cell_voltage_and_a_stuck_temperature_hold_their_values() -> None:
    faults = [
        {"kind": "stuck_voltage", "at": 20, "duration": 60, "module": 2, "cell": 4},
        {"kind": "stuck_sensor", "at": 10, "module": 3, "cell": 2},
    ]
    feed = RackFeed(sim(current_amplitude=200.0, current_period=120.0, faults=faults))
    outs = list(feed.run(150))
    batches = [o.batch for o in outs if o.batch is not None]
    stuck = [value(b, "cell_voltage", 2, 4) for b in batches]
    other = [value(b, "cell_voltage", 2, 5) for b in batches]
    during = slice(19, 79)  # samples at t = 20 .. 79 s
    assert len(set(stuck[during])) == 1 and len(set(other[during])) > 10
    assert len(set(stuck[85:])) > 10  # the fault ended: the reading follows the cell again
    temps = [value(b, "cell_temperature", 3, 2) for b in batches]
    assert len(set(temps[10:])) == 1 and len({value(b, "cell_temperature", 3, 1) for b in batches}) > 10
    events = [e for o in outs for e in o.events]
    froze = [e for e in events if e["event"] == "stuck"]
    assert [(e["quantity"], e["module"], e["cell"]) for e in froze] == [("cell_temperature", 3, 2),
                                                                       ("cell_voltage", 2, 4)]  # fmt: skip
    assert round(float(froze[1]["value"]), 4) == stuck[30] and froze[1]["t"] == 20.0  # type: ignore[arg-type]
    began = {(e["kind"], e["module"], e["cell"]) for e in events if e["event"] == "fault"}
    assert began == {("stuck_voltage", 2, 4), ("stuck_sensor", 3, 2)}


def test_the_bms_reports_soh_with_its_offset() -> None:
    feed = RackFeed(sim(spread=0.0, cells={"soh": 90.0}, bms={"soh_offset": 5.0}))
    b = feed.next().batch
    assert b is not None
    params = truth.parameters(feed)
    assert params["true_soh_pct"] == pytest.approx(90.0, abs=0.01)  # spread 0: usable scales with capacity
    assert value(b, "soh") == round(float(params["true_soh_pct"]) + 5.0, 2)  # type: ignore[arg-type]
    assert params["bms"]["soh_reported_pct"] == pytest.approx(95.0, abs=0.01)  # type: ignore[index]
    assert not any(k.quantity == "capacity_full" for k in b.keys.rows)  # reports no capacity unless told


def test_the_bms_soc_is_its_coulomb_count_with_gain_offset_and_drift() -> None:
    common = {"current_amplitude": 120.0, "current_period": 7200.0, "interval": 60.0, "max_step": 60.0}
    plain = RackFeed(sim(**common))
    wrong = RackFeed(sim(**common, bms={"soc_gain": 1.02, "soc_offset": -3.0, "soc_drift_per_day": 2.0}))
    n = 0
    for a, b in zip(plain.run(2 * 86400), wrong.run(2 * 86400), strict=True):
        assert a.batch is not None and b.batch is not None
        days = plain.model.t / 86400
        assert value(b.batch, "soc") == pytest.approx(1.02 * value(a.batch, "soc") - 3.0 + 2.0 * days, abs=0.012)
        n += 1
    assert n == 2 * 1440


def test_the_bms_counts_against_its_reported_capacity() -> None:
    m = model_from(sim(spread=0.0, bms={"capacity_ah": 250.0}))
    m.demanded_current = lambda t: 50.0  # type: ignore[method-assign]
    start = m.reading()
    for _ in range(3600):
        m.step(1.0)
    r = m.reading()
    by = {k.quantity: float(v) for k, v in zip(r.rows, r.values, strict=True) if k.module is None}
    soc0 = float(start.values[[k.quantity for k in start.rows].index("soc")])
    assert by["soc"] == pytest.approx(soc0 + 100.0 * 50.0 / 250.0, abs=0.01)  # 50 Ah into a 250 Ah count
    assert by["capacity_full"] == 250.0 and by["capacity_remaining"] == pytest.approx(2.5 * by["soc"], abs=0.01)


def test_cells_from_a_spread_explicit_values_and_injected_outliers() -> None:
    cells = {
        "capacity_sd": 0.02, "resistance_ohm": 0.0004, "resistance_sd": 0.1, "seed": 9,
        "values": [{"module": 1, "cell": 1, "capacity_ah": 300.0, "resistance_ohm": 0.001}],
        "weak": [{"module": 1, "cell": 2, "capacity_factor": 0.5}],
        "high_resistance": [{"module": 1, "cell": 3, "resistance_factor": 4.0}],
    }  # fmt: skip
    a, b = model_from(sim(cells=cells)), model_from(sim(cells=cells, seed=5))
    assert np.array_equal(a.start.capacity, b.start.capacity)  # the cells' own seed decides their draws
    assert not np.array_equal(a.start.capacity, model_from(sim(cells={**cells, "seed": 10})).start.capacity)
    cap, res = a.start.capacity, a.start.resistance
    assert cap[0] == 300.0 and res[0] == 0.001
    rest = slice(3, None)
    assert cap[rest].mean() == pytest.approx(280.0, rel=0.02) and 0.01 < cap[rest].std() / 280.0 < 0.03
    assert res[rest].mean() == pytest.approx(0.0004, rel=0.1) and 0.05 < res[rest].std() / 0.0004 < 0.15
    c2 = model_from(sim(cells={**cells, "weak": [], "high_resistance": []})).start
    assert cap[1] == pytest.approx(0.5 * c2.capacity[1]) and res[2] == pytest.approx(4.0 * c2.resistance[2])
    params = truth.parameters(RackFeed(sim(cells=cells)))
    listed = params["cells"]
    assert isinstance(listed, list) and len(listed) == 48
    assert listed[1] == {"module": 1, "cell": 2, "capacity_ah": cap[1], "resistance_ohm": res[1],
                         "initial_soc": a.start.soc[1]}  # fmt: skip
    assert params["weak_cells"] == [{"module": 1, "cell": 2, "capacity_factor": 0.5}]
    assert params["high_resistance_cells"] == [{"module": 1, "cell": 3, "resistance_factor": 4.0}]
    assert params["rack_capacity_ah"] == cap.min()
    with pytest.raises(ValueError, match="module 5 cell 1 is not in a rack of 48 cells"):
        model_from(sim(cells={"weak": [{"module": 5, "cell": 1, "capacity_factor": 0.9}]}))


def test_capacity_fades_per_equivalent_full_cycle() -> None:
    m = model_from(sim(spread=0.0, current_amplitude=280.0, current_period=3600.0, cells={"fade_per_cycle": 0.01}))
    usable0 = m.usable_capacity()
    for _ in range(4 * 3600):
        m.step(1.0)
    efc = m.throughput_ah / (2 * 280.0)
    assert efc > 0.5
    assert m.cell_capacity == pytest.approx(280.0 * (1 - 0.01 * efc))
    assert m.usable_capacity() == pytest.approx(usable0 * (1 - 0.01 * efc), rel=1e-3)
