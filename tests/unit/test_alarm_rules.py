"""Rule tables: for each rule kind, the exact transitions on a scripted series (no event loop)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.alarms import rules as r
from gateway.model import DeviceState, DeviceStatus, Quality
from tests.alarms_support import RACK, S, batch, engine, events, rule, run_series, sample, states, transitions

UA, AA, RTN, N = "active_unack", "active_ack", "rtn_unack", "normal"


# -- primitives --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "was", "expected"),
    [(3.66, False, True), (3.64, False, False), (3.64, True, True), (3.61, True, True), (3.60, True, False)],
)
def test_beyond_high_with_deadband(value: float, was: bool, expected: bool) -> None:
    assert r.beyond(value, 3.65, above=True, deadband=0.05, was=was) is expected


def test_debounce_on_and_off_delay_absorb_chatter() -> None:
    d = r.Debounce(on_delay_ns=2 * S, off_delay_ns=3 * S)
    script = [
        (0, True),
        (1, False),
        (2, True),
        (3, True),
        (4, True),
        (5, False),
        (6, True),
        (7, False),
        (9, False),
        (10, False),
    ]
    out = [d.update(raw, t * S) for t, raw in script]
    assert out == [None, None, None, None, True, None, None, None, None, False]


def test_debounce_poll_flips_without_new_input() -> None:
    d = r.Debounce(on_delay_ns=2 * S)
    assert d.update(True, 0) is None
    assert d.poll(1 * S) is None
    assert d.poll(2 * S) is True


def _rates(w: r.RateWindows, element: str, readings: list[tuple[int, float]]) -> list[float | None]:
    """One reading per update, as a batch with one point of the element gives them."""
    slot = w.slot_of([element])
    out: list[float | None] = []
    for ts, v in readings:
        got = float(w.update(slot, np.array([ts]), np.array([v]))[0])
        out.append(None if got != got else got)
    return out


def test_rate_consecutive_and_windowed() -> None:
    t = r.RateWindows()
    assert _rates(t, "a", [(0, 10.0), (2 * S, 14.0), (2 * S, 99.0)]) == [None, 2.0, None]  # duplicate time: no rate
    w = r.RateWindows(window_ns=10 * S)
    assert _rates(w, "a", [(k * S, float(k)) for k in range(0, 25, 5)]) == [None, 1.0, 1.0, 1.0, 1.0]
    assert w.history("a")[0][0] == 10 * S  # the oldest kept reading is the newest one at least 10 s old


def test_rates_of_many_elements_in_one_update_each_over_its_own_history() -> None:
    """Hand-computed: `a` read three times in one update (a CAN window), `b` once, `c` out of order."""
    w = r.RateWindows(window_ns=2 * S)
    slots = w.slot_of(["a", "b", "c"])
    first = w.update(slots, np.array([0, 0, 5 * S]), np.array([1.0, 10.0, 0.0]))
    assert np.isnan(first).all()
    at = np.array([0, 1, 0, 0, 2])
    got = w.update(slots[at], np.array([1 * S, 4 * S, 2 * S, 3 * S, 4 * S]), np.array([2.0, 4.0, 5.0, 11.0, 7.0]))
    # a: 1 s after 1.0 -> 1/s; 2 s -> (5-1)/2; 3 s: the reading at 1 s is the newest 2 s old -> (11-2)/2
    # b: (4-10)/4; c: 4 s is before its last reading at 5 s: no rate, not kept
    assert got[:4].tolist() == [1.0, -1.5, 2.0, 4.5] and np.isnan(got[4])
    assert w.history("a") == [(1 * S, 2.0), (2 * S, 5.0), (3 * S, 11.0)]
    assert w.history("c") == [(5 * S, 0.0)]


def test_rate_histories_deepen_past_their_first_depth() -> None:
    w = r.RateWindows(window_ns=100 * S)
    got = _rates(w, "a", [(k * S, float(k * k)) for k in range(20)])
    assert got[1:] == [k * k / k for k in range(1, 20)]  # against the first reading: all within the window
    assert len(w.history("a")) == 20


def test_spread_and_allowed_difference() -> None:
    assert r.spread([3.3, 3.5, 3.2]) == (pytest.approx(0.3), 1, 2)
    assert r.allowed_difference(500.0, 2.0, 1.0) == 5.0
    assert r.allowed_difference(50.0, 2.0, 1.0) == 2.0


def test_coulomb_counter_integrates_and_reanchors_after_a_gap() -> None:
    c = r.CoulombCounter(max_gap_ns=60 * S)
    assert c.update(0, 100.0, 100.0) is None
    c.anchor(50.0, 0)
    assert c.update(36 * S, 100.0, 100.0) == pytest.approx(51.0)  # 100 A for 36 s = 1 Ah = 1 % of 100 Ah
    assert c.update(72 * S, -100.0, 100.0) == pytest.approx(51.0)  # trapezoid: mean 0 A
    assert c.update(200 * S, 0.0, 100.0) is None  # gap: re-anchor on the BMS value
    assert c.soc is None


def test_state_normalisation() -> None:
    assert r.state_unsafe("Open", frozenset({"closed"}), None)
    assert not r.state_unsafe(" closed", frozenset({"closed"}), None)
    assert r.state_unsafe(True, None, frozenset({1}))
    assert r.state_unsafe(1.0, None, frozenset({1}))
    assert not r.state_unsafe(False, None, frozenset({1}))


# -- thresholds ---------------------------------------------------------------------------------------


def test_threshold_deadband_absorbs_chatter() -> None:
    eng = engine(rule(kind="threshold", quantity="cell_voltage", high=3.65, deadband=0.05))
    series = [(0, 3.60), (1, 3.66), (2, 3.64), (3, 3.66), (4, 3.61), (5, 3.59), (6, 3.62)]
    assert run_series(eng, "cell_voltage", series, module=1, cell=5) == [
        [], [(N, UA)], [], [], [], [(UA, RTN)], [],
    ]  # fmt: skip


def test_threshold_without_deadband_chatters() -> None:
    eng = engine(rule(kind="threshold", quantity="cell_voltage", high=3.65))
    series = [(0, 3.66), (1, 3.64), (2, 3.66), (3, 3.64)]
    assert transitions(eng, "cell_voltage", series) == [UA, RTN, UA, RTN]


def test_threshold_on_delay_restarts_on_chatter() -> None:
    eng = engine(rule(kind="threshold", quantity="cell_voltage", high=3.65, on_delay=2))
    series = [(0, 3.7), (1, 3.6), (2, 3.7), (3, 3.7), (4, 3.7), (5, 3.7)]
    assert run_series(eng, "cell_voltage", series) == [[], [], [], [], [(N, UA)], []]


def test_threshold_off_delay() -> None:
    eng = engine(rule(kind="threshold", quantity="cell_voltage", high=3.65, off_delay=2))
    series = [(0, 3.7), (1, 3.5), (2, 3.7), (3, 3.5), (4, 3.5), (5, 3.5)]
    assert run_series(eng, "cell_voltage", series) == [[(N, UA)], [], [], [], [], [(UA, RTN)]]


def test_threshold_low_limit_and_event_content() -> None:
    eng = engine(rule(id="cuv", kind="threshold", quantity="cell_voltage", low=2.5, deadband=0.1, severity="critical"))
    out = eng.process([batch(sample(1, "cell_voltage", 2.45, module=2, cell=7, unit="V"))])
    (ev,) = events(out)
    assert ev == {
        "type": "event", "ts": 1 * S, "rack": RACK, "alarm_id": "rack-01:cuv:m2c7", "severity": "critical",
        "state": UA, "previous": N, "message": "cell_voltage m2c7 2.45 V below 2.5 V", "value": 2.45,
        "rule": "cuv", "user": None, "reason": None,
    }  # fmt: skip
    active = out[0].records[-1]
    assert active["type"] == "active" and active["rack"] == RACK
    assert active["active"] == [{"alarm_id": "rack-01:cuv:m2c7", "severity": "critical", "state": UA, "since": 1 * S,
                                 "message": "cell_voltage m2c7 2.45 V below 2.5 V"}]  # fmt: skip
    assert transitions(eng, "cell_voltage", [(2, 2.55), (3, 2.61)], module=2, cell=7) == [RTN]


def test_threshold_elements_are_separate_alarms_and_bad_quality_is_ignored() -> None:
    eng = engine(rule(id="cov", kind="threshold", quantity="cell_voltage", high=3.65))
    out = eng.process([batch(
        sample(0, "cell_voltage", 3.7, module=1, cell=1),
        sample(0, "cell_voltage", 3.7, module=1, cell=2),
        sample(0, "cell_voltage", 3.9, module=1, cell=3, quality=Quality.BAD),
        sample(0, "cell_voltage", 3.5, module=1, cell=4),
    )])  # fmt: skip
    assert [e["alarm_id"] for e in events(out)] == ["rack-01:cov:m1c1", "rack-01:cov:m1c2"]
    assert len(eng.instances) == 2  # healthy cells are not tracked


def test_rule_restricted_to_racks() -> None:
    eng = engine(rule(kind="threshold", quantity="soc", low=10, racks=["rack-02"]), racks=("rack-01", "rack-02"))
    assert transitions(eng, "soc", [(0, 5)]) == []
    assert transitions(eng, "soc", [(1, 5)], rack="rack-02") == [UA]


# -- rate, spread, disagreement, limit ------------------------------------------------------------


def test_rate_of_rise_with_deadband() -> None:
    eng = engine(rule(kind="rate", quantity="cell_temperature", rise=1.0, deadband=0.5))
    series = [(0, 25.0), (1, 25.5), (2, 27.0), (3, 27.6), (4, 27.8), (5, 27.8)]
    assert run_series(eng, "cell_temperature", series, module=1, cell=1) == [[], [], [(N, UA)], [], [(UA, RTN)], []]


def test_rate_of_fall() -> None:
    eng = engine(rule(kind="rate", quantity="soc", fall=0.5))
    assert transitions(eng, "soc", [(0, 50.0), (1, 49.8), (2, 48.0), (3, 48.0)]) == [UA, RTN]


def _cells(t: float, volts: list[float], per_module: int = 2, rack: str = RACK) -> list:
    return [sample(t, "cell_voltage", v, module=i // per_module + 1, cell=i % per_module + 1, unit="V", rack=rack)
            for i, v in enumerate(volts)]  # fmt: skip


def test_spread_across_the_rack_with_deadband() -> None:
    eng = engine(rule(id="sp", kind="spread", quantity="cell_voltage", high=0.10, deadband=0.02))
    steps = [[3.30, 3.35], [3.30, 3.42], [3.30, 3.39], [3.30, 3.37]]
    got = [states(eng.process([batch(*_cells(t, v))])) for t, v in enumerate(steps)]
    assert got == [[], [(N, UA)], [], [(UA, RTN)]]
    assert (
        "(max 3.45 at m1c2, min 3.3 at m1c1) above 0.1 V"
        in events(eng.process([batch(*_cells(9, [3.30, 3.45]))]))[0]["message"]
    )


def test_spread_per_module() -> None:
    eng = engine(rule(id="sp", kind="spread", quantity="cell_voltage", scope="module", high=0.10))
    out = eng.process([batch(*_cells(0, [3.30, 3.45, 3.30, 3.31]))])
    assert [e["alarm_id"] for e in events(out)] == ["rack-01:sp:m1"]


def test_pack_voltage_against_sum_of_cells() -> None:
    eng = engine(rule(id="pv", kind="disagreement", quantity="rack_voltage", versus="sum:cell_voltage",
                      tolerance=0.5, min_count=2))  # fmt: skip
    alone = eng.process([batch(sample(0, "rack_voltage", 9.0), *_cells(0, [3.3]))])  # too few cells: no verdict
    ok = eng.process([batch(sample(0, "rack_voltage", 6.65), *_cells(0, [3.3, 3.3]))])
    bad = eng.process([batch(*_cells(1, [3.3, 3.3]), sample(1, "rack_voltage", 7.5))])
    back = eng.process([batch(sample(3, "rack_voltage", 6.6), *_cells(3, [3.3, 3.3]))])
    assert (states(alone), states(ok), states(bad), states(back)) == ([], [], [(N, UA)], [(UA, RTN)])
    assert events(bad)[0]["value"] == pytest.approx(0.9)


def test_the_sum_of_cells_takes_each_cells_latest_value_however_the_batches_split_them() -> None:
    """A CAN window may hold a cell frame twice (two rounds) or only some cells, and the rack voltage in
    another window: the sum is over every cell's latest reading, each cell once (none while one is not good)."""
    eng = engine(rule(id="pv", kind="disagreement", quantity="rack_voltage", versus="sum:cell_voltage",
                      tolerance=0.5, min_count=3))  # fmt: skip
    rounds = _cells(0, [3.3, 3.3, 3.3]) + _cells(0.1, [3.31, 3.31, 3.31])  # two rounds of three cells in one window
    assert states(eng.process([batch(sample(0, "rack_voltage", 9.9), *rounds)])) == []  # 9.93, not 19.83
    assert states(eng.process([batch(*_cells(1, [3.3, 3.3]))])) == []  # cells only: kept for the next verdict
    assert states(eng.process([batch(sample(1.1, "rack_voltage", 11.0))])) == [(N, UA)]  # against 3.3+3.3+3.31
    assert states(eng.process([batch(sample(2, "rack_voltage", 9.91))])) == [(UA, RTN)]
    bad_cell = _cells(3, [3.3, 3.3, 3.3])
    bad_cell[2] = sample(3, "cell_voltage", 0.0, module=2, cell=1, quality="bad", unit="V")
    assert states(eng.process([batch(*bad_cell, sample(3, "rack_voltage", 6.0))])) == []  # m2c1 unknown: no verdict
    assert states(eng.process([batch(*_cells(4, [3.3, 3.3, 3.3]), sample(4, "rack_voltage", 6.0))])) == [(RTN, UA)]


