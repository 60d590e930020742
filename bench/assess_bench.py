"""Assess scenario: time and peak RSS of `bms-gateway assess` over one rack of 240 cells, 24 h at 1 s.

The window is made once by the simulator (`gateway.sources.sim.feed.RackFeed`: the capacity-test
profile, a weak and a high-resistance cell, a stuck cell voltage, a rack voltage bias, a BMS SoH 5
points over) and appended to a store file (`Outbox.append`, 60 batches a transaction), cached under
the bench's work directory (`assess/`, named for the window's parameters) with the simulator's truth
document beside it. Each run is `python -m gateway assess --store FILE --json OUT` as a subprocess;
wall time from spawn to exit, CPU time (user + system) and peak RSS (`ru_maxrss`) of the child from
`os.wait4`. When the command is not there, the child runs the library path instead (readers ->
chunks -> estimators: `python -m bench.assess_bench --library FILE`). The capacity it found is
printed beside the truth's. `--quick`: 6 h instead of 24; `--duration S`: a window of S simulated seconds.

    .venv/bin/python -m bench assess [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Options
from bench.proc import ROOT, python
from bench.stats import Fig, Row

RACK = "bench-240"
START_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01 00:00 UTC
BATCHES_A_TX = 60
TARGET_WALL_S = 600.0  # "in minutes"
TARGET_RSS_MB = 1024.0
# The capacity test's limits (3.55 / 2.8 V) with a margin: a 1 s record shows a cell close to them, not at them.
LIMITS = ("--full-v", "3.5", "--empty-v", "2.85")

SIM: dict[str, Any] = {
    "name": RACK,
    "modules": 20,
    "cells_per_module": 12,
    "interval": 1.0,
    "speed": 1.0,
    "clock": "simulated",
    "current_profile": "capacity_test",
    "cells": {
        "capacity_sd": 0.01,
        "weak": [{"module": 7, "cell": 5, "capacity_factor": 0.9}],
        "high_resistance": [{"module": 12, "cell": 9, "resistance_factor": 3.0}],
    },
    "bms": {"soh_offset": 5.0, "capacity_ah": 280.0},
    "pack_voltage_bias": 0.8,
    "faults": [{"kind": "stuck_voltage", "at": 4 * 3600, "duration": 3 * 3600, "module": 15, "cell": 2}],
}


@dataclass(frozen=True, slots=True)
class Made:
    store: Path
    truth: Path
    samples: int
    made_s: float | None  # seconds it took to make, None when it came from the cache


@dataclass(frozen=True, slots=True)
class Child:
    wall_s: float
    cpu_s: float
    rss_mb: float
    rc: int


def window(work: Path, hours: float) -> Made:
    """The store of the simulated window (made once, then taken from the cache)."""
    from gateway.sources.sim import truth
    from gateway.sources.sim.config import SimulatedSourceConfig
    from gateway.sources.sim.feed import RackFeed
    from gateway.store.outbox import Outbox

    digest = hashlib.sha256(json.dumps([SIM, hours, START_NS], sort_keys=True).encode()).hexdigest()[:12]
    store = work / f"rack240-{hours:g}h-{digest}.db"
    doc = store.with_suffix(".model.json")
    if store.exists() and doc.exists():
        samples = json.loads(doc.read_text())["samples"]
        return Made(store, doc, samples, None)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = store.with_name(store.name + ".tmp")
    for old in tmp.parent.glob(tmp.name + "*"):
        old.unlink()
    feed = RackFeed(SimulatedSourceConfig.model_validate(SIM), start_ns=START_NS)
    params = truth.parameters(feed)
    events: list[dict[str, object]] = []
    box = Outbox(tmp, max_bytes=20_000_000_000, synchronous="off")
    samples = 0
    pending = []
    try:
        for out in feed.run(hours * 3600):
            events += out.events
            if out.batch is not None and out.batch.n:
                pending.append(out.batch)
                samples += out.batch.n
            if len(pending) >= BATCHES_A_TX:
                box.append(pending)
                pending = []
        box.append(pending)
    finally:
        box.close()
    os.replace(tmp, store)
    doc.write_text(json.dumps({**truth.document(params, events), "samples": samples}, indent=1))
    return Made(store, doc, samples, time.perf_counter() - t0)


def cli_available() -> bool:
    done = subprocess.run(python("-m", "gateway", "assess", "--help"), cwd=ROOT, capture_output=True)
    return done.returncode == 0


def measure(args: list[str], log: Path) -> Child:
    """Run one child to its end: wall time, and its CPU time and peak RSS from the kernel's rusage."""
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Child(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, proc.returncode)


