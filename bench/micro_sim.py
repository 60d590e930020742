"""Micro-benchmark of the simulated rack: `python -m bench.micro_sim [--hours 24] [--cells 240] [--profile P]`.

One rack of `--cells` cells (12 a module) on the simulated clock at 1 s a sample and 1 s a step, with
a spread, a weak and a high-resistance cell, a BMS SoH offset, a rack voltage bias and a stuck cell
voltage: the batches the source would emit, none kept. Printed: wall time (time.perf_counter), CPU
µs per sample interval (model step + reading + batch), peak RSS of the process (ru_maxrss).
"""

from __future__ import annotations

import argparse
import resource
import time

from gateway.sources.sim.config import SimulatedSourceConfig
from gateway.sources.sim.feed import RackFeed


def config(cells: int, profile: str) -> SimulatedSourceConfig:
    return SimulatedSourceConfig.model_validate(
        {
            "name": "bench",
            "modules": cells // 12,
            "cells_per_module": 12,
            "clock": "simulated",
            "current_profile": profile,
            "cells": {
                "capacity_sd": 0.01,
                "weak": [{"module": 2, "cell": 5, "capacity_factor": 0.9}],
                "high_resistance": [{"module": 3, "cell": 7, "resistance_factor": 3.0}],
            },
            "bms": {"soh_offset": 5.0, "soc_drift_per_day": 1.0},
            "pack_voltage_bias": 0.5,
            "faults": [{"kind": "stuck_voltage", "at": 3600, "module": 4, "cell": 2}],
        }
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.micro_sim", description=__doc__)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--cells", type=int, default=240)
    ap.add_argument("--profile", choices=["sine", "capacity_test"], default="capacity_test")
    a = ap.parse_args(argv)
    feed = RackFeed(config(a.cells, a.profile))
    t0, c0 = time.perf_counter(), time.process_time()
    samples = steps = 0
    for out in feed.run(a.hours * 3600):
        steps += 1
        samples += out.batch.n if out.batch is not None else 0
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"simulated rack, {a.cells} cells, {a.profile}, {a.hours:g} h at 1 s: {steps:,} steps, {samples:,} samples")
    per_step = cpu / steps * 1e6
    print(f"  wall {wall:.1f} s, CPU {per_step:.0f} µs a step (model + reading + batch), peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
