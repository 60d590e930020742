"""A tiny bench run against real peers: simulated racks into VictoriaMetrics through a short outage.
It asserts that nothing was lost, never a time (benchmarks print figures; they do not fail on time)."""

from __future__ import annotations

from pathlib import Path

from bench import backlog_bench


def test_quick_backlog_run_loses_nothing(tmp_path: Path) -> None:
    figures = backlog_bench.run_gateway(tmp_path / "gw", steady=1.0, outage=3.0, rate_window=1.0, tail=0.5)
    assert figures["backlog"] > 0, figures  # the outage did hold samples back
    assert figures["lost"] == 0, figures