def test_a_cell_that_stopped_coming_leaves_the_sum_after_max_age() -> None:
    """A cell frame that stops (no cycle time, so never marked stale) is not summed for ever: a reading
    older than `max_age` before the rack voltage's time is left out, and with too few cells no verdict."""
    eng = engine(rule(id="pv", kind="disagreement", quantity="rack_voltage", versus="sum:cell_voltage",
                      tolerance=0.5, min_count=3, max_age=10))  # fmt: skip
    assert states(eng.process([batch(sample(0, "rack_voltage", 9.9), *_cells(0, [3.3, 3.3, 3.3]))])) == []
    # m2c1 stops; the other two go on. At 10 s its reading is still counted: 9.9 agrees
    assert states(eng.process([batch(sample(10, "rack_voltage", 9.9), *_cells(10, [3.3, 3.3]))])) == []
    # at 10.5 s it is too old: two cells left, fewer than min_count, so no verdict (not a sum of 6.6 V)
    assert states(eng.process([batch(sample(10.5, "rack_voltage", 3.0), *_cells(10.5, [3.3, 3.3]))])) == []
    # it comes again: counted again, and 3.0 V disagrees with 9.9
    raised = eng.process([batch(sample(11, "rack_voltage", 3.0), *_cells(11, [3.3, 3.3, 3.3]))])
    assert states(raised) == [(N, UA)]
    assert "disagrees with sum:cell_voltage 9.9 (3 cells)" in events(raised)[0]["message"]


