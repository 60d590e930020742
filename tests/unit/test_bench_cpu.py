"""The bench's CPU accounting: /proc parsing, a window's shares of a core and of the machine, the
saturation flag, a short-lived peer's CPU read before it is reaped, and medians with their range."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from bench import cpu
from bench.proc import python, spawn, stat_cpu_seconds
from bench.stats import Fig, Row, Runs, fmt, format_table

# /proc/<pid>/stat of a process whose name holds a space and a parenthesis; utime 250, stime 50 ticks
STAT = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 50 0 0 20 0 3 0 100 0 0"
PROC_STAT = """cpu  1000 50 300 8000 200 10 20 5 0 0
cpu0 500 25 150 4000 100 5 10 2 0 0
intr 12345
"""


def test_stat_cpu_seconds_counts_fields_after_the_name() -> None:
    assert stat_cpu_seconds(STAT, clk_tck=100) == pytest.approx(3.0)


def test_machine_times_sum_the_aggregate_line_and_count_iowait_as_idle() -> None:
    t = cpu.machine_times(PROC_STAT)
    assert t == cpu.MachineTimes(total=1000 + 50 + 300 + 8000 + 200 + 10 + 20 + 5, idle=8000 + 200)
    with pytest.raises(ValueError):
        cpu.machine_times("intr 1\n")


def window(gateway: float, peers: dict[str, float], idle_ticks: int, cores: int = 2) -> cpu.CpuShare:
    """A 10 s window on `cores` cores: the gateway and peers used these CPU seconds; the machine was
    idle for `idle_ticks` of its 100 ticks per second per core."""
    start = cpu.Snapshot(100.0, cpu.MachineTimes(0, 0), {"gateway": 5.0, **dict.fromkeys(peers, 1.0)})
    end = cpu.Snapshot(
        110.0,
        cpu.MachineTimes(10 * 100 * cores, idle_ticks),
        {"gateway": 5.0 + gateway, **{k: 1.0 + v for k, v in peers.items()}, "can sender": 2.0},
    )
    return cpu.share("gateway", start, end, cores)


def test_share_of_a_core_and_of_the_machine() -> None:
    s = window(gateway=6.0, peers={"mosquitto": 1.0, "bench": 0.5}, idle_ticks=1000)
    assert s.core_pct == {"gateway": 60.0, "mosquitto": 10.0, "bench": 5.0, "can sender": 20.0}
    assert s.subject_pct == pytest.approx(30.0)  # 60 % of one core = 30 % of two
    assert s.peers_pct == pytest.approx(17.5)  # the sender joined inside the window: all of its 2 s count
    assert s.idle_pct == pytest.approx(50.0)
    f = s.figures()
    assert f["own_pct"] == pytest.approx(47.5) and f["other_pct"] == pytest.approx(2.5)
    assert f["core:mosquitto"] == 10.0


def test_saturation_flag() -> None:
    assert cpu.verdict(own_pct=60.0, busy_pct=70.0) == ""
    assert cpu.verdict(own_pct=90.0, busy_pct=95.0) == cpu.SATURATED
    assert "other load" in cpu.verdict(own_pct=50.0, busy_pct=95.0)  # someone else took the headroom
    assert cpu.verdict(math.nan, math.nan) == ""
    calm, hot = Runs(), Runs()
    for own in (40.0, 50.0, 90.0):
        calm.add(own_pct=own, idle_pct=100.0 - own)
    for own in (88.0, 95.0, 60.0):
        hot.add(own_pct=own, idle_pct=100.0 - own)
    assert cpu.flag(calm) == "saturated in 1 of 3 runs" and not cpu.saturated(calm)
    assert cpu.flag(hot) == cpu.SATURATED and cpu.saturated(hot)
    assert cpu.flag(hot, subject="naive baseline") == "saturated (not a valid measurement of the naive baseline)"


def test_rows_flag_and_print_the_peers() -> None:
    gw, naive = Runs(), Runs()
    for _ in range(2):
        gw.add(**window(gateway=14.0, peers={"mosquitto": 4.0}, idle_ticks=100).figures())
        naive.add(**window(gateway=4.0, peers={"mosquitto": 1.0}, idle_ticks=1200).figures())
    rows = cpu.rows("can", "@8k/s ", gw, naive)
    assert [r.metric for r in rows] == [
        "@8k/s CPU % of the machine",
        "@8k/s peers' CPU % of the machine",
        "@8k/s machine idle %",
    ]
    assert rows[0].gateway == pytest.approx(70.0) and rows[0].note == cpu.SATURATED
    assert "mosquitto 40.0" in rows[1].note and "can sender 20.0" in rows[1].note
    assert math.isnan(rows[1].ratio)  # peers of two different subjects: no ratio
    text = cpu.line("can @8000/s", gw, "gateway")
    assert "gateway CPU 70.0 % of the machine (140 % of a core)" in text and text.endswith(cpu.SATURATED)
    row = Row("can", "p99", 10.0)
    cpu.note(row, cpu.SATURATED)
    cpu.note(row, cpu.SATURATED)
    assert row.note == cpu.SATURATED


def test_medians_keep_the_runs_range_in_the_table() -> None:
    r = Runs()
    for v in (5.0, 9.0, 6.0):
        r.add(x=v, same=2.0)
    fig = r.med("x")
    assert isinstance(fig, Fig) and fig == 6.0 and (fig.lo, fig.hi, fig.n) == (5.0, 9.0, 3)
    assert fmt(fig) == "6.00 [5.00–9.00]"
    assert fmt(r.med("same")) == "2.00"  # the runs agree: no range
    assert fmt(Fig([3999.2, 3999.4])) == "3999"  # nor when they agree to the digits shown
    assert type(fig * 2) is float  # a derived figure has no range of its own
    assert "6.00 [5.00–9.00]" in format_table([Row("s", "x", r.med("x"))])


def test_a_short_lived_peer_is_counted_whole(tmp_path: Path) -> None:
    """The CAN sender ends inside the window: its CPU is read from its zombie before it is reaped."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    w = cpu.CpuWindow("bench", {"bench": [cpu.pid_reader(os.getpid())]})
    w.start()
    child = spawn(python("-c", burn), "burner", tmp_path / "burner.log")
    w.add("burner", child.cpu)
    assert child.wait(120) == 0
    s = w.stop()
    assert child.last_cpu >= 0.29
    assert s.core_pct["burner"] * s.wall / 100 == pytest.approx(child.last_cpu)
    assert 0 <= s.idle_pct <= 100 and s.cores == os.cpu_count()
