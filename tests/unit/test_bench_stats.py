"""The bench's pure pieces: percentiles, ratios, schedule jitter, the table, the DBC frames, loopback CAN."""

from __future__ import annotations

import math

import pytest

from bench import candata
from bench.can_sender import packed
from bench.canbus import GROUP, loopback_bus, loopback_socket
from bench.proc import cpu_seconds, status_mb
from bench.stats import Row, Runs, format_table, median, percentile, ratio, schedule_jitter, slope
from tests.servers import free_udp_port


def test_percentile_interpolates_between_ranks() -> None:
    xs = [float(x) for x in range(1, 101)]
    assert percentile(xs, 50) == pytest.approx(50.5)
    assert percentile(xs, 99) == pytest.approx(99.01)
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_median_ignores_nan_and_ratio_handles_missing() -> None:
    assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert math.isnan(median([]))
    assert ratio(10, 4) == 2.5
    assert math.isnan(ratio(1, 0))
    assert math.isnan(ratio(math.nan, 1))


def test_row_ratio_reads_the_better_direction() -> None:
    assert Row("s", "frames/s", 30000, 6000).ratio == 5.0
    assert Row("s", "latency", 10, 50, better="lower").ratio == 5.0


def test_schedule_jitter_removes_offset_and_finds_drift() -> None:
    on_time = [100.0 + 0.2 + k for k in range(60)]  # a constant offset is not jitter
    jit, drift = schedule_jitter(on_time, 1.0)
    assert max(jit) == pytest.approx(0.0, abs=1e-9)
    assert drift == pytest.approx(0.0, abs=1e-6)
    drifting = [k * 1.001 for k in range(100)]  # 1 ms late per cycle: 3.6 s per hour
    _, drift = schedule_jitter(drifting, 1.0)
    assert drift == pytest.approx(3.6, rel=1e-3)
    late = [float(k) for k in range(10)]
    late[5] += 0.040
    jit, _ = schedule_jitter(late, 1.0)
    assert max(jit) == pytest.approx(0.040)
    skipped = [0.0, 1.0, 3.0, 4.0]  # a skipped cycle is not jitter
    assert max(schedule_jitter(skipped, 1.0)[0]) == pytest.approx(0.0)


def test_slope() -> None:
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert math.isnan(slope([1], [1]))


def test_runs_take_medians() -> None:
    r = Runs()
    for v in (5, 1, 3):
        r.add(x=v)
    assert r.med("x") == 3
    assert r.max("x") == 5
    assert math.isnan(r.med("missing"))


def test_table_lines_up_and_marks_targets() -> None:
    rows = [
        Row("can", "sustained frames/s", 32000, 6000, ">=25,000", met=True),
        Row("can", "p99 ms", 80.5, math.nan, "<100", "lower", met=False),
    ]
    text = format_table(rows).splitlines()
    assert len({len(line) for line in text}) == 1
    assert "32,000" in text[2] and "5.3x" in text[2] and "yes" in text[2]
    assert "NO" in text[3] and " - " in text[3]


def test_bench_dbc_frames_decode_with_the_sample_counts_the_sender_reports() -> None:
    db = candata.load()
    frames = candata.cycle_frames(db)
    assert len(frames) == 1 + candata.CELL_MUXES + candata.TEMP_MUXES
    for f in [*frames, candata.probe_frame(db, 123)]:
        decoded = db.decode_message(f.arbitration_id, f.data)
        assert len([k for k in decoded if not k.endswith("Mux")]) == f.samples
    assert db.decode_message(candata.PROBE_ID, candata.probe_frame(db, 123).data) == {"ProbeSeq": 123}


def test_udp_multicast_pinned_to_loopback_carries_frames() -> None:
    port = free_udp_port()
    bus = loopback_bus(port)
    try:
        sock = loopback_socket()
        frame = candata.probe_frame(candata.load(), 42)
        sock.sendto(packed(frame), (GROUP, port))
        msg = bus.recv(timeout=30)
        sock.close()
    finally:
        bus.shutdown()
    assert msg is not None and msg.arbitration_id == candata.PROBE_ID and bytes(msg.data) == frame.data


def test_own_process_cpu_and_memory_are_readable() -> None:
    import os

    assert cpu_seconds(os.getpid()) > 0
    assert status_mb(os.getpid(), "VmHWM") > 1


def test_sustained_rate_is_the_highest_clean_step() -> None:
    from bench.can_bench import sustained
    from bench.stats import Runs

    def step(rate: float, lost: float, p99: float) -> Runs:
        r = Runs()
        r.add(rate=rate, lost=lost, p99=p99)
        return r

    results = {8000: step(7999.4, 0, 50), 16000: step(15990, 0, 200), 25000: step(24000, 0, 300)}
    assert sustained(results) == 24000  # the sender fell short of 25,000: what it reached
    results[25000] = step(24999, 0, 300)
    assert sustained(results) == 25000
    results[32000] = step(32000, 12, 300)  # lost samples: not sustained
    assert sustained(results) == 25000
    assert sustained({4000: step(4000, 0, 600)}) == 0  # p99 over 500 ms
