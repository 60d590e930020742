"""The micro benchmark's fault run (bench/micro_can_alarms.py) through the engine: transitions worked out by hand."""

from __future__ import annotations

from typing import Any

from bench.micro_can_alarms import alarm_batches
from gateway.alarms import rules as r
from gateway.alarms.engine import AlarmEngine
from gateway.alarms.ruleset import defaults_path, load_rule_file
from gateway.model import Batch

NS = 1_000_000_000


def _run(rounds: list[list[Batch]], racks: int) -> list[dict[str, Any]]:
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    e = AlarmEngine(rules, {f"rack{i:03d}": f"rack{i:03d}" for i in range(racks)})
    out: list[dict[str, Any]] = []
    for k, batches in enumerate(rounds):
        for b in e.process(batches) + e.tick((k + 1) * NS + NS // 2):
            out += [x for x in b.records if x["type"] == "event"]
    return out


def test_the_fault_run_gives_the_transitions_worked_out_from_the_default_limits() -> None:
    """Cell m0c5 of rack000 reads 3.70 V at 4-12 s, 2.40 V at 13-21 s, ~3.3 V after (polls at whole seconds).

    over (3.65 V, on-delay 1 s) raises at 5 s, clears at 13 s; high (3.55 V, 2 s) 6 s / 13 s; under (2.5 V, 1 s,
    latched) raises at 14 s and stays; low (2.8 V, 2 s) 15 s / 22 s; the rack's spread (0.15 V, 10 s) from
    4 s raises at 14 s and clears at 22 s."""
    events = _run(alarm_batches(8, 120, 30, fault=True), 8)
    got = [(e["alarm_id"], e["state"], e["ts"] // NS) for e in events
           if e["rack"] == "rack000" and "voltage" in e["alarm_id"]]  # fmt: skip
    assert got == [
        ("rack000:cell_over_voltage:m0c5", "active_unack", 5),
        ("rack000:cell_high_voltage:m0c5", "active_unack", 6),
        ("rack000:cell_over_voltage:m0c5", "rtn_unack", 13),
        ("rack000:cell_high_voltage:m0c5", "rtn_unack", 13),
        ("rack000:cell_under_voltage:m0c5", "active_unack", 14),
        ("rack000:cell_voltage_spread", "active_unack", 14),
        ("rack000:cell_low_voltage:m0c5", "active_unack", 15),
        ("rack000:cell_low_voltage:m0c5", "rtn_unack", 22),
        ("rack000:cell_voltage_spread", "rtn_unack", 22),
    ]
    assert {e["rack"] for e in events if "voltage" in e["alarm_id"]} == {"rack000", "rack007"}  # r % 7 == 0


def test_spread_picks_the_first_max_and_min_as_before() -> None:
    values = [3.3, 3.5, 3.1, 3.5, 3.1, 3.2]
    assert r.spread(values) == (0.3999999999999999, 1, 2)
