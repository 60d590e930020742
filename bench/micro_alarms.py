"""Micro benchmark of alarm evaluation on the Modbus shape: CPU µs per sample, before and after in one run.

    python -m bench.micro_alarms [--racks 100] [--polls 30] [--group 5] [--repeat 3]

100 racks x 1,000 samples per poll (800 `cell_voltage` in modules of 20 cells, 200 `cell_temperature`
in modules of 5 sensors, read in 8 blocks of 125 registers: the bench's Modbus site), with noise (a
few mV, a tenth of a degree, a slow drift), through `AlarmService`'s step (`AlarmEngine.process`)
with the shipped lithium-ion defaults, every rule enabled (the bench's site uses them unchanged).
Batches are handed over `--group` at a time, as group commits carry them (50 ms at 100 racks/s: 5).

  reference  `AlarmEngine.fast = False`: the per-sample reference loop
  plain      the engine's path for batches without a layout (CAN windows, the simulator): runs of a
             quantity, GOOD-sample calls; the path every Modbus batch took before layouts
  layout     batches with `Batch.layout` set: work prepared once per layout

Two scenarios: `quiet` (every cell healthy, the usual case) and `alarms` (see `modbus_polls`).

CPU time (`time.process_time()`), best of `--repeat` passes over the same polls (a noisy shared
machine makes the best the fairest figure); the ratios are what to read.

Figures (2-core VM shared with other work, 20 polls, best of 3), µs per sample, quiet / alarms:
the engine before the layout path (commit aff7777, which ignores layouts): plain 0.60 / 0.63,
reference 0.90 / 0.97; with it: layout 0.16 / 0.25, plain 0.45 / 0.58, reference 0.79 / 0.89.
"""

from __future__ import annotations

import argparse
import random
import time

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.ruleset import defaults_path, load_rule_file
from gateway.model import Batch, Layout, LayoutKey, Quality, Sample

NS = 1_000_000_000
VOLTAGES, TEMPERATURES, BLOCK = 800, 200, 125


def rack_layout(rack: str) -> Layout:
    keys: list[LayoutKey] = [("cell_voltage", "V", rack, i // 20 + 1, i % 20 + 1) for i in range(VOLTAGES)]
    keys += [("cell_temperature", "°C", rack, i // 5 + 1, i % 5 + 1) for i in range(TEMPERATURES)]
    n = len(keys)
    return Layout(keys, [(a, min(a + BLOCK, n)) for a in range(0, n, BLOCK)])


def modbus_polls(racks: int, polls: int, seed: int = 7, alarms: bool = False) -> list[list[Batch]]:
    """`polls` rounds of one batch per rack (with its layout); block reads 2 ms apart, racks 10 ms apart.

    `alarms`: a rack at the end of a charge: 10 cells of every rack above the 3.55 V warning limit,
    and in every 10th rack a sensor heating at 1 °C/s (rate, then temperature alarms)."""
    rnd = random.Random(seed)
    names = [f"rack{r:03d}" for r in range(racks)]
    layouts = [rack_layout(n) for n in names]
    volts = [[3.30 + rnd.random() * 0.05 for _ in range(VOLTAGES)] for _ in names]
    temps = [[25.0 + rnd.random() * 4 for _ in range(TEMPERATURES)] for _ in names]
    out = []
    for k in range(polls):
        batches = []
        for r, rack in enumerate(names):
            t0 = (k + 1) * NS + r * 10_000_000
            lay = layouts[r]
            samples: list[Sample] = []
            times = [t0 + n * 2_000_000 for n in range(len(lay.segments))]  # one int per block read, as decoded
            for i, key in enumerate(lay.keys):
                ts = times[i // BLOCK]
                if i < VOLTAGES:
                    volts[r][i] = min(3.45, max(3.20, volts[r][i] + rnd.choice((-0.001, 0.0, 0.001))))
                    v = round(volts[r][i] + (0.15 if alarms and i % 80 == 7 else 0.0), 3)
                else:
                    j = i - VOLTAGES
                    heating = alarms and r % 10 == 0 and j == 0
                    temps[r][j] += 0.002 + rnd.choice((-0.1, 0.0, 0.1)) + (1.0 if heating else 0.0)
                    v = round(temps[r][j], 1)
                samples.append(Sample(ts, key[0], v, key[1], Quality.GOOD, rack, key[3], key[4]))
            batches.append(Batch(rack, samples, device=rack, created=t0, layout=lay))
        out.append(batches)
    return out


def without_layout(polls: list[list[Batch]]) -> list[list[Batch]]:
    return [[Batch(b.source, b.samples, device=b.device, created=b.created) for b in p] for p in polls]


def make_engine(racks: int, mode: str) -> AlarmEngine:
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    engine = AlarmEngine(rules, {f"rack{r:03d}": f"rack{r:03d}" for r in range(racks)})
    engine.fast = mode != "reference"
    return engine


def cpu_per_sample(polls: list[list[Batch]], racks: int, mode: str, group: int) -> float:
    """CPU µs per sample for one pass over the polls with a fresh engine."""
    engine = make_engine(racks, mode)
    n = 0
    t0 = time.process_time()
    for batches in polls:
        for i in range(0, len(batches), group):
            part = batches[i : i + group]
            engine.process(part)
            n += sum(len(b.samples) for b in part)
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--racks", type=int, default=100)
    ap.add_argument("--polls", type=int, default=30)
    ap.add_argument("--group", type=int, default=5, help="batches per process() call (one group commit)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for scenario, alarms in (("quiet", False), ("alarms", True)):
        laid = modbus_polls(args.racks, args.polls, alarms=alarms)
        plain = without_layout(laid)
        runs = {"reference": plain, "plain": plain, "layout": laid}
        best = {
            mode: min(cpu_per_sample(polls, args.racks, mode, args.group) for _ in range(args.repeat))
            for mode, polls in runs.items()
        }
        base = best["plain"]
        for mode, us in best.items():
            print(f"{scenario:6} {mode:10} {us:7.3f} µs/sample  {1 / us:6.2f} M samples/s  x{base / us:5.2f} vs plain")


if __name__ == "__main__":
    main()
