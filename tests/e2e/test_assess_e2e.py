"""`bms-gateway assess` on what the real daemon recorded: a simulated rack runs its capacity test at speed (a
weak cell, a BMS that overstates SoH by 5 points and reports its capacity) under `bms-gateway run` until the
simulator's truth records the first cutoff; then `assess -c gateway.yaml`, with the limits and margin it
takes from the configuration, measures the usable capacity within 3 % of the truth, calls the BMS's SoH
overstated, finds the weak cell, and writes an evidence package that `verify-package --integrity-only`
accepts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.assess.setup import margin_for
from gateway.sources.sim import truth
from tests.support.site import write_config
from tests.support.waits import wait_for

RACK = "rack-01"
WEAK = (2, 3)
INTERVAL = 0.02  # real s between samples; x speed 300: a sample every 6 simulated s
SPEED = 300
# A capacity test at 1 C from 90 % SoC on the simulated clock: a short full charge, a minute's rest, an
# hour's discharge to the cutoff (about 15 s of the daemon's time when the machine keeps up).
SIM: dict[str, object] = {
    "speed": SPEED,
    "max_step": 2,
    "clock": "simulated",
    "initial_soc": 90,
    "current_profile": "capacity_test",
    "capacity_test": "{current: 280, rest: 60}",
    "cells": f"{{weak: [{{module: {WEAK[0]}, cell: {WEAK[1]}, capacity_factor: 0.9}}]}}",
    "bms": "{soh_offset: 5, capacity_ah: 280}",  # it reports its capacity (capacity_full), its count's basis
}


def truth_doc(path: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not written yet, or being replaced
        return None
    return doc


def phases(path: Path) -> list[object]:
    return [e.get("phase") for e in (truth_doc(path) or {"events": []})["events"]]


def cutoff_reached(path: Path) -> dict[str, Any] | None:
    doc = truth_doc(path)
    if doc is None or not any(e.get("phase") == "rest_empty" for e in doc["events"]):
        return None
    return doc


def cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *map(str, argv)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_assess_measures_what_the_daemon_recorded_and_packages_it(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [RACK], interval=INTERVAL, rack=SIM)
    model = truth.model_path(tmp_path / f"truth-{RACK}.jsonl")
    log = tmp_path / "gateway.log"
    t0 = time.monotonic()
    with log.open("wb") as out:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(cfg)], stdout=out, stderr=out,
                                env=env)  # fmt: skip
    try:
        doc = wait_for(lambda: cutoff_reached(model), 120, "the truth document's first cutoff", proc, log=log,
                       detail=lambda: phases(model))  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]
    ran_s = time.monotonic() - t0

    report, page, pkg = tmp_path / "out.json", tmp_path / "out.html", tmp_path / "pkgdir"
    done = cli("assess", "-c", cfg, "--json", report, "--html", page, "--package", pkg)
    assert done.returncode == 0, done.stderr
    params = doc["parameters"]
    [r] = json.loads(report.read_text(encoding="utf-8"))["racks"]
    assert r["rack"] == RACK
    # the limits are the capacity test's (hard ones), with the margin a 6 s record needs by default
    lim = r["settings"]["limits"]
    assert (lim["full_v"], lim["empty_v"]) == (params["test"]["charge_voltage"], params["test"]["cutoff_voltage"])
    assert "capacity_test" in lim["source"]
    assert lim["margin_v"] == pytest.approx(margin_for(INTERVAL * SPEED))
    assert lim["margin_source"] == "5 mV per second of the 6 s period (hard limits)"

    cap = r["capacity"]
    assert cap["independent_ah"] == pytest.approx(params["usable_capacity_ah"], rel=0.03), (cap, ran_s)
    assert cap["bms_soh_pct"] == pytest.approx(params["bms"]["soh_reported_pct"], abs=0.05)
    assert cap["verdict"] == "soh_overstated"
    codes = [f["code"] for f in r["findings"]]
    assert "soh_overstated" in codes
    weak = [(f["module"], f["cell"]) for f in r["findings"] if f["code"] == "weak_cell"]
    assert weak == [WEAK]
    assert [(c["module"], c["cell"]) for c in r["cells"]["weak"]] == [WEAK]
    # the SoC drift counts with the capacity the BMS reports
    assert r["soc_drift"]["capacity_source"] == "bms_capacity"
    assert r["soc_drift"]["capacity_ah"] == pytest.approx(params["bms"]["soc_basis_ah"])
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    checked = cli("verify-package", pkg, "--integrity-only")
    assert checked.returncode == 0, checked.stdout + checked.stderr
