"""The capacity-test profile on a 240-cell rack at speed: a full cycle, and the Ah the samples show
between full and the first cutoff is the truth's usable capacity; the truth document beside the truth file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from gateway.model import Batch
from gateway.sources.base import SourceContext
from gateway.sources.sim import truth
from gateway.sources.sim.config import SimulatedSourceConfig
from gateway.sources.sim.feed import NS, RackFeed
from gateway.sources.sim.source import SimulatedSource

RACK_240 = {
    "name": "rack-240",
    "modules": 20,
    "cells_per_module": 12,
    "interval": 1.0,
    "speed": 10.0,  # 10 simulated seconds a sample, in steps of 1 s
    "clock": "simulated",
    "current_profile": "capacity_test",
    "cells": {
        "capacity_sd": 0.01,
        "weak": [{"module": 7, "cell": 5, "capacity_factor": 0.92}],
        "high_resistance": [{"module": 12, "cell": 9, "resistance_factor": 3.0}],
    },
    "bms": {"soh_offset": 5.0},
    "pack_voltage_bias": 0.8,
}


def test_a_240_cell_capacity_test_at_speed_matches_the_truth() -> None:
    cfg = SimulatedSourceConfig.model_validate(RACK_240)
    feed = RackFeed(cfg, start_ns=1_700_000_000 * NS)
    params = truth.parameters(feed)
    events: list[dict[str, object]] = []
    ts: list[int] = []
    current: list[float] = []
    cutoff_batch: Batch | None = None
    for out in feed.run(24 * 3600):
        events += out.events
        assert out.batch is not None
        if any(e.get("phase") == "rest_empty" for e in out.events):
            break
        b = out.batch
        i = b.keys.rows.index(next(k for k in b.keys.rows if k.quantity == "rack_current"))
        ts.append(int(b.ts[0]))
        current.append(float(b.values[i]))
        cutoff_batch = b
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases == ["charge_cv", "rest_full", "discharge", "rest_empty"]  # a full cycle
    full = next(e for e in events if e.get("phase") == "rest_full")
    cut = next(e for e in events if e.get("phase") == "rest_empty")
    # Integrate the reported current over the samples from full to the first cutoff (rectangles: a
    # sample's current held since the sample before).
    t = np.asarray(ts)
    amps = np.asarray(current)
    span = (t > int(full["ts"])) & (t <= int(cut["ts"]))  # type: ignore[call-overload]
    dt = np.diff(t, prepend=t[0]) / NS
    measured = -float((amps[span] * dt[span]).sum()) / 3600.0
    usable = float(params["usable_capacity_ah"])  # type: ignore[arg-type]
    assert measured == pytest.approx(usable, rel=0.01)
    assert float(cut["discharged_ah"]) == pytest.approx(usable, rel=0.001)  # type: ignore[arg-type]
    assert float(full["usable_capacity_ah"]) == pytest.approx(usable, rel=1e-4)  # type: ignore[arg-type]
    # the weak cell limits the rack: it reached the charge limit and the cutoff first
    assert (full["module"], full["cell"]) == (7, 5) and (cut["module"], cut["cell"]) == (7, 5)
    assert cutoff_batch is not None
    by = {k.quantity: float(v) for k, v in zip(cutoff_batch.keys.rows, cutoff_batch.values, strict=True)
          if k.module is None}  # fmt: skip
    # the last sample of the discharge (the cutoff came within the next 10 s): the weak cell is the lowest
    assert by["cell_voltage_min_position"] == 6 * 12 + 5 and 2.8 < by["cell_voltage_min"] < 2.9
    assert float(params["rack_capacity_ah"]) < 0.93 * 280  # type: ignore[arg-type]
    assert by["soh"] == pytest.approx(float(params["true_soh_pct"]) + 5.0, abs=0.01)  # type: ignore[arg-type]


def test_the_source_writes_the_truth_document_beside_the_truth_file(tmp_path: Path) -> None:
    small = {
        "modules": 2,
        "speed": 600.0,
        "truth_file": tmp_path / "truth-rack.jsonl",
        "cells": {"weak": [{"module": 2, "cell": 5, "capacity_factor": 0.92}]},
        "faults": [{"kind": "stuck_voltage", "at": 1200, "module": 1, "cell": 3}],
    }
    cfg = SimulatedSourceConfig.model_validate({**RACK_240, **small})
    source = SimulatedSource(cfg)
    out: list[Batch] = []

    async def emit(batch: Batch) -> None:
        out.append(batch)

    async def cycles() -> None:
        ctx = SourceContext(emit, lambda: None, "t")
        source._truth = (tmp_path / "truth-rack.jsonl").open("a", encoding="utf-8")
        source._write_model()
        for _ in range(30):  # 5 simulated hours
            await source._cycle(ctx)
        source._truth.close()

    asyncio.run(cycles())
    doc = json.loads((tmp_path / "truth-rack.model.json").read_text())
    assert doc["format"] == "bms-gateway-simulated-rack-truth" and doc["version"] == 1
    p = doc["parameters"]
    assert p["rack"] == "rack-240" and p["modules"] == 2 and len(p["cells"]) == 24
    assert p["weak_cells"] == [{"module": 2, "cell": 5, "capacity_factor": 0.92}]
    assert p["pack_voltage_bias_v"] == 0.8 and p["bms"]["soh_offset"] == 5.0 and p["bms"]["soc_basis_ah"] == 280.0
    assert p["test"]["current_a"] == 140.0 and p["test"]["cutoff_voltage"] == 2.8
    assert p["faults"][0]["kind"] == "stuck_voltage" and p["faults"][0]["at"] == 1200
    kinds = [(e["event"], e.get("phase") or e.get("kind") or e.get("quantity")) for e in doc["events"]]
    assert ("fault", "stuck_voltage") in kinds and ("stuck", "cell_voltage") in kinds
    assert ("phase", "rest_full") in kinds and ("phase", "rest_empty") in kinds
    start = p["start_ns"]
    assert all(e["ts"] == start + round(e["t"] * NS) for e in doc["events"])  # the simulated clock
    stamps = [int(b.ts[0]) for b in out if b.n]
    assert stamps == [start + k * 600 * NS for k in range(1, 31)]
    lines = (tmp_path / "truth-rack.jsonl").read_text().splitlines()
    assert len(lines) == source.produced  # the samples' truth file holds samples only