def test_cells_of_a_slow_poll_group_count_for_three_of_their_own_intervals() -> None:
    """Cells polled every 100 s beside a rack voltage every second: a cell's reading counts for
    max(max_age, 3 × its own last interval), so the verdicts go on between the cell polls."""
    eng = engine(rule(id="pv", kind="disagreement", quantity="rack_voltage", versus="sum:cell_voltage",
                      tolerance=0.5, min_count=2, max_age=10))  # fmt: skip
    assert states(eng.process([batch(sample(0, "rack_voltage", 6.6), *_cells(0, [3.3, 3.3]))])) == []
    assert states(eng.process([batch(sample(11, "rack_voltage", 9.0))])) == []  # one reading so far: 11 s > 10
    assert states(eng.process([batch(sample(100, "rack_voltage", 6.6), *_cells(100, [3.3, 3.3]))])) == []
    assert states(eng.process([batch(sample(250, "rack_voltage", 9.0))])) == [(N, UA)]  # 150 s old: counts
    assert states(eng.process([batch(sample(300, "rack_voltage", 6.6))])) == [(UA, RTN)]  # 200 s old: counts
    assert states(eng.process([batch(sample(401, "rack_voltage", 9.0))])) == []  # 301 s > 3 × 100: no verdict


def test_a_versus_quantity_older_than_max_age_is_no_reference() -> None:
    eng = engine(rule(id="d", kind="disagreement", quantity="soc", versus="raw.soc_bms2", tolerance=2.0, max_age=5))
    assert states(eng.process([batch(sample(0, "soc", 50.0), sample(0, "raw.soc_bms2", 50.0))])) == []
    assert states(eng.process([batch(sample(6, "soc", 80.0))])) == []  # raw.soc_bms2 is 6 s old: no verdict
    assert states(eng.process([batch(sample(7, "soc", 80.0), sample(7, "raw.soc_bms2", 50.0))])) == [(N, UA)]


