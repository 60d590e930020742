"""The layout path of the alarm engine gives what the reference loop gives: events, journal, states, rates.

Every scenario runs the same polls through three engines: the per-sample reference loop
(`fast = False`), the plain path (`layouts = False`: runs of a quantity, no layout) and the layout
path, and compares every ALARM batch, every journal entry, every alarm instance and every rate
tracker's history.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from gateway.alarms import layoutpath
from gateway.alarms.compiled import RateHandler
from gateway.alarms.engine import AlarmEngine
from gateway.alarms.ratecolumns import ColumnTracker
from gateway.alarms.ruleset import RULE, defaults_path, load_rule_file
from gateway.model import Batch, DeviceState, DeviceStatus, Layout, LayoutKey, Quality, Sample

NS = 1_000_000_000
RACKS = ("rack0", "rack1", "rack2")
Poll = list[Batch]


def shape(rack: str, volts: int = 60, temps: int = 20, block: int = 25, extras: bool = True) -> Layout:
    keys: list[LayoutKey] = [("cell_voltage", "V", rack, i // 12 + 1, i % 12 + 1) for i in range(volts)]
    keys += [("cell_temperature", "°C", rack, i // 4 + 1, i % 4 + 1) for i in range(temps)]
    if extras:
        keys += [("soc", "%", rack, None, None), ("rack_current", "A", rack, None, None),
                 ("bms_state", "", rack, None, None), ("rack_voltage", "V", rack, None, None)]  # fmt: skip
    return Layout(keys, [(a, min(a + block, len(keys))) for a in range(0, len(keys), block)])


def value(key: LayoutKey, k: int, rnd: random.Random) -> Any:
    q = key[0]
    if q == "cell_voltage":
        return round(3.30 + rnd.random() * 0.04, 3)
    if q == "cell_temperature":
        return round(25.0 + rnd.random() * 0.3 + k * 0.01, 1)
    return {"soc": 55.0, "rack_current": -12.0, "bms_state": "run", "rack_voltage": 198.4}[q]


def polls(layouts: dict[str, Layout], count: int, seed: int = 1) -> list[Poll]:
    """Clean polls: one batch per rack, the samples of a segment sharing one ts."""
    rnd = random.Random(seed)
    out = []
    for k in range(count):
        batch = []
        for r, (rack, lay) in enumerate(layouts.items()):
            t0 = (k + 1) * NS + r * 7_000_000
            seg = {i: t0 + n * 1_000_000 for n, (a, b) in enumerate(lay.segments) for i in range(a, b)}
            samples = [Sample(seg[i], q, value(key, k, rnd), u, Quality.GOOD, rk, m, c)
                       for i, key in enumerate(lay.keys) for q, u, rk, m, c in [key]]  # fmt: skip
            batch.append(Batch(rack, samples, device=rack, created=t0, layout=lay))
        out.append(batch)
    return out


def put(b: Batch, i: int, **changes: Any) -> None:
    b.samples[i] = b.samples[i]._replace(**changes)


def index_of(b: Batch, quantity: str, n: int) -> int:
    return [i for i, s in enumerate(b.samples) if s.quantity == quantity][n]


def v(b: Batch, n: int) -> int:
    return index_of(b, "cell_voltage", n)


def t(b: Batch, n: int) -> int:
    return index_of(b, "cell_temperature", n)


def faults(rounds: list[Poll]) -> list[Poll]:
    """Over- and under-voltage, rate of change, spread, comm loss, stale, quality, odd values and layouts."""
    lay0b = shape("rack0", temps=12, extras=False)  # a new shape from poll 28
    lay2b = shape("rack2")  # a new layout object with the same keys from poll 19
    other = polls({"rack0": lay0b, "rack1": shape("rack1"), "rack2": lay2b}, len(rounds), seed=9)
    out: list[Poll] = []
    for k, poll in enumerate(rounds):
        b0, b1, b2 = (Batch(b.source, list(b.samples), device=b.device, created=b.created, layout=b.layout)
                      for b in poll)  # fmt: skip
        if k >= 28:
            b0 = other[k][0]
        if k >= 19:
            b2 = Batch("rack2", [s._replace(value=b2.samples[i].value) for i, s in enumerate(other[k][2].samples)],
                       device="rack2", created=b2.created, layout=lay2b)  # fmt: skip
        if 3 <= k < 10:
            put(b0, v(b0, 5), value=3.70)  # over-voltage, on_delay 1 s
        if k == 10:
            put(b0, v(b0, 5), value=3.62)  # inside the deadband: stays
        if 5 <= k < 9:
            put(b1, v(b1, 7), value=2.40)  # under-voltage, latched
            put(b1, v(b1, 8), value=3.58)  # high-voltage warning
        if 6 <= k < 17:
            put(b2, t(b2, 3), value=26.0 + (k - 5) * 3.5)  # a runaway: rate, high and over temperature
        if 17 <= k < 19:
            put(b2, t(b2, 3), value=25.0)  # falls back: a fall rule sees it
        if 12 <= k < 31:
            put(b0, v(b0, 10), value=3.10)  # spread 0.2 V
        if 15 <= k < 23:
            put(b0, t(b0, 7), quality=Quality.BAD, value=None)  # bad quality, on_delay 5 s
        if k == 10:
            put(b1, v(b1, 3), value=float("nan"))
            put(b1, t(b1, 2), value=float("inf"))
        if k == 11:
            put(b1, v(b1, 3), value=None)
            put(b1, t(b1, 1), quality=Quality.OUT_OF_RANGE)
        if k == 12:
            put(b1, v(b1, 3), value=3)  # an int
            put(b1, t(b1, 4), value=27)
        if k == 13:
            put(b1, v(b1, 3), value=True)
            put(b1, t(b1, 0), value="hot")
        if k == 14:
            b2.samples[:] = [s._replace(device_ts=s.ts - 5) for s in b2.samples]
        if k == 17:
            b0.samples[:] = [s._replace(ts=s.ts - NS) for s in b0.samples]  # the previous poll's times again
        if k == 18:
            b0.samples[:] = [s._replace(ts=s.ts - 3 * NS // 2) for s in b0.samples]  # out of order
        if 16 <= k < 19:
            b1.layout = None  # a source without a layout for a while
        if 20 <= k < 24:
            b1.samples[:] = [s._replace(quality=Quality.COMM_LOSS, value=None) for s in b1.samples]
        if k == 20:
            b1.status = DeviceStatus("rack1", DeviceState.OFFLINE, "timeout", b1.samples[0].ts)
        if k == 24:
            b1.status = DeviceStatus("rack1", DeviceState.ONLINE, "", b1.samples[0].ts)
        if k == 26:
            b1.layout = b0.layout  # the layout of another rack's batch: must not be trusted
        if k == 29:
            put(b2, t(b2, 2), ts=b2.samples[t(b2, 2)].ts + 1)  # a source breaking its segment promise
        if k == 33:
            put(b2, v(b2, 0), value=4.0)  # a value beyond a threshold with every element idle
        for b, q, quality, polls_ in ((b0, "cell_voltage", Quality.COMM_LOSS, (27,)),  # runs of one quality
                                      (b0, "cell_temperature", Quality.MISSING, (30, 31)),  # no rule takes it
                                      (b1, "cell_voltage", Quality.BAD, (31, 32, 33, 34, 35, 36)),  # bad_quality
                                      (b1, "cell_temperature", Quality.STALE, (32,))):  # fmt: skip
            if k in polls_:
                b.samples[:] = [x._replace(quality=quality, value=None) if x.quantity == q else x for x in b.samples]
        if 34 <= k < 37:  # values on and just beyond the limits
            for n, x in enumerate((3.55, 3.65, 2.80, 2.50, 3.5500000001, 2.7999999999, 3.6500001, 2.4999999)):
                put(b0, v(b0, n), value=x)
        batch = [b0, b1] + ([b2] if not 25 <= k < 38 else [])  # rack2 silent: stale
        out.append(batch)
    return out


def rules_with_rates() -> list[Any]:
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    fall = {"id": "cell_voltage_fall", "kind": "rate", "quantity": "cell_voltage", "fall": 0.05,
            "racks": ["rack0", "rack2"]}  # fmt: skip
    swing = {"id": "temp_swing", "kind": "rate", "quantity": "cell_temperature", "rise": 1.0, "fall": 1.0,
             "window": 3, "deadband": 0.2, "on_delay": 1, "off_delay": 2}  # fmt: skip
    return [*rules, RULE.validate_python(fall), RULE.validate_python(swing)]


def make(mode: str, rules: list[Any]) -> AlarmEngine:
    e = AlarmEngine(rules, {r: r for r in RACKS})
    e.fast = mode != "reference"
    e.layouts = mode == "layout"
    return e


def run(mode: str, rounds: list[Poll], rules: list[Any], group: int = 2) -> tuple[str, str, str, str]:
    e = make(mode, rules)
    records: list[Any] = []
    for k, poll in enumerate(rounds):
        for i in range(0, len(poll), group):
            records += [(b.device, b.records) for b in e.process(poll[i : i + group])]
        if k == 24:
            _, got = e.command("ack", sorted(e.by_id), "op", "seen", (k + 1) * NS + NS // 3)
            records += [(b.device, b.records) for b in got]
        records += [(b.device, b.records) for b in e.tick((k + 1) * NS + NS // 2)]
    instances = {k: (i.raw, i.debounce, i.alarm) for k, i in sorted(e.instances.items(), key=repr)}
    assert_tracked(e)
    histories = {}
    for h in e.handlers:
        for el, tr in getattr(h, "trackers", {}).items():
            if tr.history:
                histories[(h.spec.id, el)] = list(tr.history)
    # repr: NaN values compare unequal
    return repr(records), repr(e.take_journal()), repr(instances), repr(sorted(histories.items(), key=repr))


def assert_tracked(e: AlarmEngine) -> None:
    """What rate handlers and the quality watch count as tracked (they skip the rest) is what has an instance."""
    for h in e.handlers:
        if isinstance(h, RateHandler):
            having = Counter((k[1], k[2], k[3]) for k in e.instances if k[0] == h.spec.id)
            assert h.tracked == dict(having)
    quality = {spec.id for spec in e.quality}
    assert e.quality_elements == dict(Counter((k[4], k[1], k[2], k[3]) for k in e.instances if k[0] in quality))


def bulk_counter(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts runs the layout path evaluated in bulk (so a test sees it was not bypassed)."""
    got = [0]
    real = layoutpath.evaluate

    def counted(r: layoutpath.Run, samples: list[Sample]) -> bool:
        ok = real(r, samples)
        got[0] += ok
        return ok

    monkeypatch.setattr("gateway.alarms.engine.evaluate", counted)
    return got


