"""Golden cases of the one alarm path over columns: transitions worked out by hand, not by a second engine."""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.ruleset import defaults_path, load_rule_file
from gateway.model import Batch, Keys, Quality, Sample
from tests.alarms_support import RACK, S, batch, engine, events, rule, sample, states

UA, RTN, N, ACK = "active_unack", "rtn_unack", "normal", "active_ack"


def cells(t: float, volts: list[float], rack: str = RACK, per_module: int = 10, **over: Any) -> list[Sample]:
    out = [sample(t, "cell_voltage", v, module=i // per_module + 1, cell=i % per_module + 1, unit="V", rack=rack)
           for i, v in enumerate(volts)]  # fmt: skip
    for i, changes in over.items():
        k = int(i[1:])
        out[k] = out[k]._replace(**changes)
    return out


def ids(out: list[Batch]) -> list[tuple[str, str]]:
    return [(e["alarm_id"], e["state"]) for e in events(out)]


def test_one_cell_of_a_thousand_beyond_a_limit_raises_one_alarm_and_clears_past_the_deadband() -> None:
    eng = engine(rule(id="cov", kind="threshold", quantity="cell_voltage", high=3.65, deadband=0.05))
    volts = [3.30] * 1000
    assert eng.process([batch(*cells(0, volts))]) == []
    volts[437] = 3.70  # module 44, cell 8
    assert ids(eng.process([batch(*cells(1, volts))])) == [("rack-01:cov:m44c8", UA)]
    volts[437] = 3.62  # back under 3.65, not under 3.60: still beyond (hysteresis)
    assert ids(eng.process([batch(*cells(2, volts))])) == []
    volts[437] = 3.59
    assert ids(eng.process([batch(*cells(3, volts))])) == [("rack-01:cov:m44c8", RTN)]
    assert len(eng.instances) == 1  # only the cell in view is tracked


def test_values_a_numeric_rule_does_not_take() -> None:
    """NaN, infinity, text, a bad quality: no verdict; a boolean counts as 1."""
    eng = engine(rule(id="cuv", kind="threshold", quantity="cell_voltage", low=2.5))
    out = eng.process([batch(*cells(0, [float("nan"), float("inf"), 3.3, 3.3, 3.3], c2={"value": "low"},
                                    c3={"value": 1.0, "quality": Quality.BAD}, c4={"value": True}))])  # fmt: skip
    assert ids(out) == [("rack-01:cuv:m1c5", UA)]  # True is 1 V: below 2.5 V
    assert events(out)[0]["value"] == 1.0


def test_an_alarm_raised_in_one_key_table_clears_in_another() -> None:
    """A CAN window's key table depends on which frames arrived: the alarm belongs to the element, not the table."""
    eng = engine(rule(id="ot", kind="threshold", quantity="cell_temperature", high=55.0))
    first = batch(sample(0, "cell_temperature", 60.0, module=2, cell=3), sample(0, "soc", 50.0))
    assert ids(eng.process([first])) == [("rack-01:ot:m2c3", UA)]
    other = batch(sample(1, "rack_current", 5.0), *[sample(1, "cell_temperature", 25.0, module=2, cell=c)
                                                     for c in (1, 2, 3)])  # fmt: skip
    assert first.keys is not other.keys
    assert ids(eng.process([other])) == [("rack-01:ot:m2c3", RTN)]


def test_rate_of_an_element_read_several_times_in_one_window_across_tables() -> None:
    """Rise limit 1 °C/s, consecutive readings. Hand-computed rates for cell 1: 0.5, 3.0, 0.5, then -1.0/s."""
    eng = engine(rule(id="tr", kind="rate", quantity="cell_temperature", rise=1.0))
    w1 = batch(sample(0, "cell_temperature", 25.0, cell=1), sample(0, "cell_temperature", 30.0, cell=2),
               sample(2, "cell_temperature", 26.0, cell=1))  # fmt: skip
    assert ids(eng.process([w1])) == []  # 0.5 °C/s
    w2 = batch(sample(3, "cell_temperature", 29.0, cell=1), sample(4, "cell_temperature", 29.5, cell=1),
               sample(4, "soc", 50.0), sample(5, "cell_temperature", 28.5, cell=1))  # fmt: skip
    out = eng.process([w2])
    assert ids(out) == [("rack-01:tr:c1", UA), ("rack-01:tr:c1", RTN)]  # 3.0 °C/s at 3 s, 0.5 °C/s at 4 s
    assert [e["value"] for e in events(out)] == [3.0, 0.5]
    assert [e["ts"] for e in events(out)] == [3 * S, 4 * S]


def test_spread_per_module_ignores_points_it_cannot_take() -> None:
    eng = engine(rule(id="sp", kind="spread", quantity="cell_voltage", scope="module", high=0.10, min_count=3))
    # module 1: 3.30 3.45 3.31 (a bad 3.90 left out): 0.15; module 2: 3.30 NaN 3.50 -> two values, too few
    volts = [3.30, 3.45, 3.31, 3.90, 3.30, float("nan"), 3.50]
    out = eng.process([batch(*cells(0, volts, per_module=4, c3={"quality": Quality.BAD}))])
    (ev,) = events(out)
    assert ev["alarm_id"] == "rack-01:sp:m1" and ev["value"] == 3.45 - 3.30
    assert ev["message"] == "cell_voltage spread m1 0.15 V (max 3.45 at m1c2, min 3.3 at m1c1) above 0.1 V"


def test_pack_voltage_against_the_sum_of_good_cells() -> None:
    pv = rule(id="pv", kind="disagreement", quantity="rack_voltage", versus="sum:cell_voltage", tolerance=0.5,
              min_count=4)  # fmt: skip
    eng = engine(pv)
    assert ids(eng.process([batch(sample(0, "rack_voltage", 13.2), *cells(0, [3.3] * 4))])) == []
    out = eng.process([batch(sample(1, "rack_voltage", 14.0), *cells(1, [3.3] * 4))])  # 14.0 - 13.2 = 0.8
    assert ids(out) == [("rack-01:pv", UA)] and abs(events(out)[0]["value"] - 0.8) < 1e-9
    bad = cells(2, [3.3] * 4, c0={"quality": Quality.BAD})  # three good cells: no sum, no verdict
    assert ids(eng.process([batch(sample(2, "rack_voltage", 13.2), *bad)])) == []
    assert ids(eng.process([batch(sample(3, "rack_voltage", 13.2), *cells(3, [3.3] * 4))])) == [("rack-01:pv", RTN)]


def test_bits_from_numbers_and_text() -> None:
    eng = engine(rule(id="bms", kind="bms_bits", prefix="warning."))
    out = eng.process([batch(sample(0, "warning.fan", "on"), sample(0, "warning.door", 0),
                             sample(0, "warning.ov", 2.0), sample(0, "warning.uv", "ok"))])  # fmt: skip
    assert ids(out) == [("rack-01:bms:fan", UA), ("rack-01:bms:ov", UA)]
    out = eng.process([batch(sample(1, "warning.fan", "off"), sample(1, "warning.ov", 1.0))])
    assert ids(out) == [("rack-01:bms:fan", RTN)]


def test_a_rack_lost_raises_comm_loss_only_and_quality_alarms_follow_their_elements() -> None:
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    eng = AlarmEngine(rules, {RACK: RACK})
    healthy = cells(0, [3.3] * 40)
    assert eng.process([batch(*healthy)]) == []
    lost = [s._replace(ts=1 * S, value=None, quality=Quality.COMM_LOSS) for s in healthy]
    assert ids(eng.process([batch(*lost)])) == [("rack-01:comm_loss", UA)]
    back = cells(2, [3.3] * 40, c7={"quality": Quality.BAD, "value": None})
    assert ids(eng.process([batch(*back)])) == [("rack-01:comm_loss", RTN)]  # bad_quality has an on-delay of 5 s
    out = [eng.process([batch(*cells(t, [3.3] * 40, c7={"quality": Quality.BAD, "value": None}))])
           for t in range(3, 9)]  # fmt: skip
    assert [ids(o) for o in out] == [[], [], [], [], [("rack-01:bad_quality:cell_voltage:m1c8", UA)], []]  # at 7 s
    assert eng.quality_watch == 1
    assert ids(eng.process([batch(*cells(9, [3.3] * 40))])) == [("rack-01:bad_quality:cell_voltage:m1c8", RTN)]


def test_work_is_compiled_once_per_key_table_and_the_cache_is_bounded() -> None:
    eng = engine(rule(id="cov", kind="threshold", quantity="cell_voltage", high=3.65))
    b1, b2 = batch(*cells(0, [3.3] * 5)), batch(*cells(1, [3.3] * 5))
    assert b1.keys is b2.keys  # interned: the same table
    eng.process([b1, b2])
    assert len(eng.plans) == 1
    eng.plans.size = 3
    for n in range(6, 12):
        eng.process([batch(*cells(n, [3.3] * n))])
    assert len(eng.plans) == 3


def test_a_batch_made_from_columns_directly() -> None:
    """What a source hands over: columns and an interned key table, no samples anywhere."""
    keys = Keys.of([("cell_voltage", "V", RACK, 1, c) for c in range(1, 4)])
    eng = engine(rule(id="cov", kind="threshold", quantity="cell_voltage", high=3.65))
    b = Batch(RACK, keys, np.full(3, 5 * S, dtype=np.int64), np.array([3.3, 3.7, 3.3]), np.zeros(3, dtype=np.uint8),
              device=RACK)  # fmt: skip
    out = eng.process([b])
    assert ids(out) == [("rack-01:cov:m1c2", UA)] and events(out)[0]["ts"] == 5 * S


def test_latch_ack_and_restore_follow_the_same_instances() -> None:
    cov = rule(id="cov", kind="threshold", quantity="cell_voltage", high=3.65, latch=True)
    eng = engine(cov)
    assert states(eng.process([batch(*cells(0, [3.3, 3.7]))])) == [(N, UA)]
    assert states(eng.process([batch(*cells(1, [3.3, 3.3]))])) == []  # latched
    journal = eng.take_journal()
    again = engine(cov)
    again.restore(journal, 2 * S)
    errors, out = again.command("ack", ["rack-01:cov:m1c2"], "op", None, 3 * S)
    assert errors == [] and states(out) == [(UA, N)]  # the condition had gone: the ack resets it
    assert states(again.process([batch(*cells(4, [3.3, 3.7]))])) == [(N, UA)]


def test_the_limits_on_one_quantity_in_one_pass_each_rule_its_own_transitions() -> None:
    """Four limits on the cell voltage (high 3.65/3.55, low 2.5/2.8) and one of rack-02 only (3.40): each rule
    raises its own points, hysteresis per rule, and a quiet batch still clears the instances."""
    eng = engine(rule(id="ov", kind="threshold", quantity="cell_voltage", high=3.65, deadband=0.05),
                 rule(id="hv", kind="threshold", quantity="cell_voltage", high=3.55, deadband=0.03),
                 rule(id="uv", kind="threshold", quantity="cell_voltage", low=2.5, deadband=0.1),
                 rule(id="lv", kind="threshold", quantity="cell_voltage", low=2.8, deadband=0.05),
                 rule(id="hv2", kind="threshold", quantity="cell_voltage", high=3.40, racks=["rack-02"]),
                 racks=(RACK, "rack-02"))  # fmt: skip
    out = eng.process([batch(*cells(0, [3.3, 3.6, 2.7, 3.7, float("nan"), 2.4]))])
    assert ids(out) == [("rack-01:ov:m1c4", UA), ("rack-01:hv:m1c2", UA), ("rack-01:hv:m1c4", UA),
                        ("rack-01:uv:m1c6", UA), ("rack-01:lv:m1c3", UA), ("rack-01:lv:m1c6", UA)]  # fmt: skip
    other = batch(*cells(1, [3.3] * 5 + [3.45], rack="rack-02"), device="rack-02")
    assert ids(eng.process([other])) == [("rack-02:hv2:m1c6", UA)]  # rack-01's alarms untouched
    inside = [3.3, 3.53, 2.7, 3.62, 3.3, 2.55]  # back within each limit, not past its deadband
    assert ids(eng.process([batch(*cells(2, inside))])) == []
    assert ids(eng.process([batch(*cells(3, [3.3] * 6))])) == [
        ("rack-01:ov:m1c4", RTN), ("rack-01:hv:m1c2", RTN), ("rack-01:hv:m1c4", RTN), ("rack-01:uv:m1c6", RTN),
        ("rack-01:lv:m1c3", RTN), ("rack-01:lv:m1c6", RTN)]  # fmt: skip
    assert ids(eng.process([batch(*cells(4, [3.3] * 5 + [3.3], rack="rack-02"), device="rack-02")])) == [
        ("rack-02:hv2:m1c6", RTN)]  # fmt: skip