def test_the_sum_of_cells_of_two_racks_in_one_batch_is_each_racks_own() -> None:
    eng = engine(rule(id="pv", kind="disagreement", quantity="rack_voltage", versus="sum:cell_voltage",
                      tolerance=0.5, min_count=2), racks=(RACK, "rack-02"))  # fmt: skip
    both = [sample(0, "rack_voltage", 6.6), *_cells(0, [3.3, 3.3]),
            sample(0, "rack_voltage", 9.0, rack="rack-02"), *_cells(0, [3.3, 3.3], rack="rack-02")]  # fmt: skip
    out = eng.process([batch(*both)])
    assert [(e["alarm_id"], e["state"]) for e in events(out)] == [("rack-02:pv", UA)]  # 9.0 against 6.6


def test_soc_against_coulomb_count() -> None:
    eng = engine(rule(id="soc", kind="disagreement", quantity="soc", versus="coulomb_soc", capacity_ah=100,
                      tolerance=2.0))  # fmt: skip

    def step(t: float, soc: float, amps: float) -> list:
        return states(eng.process([batch(sample(t, "soc", soc), sample(t, "rack_current", amps))]))

    assert step(0, 50.0, 100.0) == []  # anchors the count on the BMS
    assert step(36, 51.0, 100.0) == []  # counted 51 %
    assert step(72, 60.0, 100.0) == [(N, UA)]  # counted 52 %, BMS 60 %
    assert step(108, 53.5, 100.0) == [(UA, RTN)]  # counted 53 %