def library(store: Path, nominal_ah: float) -> dict[str, Any]:
    """The library path in this process: store rows -> chunks -> every estimator of the rack."""
    from dataclasses import replace

    from gateway.assess.rackpass import RackSettings, Window, assess_window
    from gateway.assess.readers import batches_from_store
    from gateway.assess.setup import CHEMISTRY

    limits = replace(CHEMISTRY["lfp"], full_v=float(LIMITS[1]), taper_v=float(LIMITS[1]) - 0.05,
                     empty_v=float(LIMITS[3]), nominal_ah=nominal_ah)  # fmt: skip
    settings = RackSettings(1.0, "bench", limits, "bench", "bench")
    passes = assess_window(batches_from_store(store), lambda _: settings, Window())
    cap = passes[RACK].capacity.result()
    return {"racks": [{"rack": RACK, "capacity": {"independent_ah": cap.independent_ah, "verdict": cap.verdict}}]}


def found(out: Path) -> dict[str, Any]:
    """The rack's capacity in a report (JSON), or {} when there is none."""
    try:
        racks = json.loads(out.read_text())["racks"]
        return dict(next(r for r in racks if r["rack"] == RACK)["capacity"])
    except (OSError, ValueError, KeyError, StopIteration):
        return {}


def run(opts: Options) -> list[Row]:
    hours = opts.duration / 3600.0 if opts.duration else 6.0 if opts.quick else 24.0
    root = opts.work / "assess"
    w = window(root, hours)
    made = "from the cache" if w.made_s is None else f"made in {w.made_s:.0f} s"
    mb = w.store.stat().st_size / 1e6
    print(f"  window: 240 cells, {hours:g} h at 1 s, {w.samples:,} samples, store {mb:.0f} MB ({made})", flush=True)
    doc = json.loads(w.truth.read_text())["parameters"]
    nominal = str(doc["nominal_usable_capacity_ah"])
    out = root / "assess.json"
    if cli_available():
        how = "bms-gateway assess"
        args = python("-m", "gateway", "assess", "--store", str(w.store), "--json", str(out), "--nominal-ah",
                      nominal, *LIMITS)  # fmt: skip
    else:
        how = "library path (no assess command)"
        args = python("-m", "bench.assess_bench", "--library", str(w.store), "--nominal-ah", nominal, "--json",
                      str(out))  # fmt: skip
    runs: list[Child] = []
    for i in range(opts.runs):
        out.unlink(missing_ok=True)
        c = measure(args, root / f"run{i}.log")
        runs.append(c)
        print(f"  run {i + 1} ({how}): wall {c.wall_s:.1f} s, CPU {c.cpu_s:.1f} s, peak RSS {c.rss_mb:.0f} MB, "
              f"exit {c.rc}", flush=True)  # fmt: skip
    cap = found(out)
    usable = float(doc["usable_capacity_ah"])
    ah = cap.get("independent_ah")
    err = f"{100 * (ah / usable - 1):+.2f} %" if isinstance(ah, (int, float)) else "none found"
    shown = "none" if not isinstance(ah, (int, float)) else f"{ah:.1f}"
    note = f"{how}; capacity {shown} Ah vs truth {usable:.1f} ({err}), {cap.get('verdict')}"
    failed = [c.rc for c in runs if c.rc != 0]
    if failed:
        note += f"; exit {failed[0]} (see {root}/run*.log)"
    print(f"  {note}", flush=True)
    wall, cpu, rss = Fig(c.wall_s for c in runs), Fig(c.cpu_s for c in runs), Fig(c.rss_mb for c in runs)
    what = f"240 cells × {hours:g} h at 1 s"
    nan = math.nan
    in_time = wall < TARGET_WALL_S and not failed
    return [
        Row("assess", f"wall s, {what}", wall, nan, f"<{TARGET_WALL_S:g}", "", in_time, note),
        Row("assess", f"CPU s, {what}", cpu, nan, "", ""),
        Row("assess", f"peak RSS MB, {what}", rss, nan, f"<{TARGET_RSS_MB:g}", "", met=rss < TARGET_RSS_MB),
    ]


def main(argv: list[str] | None = None) -> int:
    """The child of the library path: assess a store, write the rack's capacity as JSON."""
    ap = argparse.ArgumentParser(prog="python -m bench.assess_bench", description=__doc__)
    ap.add_argument("--library", type=Path, required=True, help="store file to assess with the library")
    ap.add_argument("--nominal-ah", type=float, required=True)
    ap.add_argument("--json", type=Path, required=True)
    a = ap.parse_args(argv)
    a.json.write_text(json.dumps(library(a.library, a.nominal_ah)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
