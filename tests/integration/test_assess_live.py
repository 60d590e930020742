"""The live assessment in a real runtime: a simulated rack runs a capacity test at speed with a BMS that
overstates SoH by 5 points; after the full discharge the outbox holds `assessed_capacity` within 3 % of
the simulator's truth and `assessed_soh`, and the default `soh_mismatch` alarm is raised."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config.settings import load_config
from gateway.model import BatchKind, Sample
from gateway.runtime.core import Runtime
from gateway.sources.sim import truth
from gateway.sources.sim.config import SimulatedSourceConfig
from gateway.sources.sim.feed import model_from
from tests.runtime_support import run_until
from tests.support.site import write_config
from tests.support.store import runtime_batches

RACK = "rack-01"
# A capacity test at 2C from 90 % SoC, 5 simulated seconds a sample (50 samples a real second when the
# machine keeps up), on the simulated clock so that the samples' times are the model's.
INTERVAL = 0.02
SIM: dict[str, object] = {
    "speed": 250,
    "max_step": 5,
    "clock": "simulated",
    "initial_soc": 90,
    "current_profile": "capacity_test",
    "capacity_test": "{current: 560, rest: 60}",
    "cells": "{soh: 90}",
    "bms": "{soh_offset: 5}",
}


def nominal_usable_ah() -> float:
    """The usable capacity of the same rack with nominal cells: what SoH 100 % means to the simulator."""
    cfg = SimulatedSourceConfig.model_validate({"name": RACK, "modules": 2, "cells_per_module": 4,
                                                "current_profile": "capacity_test",
                                                "capacity_test": {"current": 560, "rest": 60}})  # fmt: skip
    return float(model_from(cfg).nominal_usable_ah)


def assessed(rt: Runtime) -> list[Sample]:
    return [s for b in runtime_batches(rt) if b.source == "assess" for s in b.samples()]


def alarm_events(rt: Runtime, alarm_id: str) -> list[dict[str, Any]]:
    return [r for b in runtime_batches(rt) if b.kind == BatchKind.ALARM for r in b.records
            if r.get("type") == "event" and r.get("alarm_id") == alarm_id]  # fmt: skip


async def test_a_capacity_test_publishes_assessed_values_and_raises_soh_mismatch(tmp_path: Path) -> None:
    nominal = nominal_usable_ah()
    # the grid step is the source's (interval x speed on the simulated clock: 5 s); the nominal capacity is the
    # simulator's SoH 100 %, so that assessed_soh is comparable with its true SoH
    extra = f"assess: {{enabled: true, nominal_capacity_ah: {nominal}, cutoff_voltage: 2.85}}\n"
    rt = Runtime(load_config(write_config(tmp_path, [RACK], interval=INTERVAL, rack=SIM, extra=extra)))
    mismatch = f"{RACK}:soh_mismatch"

    def done() -> bool:
        return bool(assessed(rt)) and bool(alarm_events(rt, mismatch))

    await run_until(rt, done, limit=180)
    doc = json.loads(truth.model_path(tmp_path / f"truth-{RACK}.jsonl").read_text(encoding="utf-8"))
    params = doc["parameters"]
    by = {s.quantity: s for s in assessed(rt)[:2]}
    assert set(by) == {"assessed_capacity", "assessed_soh"}
    cap, soh = by["assessed_capacity"], by["assessed_soh"]
    assert (cap.rack, cap.unit, soh.unit, cap.quality) == (RACK, "Ah", "%", "good")
    assert cap.value == pytest.approx(params["usable_capacity_ah"], rel=0.03)
    assert soh.value == pytest.approx(params["true_soh_pct"], rel=0.03)
    # stamped at the end of the discharge: a little before the simulator's cutoff at 2.8 V (the lowest cell
    # passes the assessment's 2.85 V first)
    cutoff = next(e for e in doc["events"] if e.get("phase") == "rest_empty")
    assert 0 <= int(cutoff["ts"]) - cap.ts <= 60 * 1_000_000_000
    raised = alarm_events(rt, mismatch)[0]
    assert raised["state"] == "active_unack" and raised["severity"] == "minor"
    assert "disagrees with assessed_soh" in raised["message"]
    bms_soh = [float(s.value) for b in runtime_batches(rt) if b.source == RACK for s in b.samples()
               if s.quantity == "soh" and isinstance(s.value, float)]  # fmt: skip
    assert isinstance(soh.value, float) and bms_soh[-1] == pytest.approx(params["true_soh_pct"] + 5, abs=0.05)
    assert bms_soh[-1] - soh.value > 3  # what the rule saw: more than its tolerance apart