def test_current_against_bms_limits() -> None:
    charge = rule(id="chg", kind="limit", quantity="rack_current", limit="charge_current_limit", margin=5)
    dis = rule(id="dis", kind="limit", quantity="rack_current", limit="discharge_current_limit", direction="below",
               limit_scale=-1, margin=5)  # fmt: skip
    eng = engine(charge, dis)

    def step(t: float, amps: float, chg: float | None = None, dchg: float | None = None) -> list:
        extra = [sample(t, "charge_current_limit", chg)] if chg is not None else []
        extra += [sample(t, "discharge_current_limit", dchg)] if dchg is not None else []
        return [(e["rule"], e["state"]) for e in events(eng.process([batch(sample(t, "rack_current", amps), *extra)]))]

    assert step(0, 100.0) == []  # no limit known yet
    assert step(1, 100.0, chg=140.0, dchg=140.0) == []
    assert step(2, 100.0, chg=0.0) == [("chg", UA)]  # the BMS stops charge, the EMS keeps charging
    assert step(3, -146.0, chg=140.0) == [("chg", RTN), ("dis", UA)]  # limits persist between batches


# -- states, bits, comm loss, stale, quality -----------------------------------------------------------


def test_contactor_and_interlock_states() -> None:
    eng = engine(
        rule(id="kp", kind="state", quantity="contactor_positive", safe=["closed"]),
        rule(id="es", kind="state", quantity="interlock_estop", unsafe=[1], severity="critical"),
    )
    assert transitions(eng, "contactor_positive", [(0, "closed"), (1, "open"), (2, "Closed")]) == [UA, RTN]
    assert transitions(eng, "interlock_estop", [(0, False), (1, True), (2, 0)]) == [UA, RTN]


def test_bms_bits_by_name_with_severities() -> None:
    eng = engine(rule(id="bms", kind="bms_bits", prefix="alarm.", severities={"cell_ov": "critical"}))
    out = eng.process([batch(sample(0, "alarm.cell_ov", 1), sample(0, "alarm.fan", True), sample(0, "warning.x", 1))])
    assert [(e["alarm_id"], e["severity"]) for e in events(out)] == [
        ("rack-01:bms:cell_ov", "critical"),
        ("rack-01:bms:fan", "major"),
    ]
    assert transitions(eng, "alarm.cell_ov", [(1, 0)]) == [RTN]