RuleSource = Callable[[], list[Any]]


@pytest.mark.parametrize("rules", [lambda: load_rule_file(defaults_path("lithium-ion"))[0], rules_with_rates])
def test_fault_run_is_the_same_through_every_path(rules: RuleSource, monkeypatch: pytest.MonkeyPatch) -> None:
    rounds = faults(polls({r: shape(r) for r in RACKS}, 45))
    reference = run("reference", rounds, rules())
    plain = run("plain", rounds, rules())
    bulk = bulk_counter(monkeypatch)
    layout = run("layout", rounds, rules())
    assert layout == reference
    assert plain == reference
    assert bulk[0] > 100  # most runs did go the bulk way
    states = [x["state"] for _, recs in eval(reference[0].replace("nan", "None").replace("inf", "0"))
              for x in recs if x["type"] == "event"]  # fmt: skip
    assert states.count("active_unack") >= 8 and "rtn_unack" in states and "normal" in states


def test_every_rule_kind_is_raised_in_the_fault_run() -> None:
    rounds = faults(polls({r: shape(r) for r in RACKS}, 45))
    e = make("layout", rules_with_rates())
    raised = set()
    for k, poll in enumerate(rounds):
        for b in e.process(poll) + e.tick((k + 1) * NS + NS // 2):
            raised |= {x["rule"] for x in b.records if x.get("state") == "active_unack"}
    assert {"cell_over_voltage", "cell_under_voltage", "cell_high_voltage", "cell_temperature_rise", "temp_swing",
            "cell_voltage_spread", "comm_loss", "stale", "bad_quality", "cell_over_temperature"} <= raised  # fmt: skip


def test_random_polls_with_random_damage_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(4)
    layouts = {r: shape(r, volts=36, temps=12, block=10) for r in RACKS}
    rounds = polls(layouts, 40, seed=3)
    for poll in rounds:
        for b in poll:
            for _ in range(rnd.randrange(3)):
                i = rnd.randrange(len(b.samples))
                s = b.samples[i]
                b.samples[i] = rnd.choice([
                    s._replace(value=s.value + 3.0) if isinstance(s.value, float) else s,
                    s._replace(value=s.value - 1.5) if isinstance(s.value, float) else s,
                    s._replace(quality=Quality.BAD), s._replace(value=float("nan")), s._replace(value=None),
                ])  # fmt: skip
            if rnd.random() < 0.1:
                b.layout = None
    bulk = bulk_counter(monkeypatch)
    assert run("layout", rounds, rules_with_rates(), 3) == run("reference", rounds, rules_with_rates(), 3)
    assert bulk[0] > 50


def test_clean_polls_keep_the_rate_columns_and_raise_nothing() -> None:
    rounds = polls({r: shape(r) for r in RACKS}, 15)
    e = make("layout", rules_with_rates())
    for poll in rounds:
        assert e.process(poll) == []
    rate = next(h for h in e.handlers if h.spec.id == "cell_temperature_rise")
    assert isinstance(rate, RateHandler)
    trackers = list(rate.trackers.values())
    assert len(trackers) == 60 and all(isinstance(t, ColumnTracker) for t in trackers)


def test_a_layout_with_a_repeated_element_takes_the_plain_path() -> None:
    keys: list[LayoutKey] = [("cell_voltage", "V", "rack0", 1, 1), ("cell_voltage", "V", "rack0", 1, 1)]
    lay = Layout(keys, [(0, 2)])
    rounds = [[Batch("rack0", [Sample((k + 1) * NS, "cell_voltage", 3.7 if k > 2 else 3.3, "V", Quality.GOOD,
                                      "rack0", 1, 1)] * 2, device="rack0", layout=lay)] for k in range(8)]  # fmt: skip
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    e = make("layout", rules)
    assert run("layout", rounds, rules) == run("reference", rounds, rules)
    e.process(rounds[0])
    assert e._layout_plans[lay] is None


def test_runs_of_a_layout_split_at_segments_only_where_a_rate_rule_reads() -> None:
    lay = shape("rack0", volts=30, temps=12, block=25)  # 46 samples, segments 0:25 and 25:46
    e = make("layout", load_rule_file(defaults_path("lithium-ion"))[0])
    plan = layoutpath.plan_layout(lay, e._handlers_of)
    assert plan is not None
    runs = [(r.quantity, r.start, r.stop, r.bulk) for r in plan.runs]
    assert runs == [
        ("cell_voltage", 0, 30, True),  # across the segment start at 25: no rate rule on voltages
        ("cell_temperature", 30, 42, True),  # inside the segment 25:50
        ("soc", 42, 43, False), ("rack_current", 43, 44, False), ("bms_state", 44, 45, False),
        ("rack_voltage", 45, 46, False),
    ]  # fmt: skip
    lay = shape("rack0", volts=20, temps=12, block=25)
    plan = layoutpath.plan_layout(lay, e._handlers_of)
    assert plan is not None
    assert [(r.start, r.stop) for r in plan.runs][:3] == [(0, 20), (20, 25), (25, 32)]


def test_an_equal_layout_made_anew_reuses_the_plan() -> None:
    e = make("layout", rules_with_rates())
    first, again = shape("rack0"), shape("rack0")
    e.process(polls({"rack0": first}, 1)[0])
    e.process(polls({"rack0": again}, 1)[0])
    assert e._layout_plans[again] is e._layout_plans[first] is not None
    other = shape("rack0", temps=8)
    e.process(polls({"rack0": other}, 1)[0])
    assert e._layout_plans[other] is not e._layout_plans[first]


def restarted(mode: str, rounds: list[Poll], at: int) -> str:
    """Run to poll `at`, restart from the journal (as JSON, as stored), run the rest: every record after."""
    first = make(mode, rules_with_rates())
    journal: list[dict[str, Any]] = []
    for k, poll in enumerate(rounds[:at]):
        first.process(poll)
        first.tick((k + 1) * NS + NS // 2)
        journal += first.take_journal()
    latest: dict[str, dict[str, Any]] = {}
    for entry in json.loads(json.dumps(journal)):
        if entry["type"] in ("event", "condition"):
            latest[entry["alarm_id"]] = entry
    e = make(mode, rules_with_rates())
    records = [(b.device, b.records) for b in e.restore(latest.values(), at * NS)]
    assert_tracked(e)
    for k, poll in enumerate(rounds[at:], start=at):
        records += [(b.device, b.records) for b in e.process(poll) + e.tick((k + 1) * NS + NS // 2)]
    return repr((records, e.take_journal()))


def test_alarms_restored_after_a_restart_are_followed_the_same_way() -> None:
    rounds = faults(polls({r: shape(r) for r in RACKS}, 45))
    at = 12  # a rate alarm (latched), over- and under-voltage and the spread are in view
    layout = restarted("layout", rounds, at)
    assert layout == restarted("reference", rounds, at)
    assert "cell_temperature_rise" in layout and "rtn_unack" in layout


def test_a_quality_alarm_in_view_sends_only_its_own_run_sample_by_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    rounds = polls({r: shape(r) for r in RACKS}, 14)
    for k in range(2, 9):
        b = rounds[k][0]
        put(b, t(b, 7), quality=Quality.BAD, value=None)  # bad_quality raises after 5 s, then stays in view
    e = make("layout", load_rule_file(defaults_path("lithium-ion"))[0])
    for poll in rounds[:10]:
        e.process(poll)
    assert e.quality_watch == 1
    bulk = bulk_counter(monkeypatch)
    for poll in rounds[10:]:
        e.process(poll)
    plans = {id(p): p for p in e._layout_plans.values() if p is not None}.values()
    bulk_runs = sum(r.bulk for p in plans for r in p.runs)
    assert bulk_runs == 9  # voltages and two temperature runs (a segment boundary) of each rack
    # every one but rack0's first temperature run (the one holding the watched sensor) in bulk
    assert bulk[0] == 4 * (bulk_runs - 1)


def test_runs_of_one_quality_no_rule_takes_are_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    rounds = polls({"rack0": shape("rack0")}, 3)
    for poll in rounds[1:]:
        b = poll[0]
        b.samples[:] = [s._replace(quality=Quality.COMM_LOSS, value=None) for s in b.samples]
    e = make("layout", load_rule_file(defaults_path("lithium-ion"))[0])
    walked: list[str] = []
    real = e._run_exact

    def exact(q: str, run: Any) -> bool:
        walked.append(q)
        return real(q, run)

    monkeypatch.setattr(e, "_run_exact", exact)
    e.process(rounds[0])
    assert walked == ["soc", "rack_current", "bms_state", "rack_voltage"]  # GOOD: the rest in bulk
    walked.clear()
    out = e.process(rounds[1])
    assert walked == []  # comm_loss everywhere: no rule reads those samples
    assert [x["alarm_id"] for b in out for x in b.records if x["type"] == "event"] == ["rack0:comm_loss"]
