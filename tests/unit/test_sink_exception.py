"""Report by exception, the pure rule and the filter's transaction, on hand-computed signals (no event loop)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Keys, Sample, Value
from gateway.sinks.config import MqttSinkConfig, ReportByException
from gateway.sinks.exception import key_path, parse_deadband
from gateway.sinks.exceptionfilter import ExceptionFilter, rounds_of
from gateway.store.outbox import Row

S = 1_000_000_000  # ns in a second


def rbe(deadbands: Mapping[str, object], heartbeat: float = 3600.0, **kw: object) -> ReportByException:
    return ReportByException.model_validate({"heartbeat": heartbeat, "deadbands": deadbands, **kw})


def cell(t: float, v: Value, quality: str = "good", cell_no: int = 1, rack: str = "r1") -> Sample:
    return Sample(int(t * S), "cell_voltage", v, "V", quality, rack, 1, cell_no)


def sent_one_by_one(flt: ExceptionFilter, samples: Sequence[Sample]) -> list[int]:
    """Indices of the samples sent when each is its own stored row and every write is confirmed."""
    out = []
    for i, s in enumerate(samples):
        rows = flt.apply([Row(i + 1, s.ts, Batch.of_samples("r1", [s]))])
        flt.commit()
        if rows:
            out.append(i)
    return out


def sent_in_one_batch(flt: ExceptionFilter, samples: Sequence[Sample]) -> list[Sample]:
    rows = flt.apply([Row(1, 0, Batch.of_samples("r1", list(samples)))])
    flt.commit()
    return [s for r in rows for s in r.batch.samples()]


def test_a_ramp_sends_every_fifth_sample() -> None:
    # 1 mV a sample against a 5 mV deadband: 3.300, 3.305, 3.310, ... (a step of exactly the deadband
    # is sent although 3.305 - 3.300 is 0.00499999... in floats).
    ramp = [cell(i, round(3.300 + 0.001 * i, 3)) for i in range(21)]
    flt = ExceptionFilter("s", rbe({"cell_voltage": 0.005}))
    assert sent_one_by_one(flt, ramp) == [0, 5, 10, 15, 20]
    assert flt.suppressed == 16


def test_a_step_is_sent_once() -> None:
    step = [cell(i, 3.300 if i < 5 else 3.310) for i in range(10)]
    assert sent_one_by_one(ExceptionFilter("s", rbe({"cell_voltage": 0.005})), step) == [0, 5]


def test_noise_inside_the_deadband_sends_only_the_first_sample() -> None:
    noise = [cell(i, v) for i, v in enumerate([3.300, 3.304, 3.296, 3.303, 3.2955, 3.3049, 3.300])]
    assert sent_one_by_one(ExceptionFilter("s", rbe({"cell_voltage": 0.005})), noise) == [0]


def test_a_quality_change_is_sent_both_ways() -> None:
    q = ["good", "good", "stale", "stale", "comm_loss", "good", "good"]
    samples = [cell(i, 3.3, ql) for i, ql in enumerate(q)]
    assert sent_one_by_one(ExceptionFilter("s", rbe({"cell_voltage": 0.005})), samples) == [0, 2, 4, 5]


def test_the_heartbeat_sends_a_constant_key_when_its_last_send_is_old_enough() -> None:
    every_3s = [cell(3 * i, 3.3) for i in range(9)]  # t = 0, 3, ..., 24
    assert sent_one_by_one(ExceptionFilter("s", rbe({"cell_voltage": 0.005}, heartbeat=10)), every_3s) == [0, 4, 8]
    every_5s = [cell(5 * i, 3.3) for i in range(5)]  # t = 0, 5, 10, 15, 20: exactly the heartbeat is due
    assert sent_one_by_one(ExceptionFilter("s", rbe({"cell_voltage": 0.005}, heartbeat=10)), every_5s) == [0, 2, 4]
    # A rule's own heartbeat replaces the section's.
    own = rbe({"cell_voltage": {"deadband": 0.005, "heartbeat": 6}}, heartbeat=10)
    assert sent_one_by_one(ExceptionFilter("s", own), every_3s) == [0, 2, 4, 6, 8]


def test_a_clock_step_back_is_sent() -> None:
    samples = [cell(100, 3.3), cell(101, 3.3), cell(50, 3.3), cell(51, 3.3)]
    assert sent_one_by_one(ExceptionFilter("s", rbe({"cell_voltage": 0.005})), samples) == [0, 2]


def test_percent_against_absolute() -> None:
    values = [100.0, 100.5, 101.0, 102.0, 103.01]
    samples = [Sample(i * S, "soc", v, "%", "good", "r1") for i, v in enumerate(values)]
    # 1 % of the last SENT value: 101 (1.0 >= 1.0), then 102 is 1.0 < 1.01 from 101, 103.01 is 2.01 from 101.
    assert sent_one_by_one(ExceptionFilter("s", rbe({"soc": "1%"})), samples) == [0, 2, 4]
    # 1.0 absolute: 101, 102 and 103.01 each moved at least 1.0 from the last sent.
    assert sent_one_by_one(ExceptionFilter("s", rbe({"soc": 1.0})), samples) == [0, 2, 3, 4]
    assert parse_deadband("0.5 %") == (0.0, 0.005) and parse_deadband(0.005) == (0.005, 0.0)


def test_samples_of_one_key_in_one_batch_compare_in_order_against_the_last_sent() -> None:
    # 3.304 is 4 mV from 3.300 (suppressed); 3.308 is 8 mV from the last SENT 3.300 (sent); 3.312 is then
    # 4 mV from 3.308 (suppressed). Against the previous sample none would go; against the value before
    # the batch both 3.308 and 3.312 would.
    samples = [cell(i, v) for i, v in enumerate([3.300, 3.304, 3.308, 3.312, 3.313])]
    got = sent_in_one_batch(ExceptionFilter("s", rbe({"cell_voltage": 0.005})), samples)
    assert [s.value for s in got] == [3.300, 3.308, 3.313]
    # Interleaved with another key, in one batch, the same as one row per sample.
    mixed = [cell(i // 2, 3.3 + 0.002 * i, cell_no=1 + i % 2) for i in range(12)]
    one = sent_in_one_batch(ExceptionFilter("s", rbe({"cell_voltage": 0.005})), mixed)
    each = sent_one_by_one(ExceptionFilter("s", rbe({"cell_voltage": 0.005})), mixed)
    assert one == [mixed[i] for i in each] and len(each) == 6  # 4 mV a step: each key sends every other sample


def test_rounds_take_the_rth_sample_of_each_key() -> None:
    slots = np.array([0, 1, 0, -1, 1, 0], dtype=np.intp)
    assert [r.tolist() for r in rounds_of(slots)] == [[0, 1], [2, 4], [5]]
    assert rounds_of(np.array([-1, -1], dtype=np.intp)) == ()


def test_states_are_sent_on_change_never_within_a_deadband() -> None:
    states = ["open", "open", "closed", "closed", "open", "open"]
    samples = [Sample(i * S, "contactor_main", v, "", "good", "r1") for i, v in enumerate(states)]
    for band in (0, 0.005, "50%"):
        assert sent_one_by_one(ExceptionFilter("s", rbe({"contactor_*": band})), samples) == [0, 2, 4]
    # a number after a state, a state after a number, and True is not 1
    mixed: list[Value] = [1.0, "fault", 1.0, 1.0, True, True, 1.0]
    samples = [Sample(i * S, "raw.x", v, "", "good", "r1") for i, v in enumerate(mixed)]
    assert sent_one_by_one(ExceptionFilter("s", rbe({"raw.*": 0.5})), samples) == [0, 1, 2, 4, 6]


def test_no_value_is_a_state_of_its_own() -> None:
    values: list[Value] = [3.3, None, None, 3.3, 3.3]
    samples = [cell(i, v) for i, v in enumerate(values)]
    assert sent_one_by_one(ExceptionFilter("s", rbe({"cell_voltage": 0.005})), samples) == [0, 1, 3]
    inf = [cell(i, v) for i, v in enumerate([3.3, math.inf, math.inf, -math.inf, 3.3])]
    assert sent_one_by_one(ExceptionFilter("s", rbe({"cell_voltage": "1%"})), inf) == [0, 1, 3, 4]


def test_a_deadband_of_zero_sends_every_change_and_nothing_else() -> None:
    bits = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    samples = [Sample(i * S, "alarm.over_voltage", v, "", "good", "r1") for i, v in enumerate(bits)]
    assert sent_one_by_one(ExceptionFilter("s", rbe({"alarm.*": 0})), samples) == [0, 2, 5]


def test_keys_without_a_deadband_records_and_status_pass() -> None:
    flt = ExceptionFilter("s", rbe({"cell_voltage": 0.005}))
    online = DeviceStatus("r1", DeviceState.ONLINE, "", 1)
    first = Batch.of_samples("r1", [cell(0, 3.3), Sample(0, "soc", 50.0, "%", "good", "r1")])
    again = Batch.of_samples("r1", [cell(1, 3.3), Sample(1, "soc", 50.0, "%", "good", "r1")])
    only_cell = Batch.of_samples("r1", [cell(2, 3.3)])
    with_status = Batch.of_samples("r1", [cell(3, 3.3)], status=online)
    alarm = Batch("alarms", kind=BatchKind.ALARM, device="r1", records=[{"type": "event", "alarm_id": "a"}])
    rows = [Row(1, 0, first), Row(2, 1, again), Row(3, 2, only_cell), Row(4, 3, with_status), Row(5, 4, alarm)]
    out = flt.apply(rows)
    assert [r.seq for r in out] == [1, 2, 4, 5]  # row 3 was cut to nothing; row 4 keeps its status change
    assert out[0].batch is first  # nothing cut: the row as stored
    assert [s.quantity for s in out[1].batch.samples()] == ["soc"]  # soc has no deadband
    assert Keys._interned.get(out[1].batch.keys.rows) is not out[1].batch.keys  # a cut is not interned
    assert out[2].batch.n == 0 and out[2].batch.status == online
    assert out[3].batch is alarm
    assert flt.commit() == {"cell_voltage": 3} and flt.suppressed == 3


def test_a_failed_write_rolls_back_and_its_retry_sends_the_same_samples() -> None:
    flt = ExceptionFilter("s", rbe({"cell_voltage": 0.005}))
    assert len(flt.apply([Row(1, 0, Batch.of_samples("r1", [cell(0, 3.300)]))])) == 1
    flt.commit()
    rows = [Row(2, 0, Batch.of_samples("r1", [cell(1, 3.306), cell(2, 3.307), cell(3, 3.312)]))]
    first = [s.value for r in flt.apply(rows) for s in r.batch.samples()]
    assert first == [3.306, 3.312]
    flt.rollback()  # the sink did not confirm: 3.306 and 3.312 were not sent
    assert flt.commit() == {}  # nothing suppressed was counted
    again = [s.value for r in flt.apply(rows) for s in r.batch.samples()]
    assert again == first
    flt.commit()
    # Confirmed now: the next sample compares with 3.312.
    assert flt.apply([Row(3, 0, Batch.of_samples("r1", [cell(4, 3.316)]))]) == []
    assert flt.commit() == {"cell_voltage": 1} and flt.suppressed == 2
    # A transaction left open is rolled back by the next apply (a state is never taken as sent unconfirmed).
    flt.apply([Row(4, 0, Batch.of_samples("r1", [cell(5, 3.400, "stale")]))])
    assert len(flt.apply([Row(4, 0, Batch.of_samples("r1", [cell(5, 3.400, "stale")]))])) == 1


def test_patterns_first_match_in_the_order_written() -> None:
    cfg = rbe({"r1/cell_voltage/1/2": 0.002, "cell_voltage": 0.005, "*": 1.0})
    samples = [cell(i, 3.300 + 0.003 * i, cell_no=2) for i in range(3)]  # 3 mV a step
    assert sent_one_by_one(ExceptionFilter("s", cfg), samples) == [0, 1, 2]  # the 2 mV rule
    samples = [cell(i, 3.300 + 0.003 * i, cell_no=3) for i in range(3)]
    assert sent_one_by_one(ExceptionFilter("s", cfg), samples) == [0, 2]  # the 5 mV rule
    soc = [Sample(i * S, "soc", 50.0 + 0.5 * i, "%", "good", "r1") for i in range(3)]
    assert sent_one_by_one(ExceptionFilter("s", cfg), soc) == [0, 2]  # `*` matches every quantity
    path = Batch.of_samples("r1", [cell(0, 3.3, cell_no=2), Sample(0, "soc", 1.0, "%", "good", "r1")]).keys.rows
    assert [key_path(k) for k in path] == ["r1/cell_voltage/1/2", "r1/soc"]


def test_keys_past_max_keys_are_all_sent() -> None:
    flt = ExceptionFilter("s", rbe({"cell_voltage": 0.005}, max_keys=2))
    samples = [cell(t, 3.3, cell_no=c) for t in range(3) for c in (1, 2, 3)]
    got = sent_in_one_batch(flt, samples)
    assert sorted((s.cell, s.ts // S) for s in got) == [(1, 0), (2, 0), (3, 0), (3, 1), (3, 2)]
    assert flt.last.size == 2


def test_configuration() -> None:
    cfg = MqttSinkConfig.model_validate(
        {"host": "h", "report_by_exception": {"deadbands": {"cell_voltage": 0.005, "soc": "1%"}}}
    )
    assert cfg.report_by_exception is not None and cfg.report_by_exception.heartbeat == 300.0
    for bad in ({"cell_voltage": "5mV"}, {"cell_voltage": -1}, {"r1//x": 1}, {"soc": {"deadband": 1, "x": 2}}):
        with pytest.raises(ValidationError):
            rbe(bad)
    with pytest.raises(ValidationError):
        rbe({}, heartbeat=0)
