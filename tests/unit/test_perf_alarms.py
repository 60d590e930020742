"""The alarm engine's fast path gives the same events, journal and active sets as the reference loop."""

from __future__ import annotations

import random
from typing import Any

from bench.micro_can_alarms import alarm_batches
from gateway.alarms import rules as r
from gateway.alarms.engine import AlarmEngine
from gateway.alarms.ruleset import defaults_path, load_rule_file
from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Quality, Sample

NS = 1_000_000_000


def _engine(fast: bool, racks: int) -> AlarmEngine:
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    e = AlarmEngine(rules, {f"rack{i:03d}": f"rack{i:03d}" for i in range(racks)})
    e.fast = fast
    return e


def _damage(rounds: list[list[Batch]], seed: int) -> list[list[Batch]]:
    """Bad qualities, comm loss, ints, NaN, text and None values, mixed racks and statuses."""
    rnd = random.Random(seed)
    out = []
    for k, batches in enumerate(rounds):
        new = []
        for b in batches:
            samples = list(b.samples)
            for _ in range(20):
                i = rnd.randrange(len(samples))
                s = samples[i]
                choice = rnd.randrange(7)
                if choice == 0:
                    samples[i] = s._replace(quality=Quality.BAD, value=None)
                elif choice == 1:
                    samples[i] = s._replace(quality=Quality.COMM_LOSS, value=None)
                elif choice == 2:
                    samples[i] = s._replace(value=3 if s.quantity == "cell_voltage" else 26)
                elif choice == 3:
                    samples[i] = s._replace(value=float("nan"))
                elif choice == 4:
                    samples[i] = s._replace(value="fault")
                elif choice == 5:
                    samples[i] = s._replace(rack="rack001")  # a sample of another rack inside a run
                else:
                    samples[i] = s._replace(quality=Quality.OUT_OF_RANGE)
            status = None
            if k == 15 and b.source == "rack002":
                status = DeviceStatus(b.source, DeviceState.OFFLINE, "bus down", samples[0].ts)
            new.append(Batch(b.source, samples, BatchKind.SAMPLES, b.device, status))
        out.append(new)
    return out


def _run(fast: bool, rounds: list[list[Batch]], racks: int) -> tuple[list[Any], list[Any]]:
    e = _engine(fast, racks)
    records: list[Any] = []
    journal: list[Any] = []
    for k, batches in enumerate(rounds):
        for b in e.process(batches):
            records.append((b.source, b.kind, b.device, [dict(x) for x in b.records]))
        for b in e.tick((k + 1) * NS + NS // 2):
            records.append((b.source, b.kind, b.device, [dict(x) for x in b.records]))
        journal.extend(e.take_journal())
    return records, journal


def test_fault_run_gives_identical_events_with_the_fast_path_on_and_off() -> None:
    rounds = alarm_batches(15, 200, 40, fault=True)
    fast = _run(True, rounds, 15)
    slow = _run(False, rounds, 15)
    assert repr(fast) == repr(slow)  # repr: NaN values (from NaN samples) compare unequal
    events = [x for rec in fast[0] for x in rec[3]]
    assert len(events) > 50  # the run does raise and clear alarms


def test_damaged_fault_run_gives_identical_events_with_the_fast_path_on_and_off() -> None:
    rounds = _damage(alarm_batches(8, 120, 30, fault=True), 5)
    fast = _run(True, rounds, 8)
    slow = _run(False, rounds, 8)
    assert repr(fast) == repr(slow)  # repr: NaN values (from NaN samples) compare unequal
    assert len(fast[1]) > 20


def test_spread_picks_the_first_max_and_min_as_before() -> None:
    values = [3.3, 3.5, 3.1, 3.5, 3.1, 3.2]
    hi = max(range(len(values)), key=values.__getitem__)
    lo = min(range(len(values)), key=values.__getitem__)
    assert r.spread(values) == (values[hi] - values[lo], hi, lo) == (0.3999999999999999, 1, 2)


def test_mixed_quantity_runs_and_a_threshold_crossing_inside_a_run() -> None:
    rounds = []
    for k in range(6):
        ts = (k + 1) * NS
        samples = [Sample(ts, "cell_voltage", 3.3, "V", Quality.GOOD, "rack000", 0, c) for c in range(10)]
        samples[4] = samples[4]._replace(value=3.9 if k < 4 else 3.3)
        samples.insert(5, Sample(ts, "cell_temperature", 20.0 + k * 10, "°C", Quality.GOOD, "rack000", 0, 1))
        samples.append(Sample(ts, "cell_voltage", 3.31, "V", Quality.GOOD, "rack000", 1, 1))
        rounds.append([Batch("rack000", samples, device="rack000")])
    fast, slow = _run(True, rounds, 1), _run(False, rounds, 1)
    assert fast == slow and len(fast[0]) >= 2