def test_comm_loss_from_device_status_and_quality() -> None:
    eng = engine(rule(id="cl", kind="comm_loss"))
    off = DeviceStatus(RACK, DeviceState.OFFLINE, "timeout", 5 * S)
    on = DeviceStatus(RACK, DeviceState.ONLINE, "", 9 * S)
    from gateway.model import Batch

    down = eng.process([Batch(RACK, device=RACK, status=off)])
    assert events(down)[0]["message"] == "no communication with rack rack-01: timeout"
    assert states(eng.process([Batch(RACK, device=RACK, status=on)])) == [(UA, RTN)]
    lost = eng.process([batch(sample(10, "soc", 50, quality=Quality.COMM_LOSS))])
    assert states(lost) == [(RTN, UA)]
    assert states(eng.process([batch(sample(11, "soc", 50))])) == [(UA, RTN)]


def test_stale_by_age_on_the_clock() -> None:
    eng = engine(rule(id="st", kind="stale", max_age=5))
    assert states(eng.tick(0)) == []
    eng.process([batch(sample(1, "soc", 50))])
    assert states(eng.tick(5 * S)) == []
    assert states(eng.tick(7 * S)) == [(N, UA)]
    assert states(eng.tick(8 * S)) == []
    assert states(eng.process([batch(sample(8.5, "soc", 50))])) == [(UA, RTN)]


def test_stale_for_a_rack_that_never_reported() -> None:
    eng = engine(rule(id="st", kind="stale", max_age=5), racks=("rack-01", "rack-02"))
    eng.tick(0)
    eng.process([batch(sample(4, "soc", 50))])
    assert [e["alarm_id"] for e in events(eng.tick(6 * S))] == ["rack-02:st"]


def test_quality_rule_per_quantity_and_element() -> None:
    eng = engine(rule(id="q", kind="quality", qualities=["bad"]))
    out = eng.process([batch(sample(0, "cell_voltage", None, module=1, cell=3, quality=Quality.BAD))])
    assert [e["alarm_id"] for e in events(out)] == ["rack-01:q:cell_voltage:m1c3"]
    assert states(eng.process([batch(sample(1, "cell_voltage", 3.3, module=1, cell=3))])) == [(UA, RTN)]
    assert eng.quality_watch == 1  # rtn_unack is still in view


def test_delays_complete_on_the_clock_when_no_sample_arrives() -> None:
    eng = engine(rule(kind="threshold", quantity="soc", low=10, on_delay=3))
    assert transitions(eng, "soc", [(0, 5)]) == []
    assert states(eng.tick(2 * S)) == []
    out = eng.tick(int(3.2 * S))
    assert states(out) == [(N, UA)]
    assert events(out)[0]["ts"] == 3 * S  # when the on-delay completed, not when the tick noticed


def test_message_templates_take_format_specs() -> None:
    eng = engine(rule(kind="threshold", quantity="cell_voltage", high=3.65, message="{where}: {value:.3f} > {limit}"))
    (ev,) = events(eng.process([batch(sample(0, "cell_voltage", 3.71234, module=1, cell=2))]))
    assert ev["message"] == " m1c2: 3.712 > 3.65"
    assert r.render("{value:.2f} {missing_is_blank}", value="text") == "{value:.2f} {missing_is_blank}"


def test_two_polls_in_one_commit_group_are_evaluated_separately() -> None:
    pv = rule(id="pv", kind="disagreement", quantity="rack_voltage", versus="sum:cell_voltage", tolerance=0.5,
              min_count=2)  # fmt: skip
    sp = rule(id="sp", kind="spread", quantity="cell_voltage", high=0.1)
    eng = engine(pv, sp)
    polls = [batch(sample(t, "rack_voltage", 6.6), *_cells(t, [3.3, 3.3 + 0.05 * t])) for t in (0, 1)]
    assert events(eng.process(polls)) == []  # sums of 6.6 and 6.65, spreads of 0 and 0.05: nothing mixed
