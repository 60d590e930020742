"""Micro benchmark of alarm evaluation on the Modbus shape: CPU µs per sample, before and after in one run.

    python -m bench.micro_alarms [--racks 100] [--polls 30] [--group 5] [--repeat 3]

100 racks x 1,000 samples per poll (800 `cell_voltage` in modules of 20 cells, 200 `cell_temperature`
in modules of 5 sensors, read in 8 blocks of 125 registers: the bench's Modbus site), with noise (a
few mV, a tenth of a degree, a slow drift), through `AlarmService`'s step (`AlarmEngine.process`)
with the shipped lithium-ion defaults, every rule enabled (the bench's site uses them unchanged).
Batches are handed over `--group` at a time, as group commits carry them (50 ms at 100 racks/s: 5).

Two scenarios: `quiet` (every cell healthy, the usual case) and `alarms` (see `modbus_polls`).
Batches are columnar with one interned key table per rack (as a Modbus source builds them).

CPU time (`time.process_time()`), best of `--repeat` passes over the same polls (a noisy shared
machine makes the best the fairest figure); µs per point and per batch.

Figures (2-core VM shared with other work, 20 polls, best of 2), µs per point, quiet / alarms: before
the columnar engine (three paths) reference 1.32 / 1.43, plain 0.73 / 0.83, layout 0.25 / 0.35; the
one columnar path: see docs/performance.md.
"""

from __future__ import annotations

import argparse
import random
import time

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.ruleset import defaults_path, load_rule_file
from gateway.model import Batch, Keys, Quality, Sample

NS = 1_000_000_000
VOLTAGES, TEMPERATURES, BLOCK = 800, 200, 125


def rack_keys(rack: str) -> Keys:
    keys = [("cell_voltage", "V", rack, i // 20 + 1, i % 20 + 1) for i in range(VOLTAGES)]
    keys += [("cell_temperature", "°C", rack, i // 5 + 1, i % 5 + 1) for i in range(TEMPERATURES)]
    return Keys.of(keys)


def modbus_polls(racks: int, polls: int, seed: int = 7, alarms: bool = False) -> list[list[Batch]]:
    """`polls` rounds of one batch per rack (its key table interned); block reads 2 ms apart, racks 10 ms apart.

    `alarms`: a rack at the end of a charge: 10 cells of every rack above the 3.55 V warning limit,
    and in every 10th rack a sensor heating at 1 °C/s (rate, then temperature alarms)."""
    rnd = random.Random(seed)
    names = [f"rack{r:03d}" for r in range(racks)]
    tables = [rack_keys(n) for n in names]
    volts = [[3.30 + rnd.random() * 0.05 for _ in range(VOLTAGES)] for _ in names]
    temps = [[25.0 + rnd.random() * 4 for _ in range(TEMPERATURES)] for _ in names]
    out = []
    for k in range(polls):
        batches = []
        for r, rack in enumerate(names):
            t0 = (k + 1) * NS + r * 10_000_000
            keys = tables[r]
            samples: list[Sample] = []
            times = [t0 + n * 2_000_000 for n in range(-(-len(keys) // BLOCK))]  # one int per block read
            for i, key in enumerate(keys.rows):
                ts = times[i // BLOCK]
                if i < VOLTAGES:
                    volts[r][i] = min(3.45, max(3.20, volts[r][i] + rnd.choice((-0.001, 0.0, 0.001))))
                    v = round(volts[r][i] + (0.15 if alarms and i % 80 == 7 else 0.0), 3)
                else:
                    j = i - VOLTAGES
                    heating = alarms and r % 10 == 0 and j == 0
                    temps[r][j] += 0.002 + rnd.choice((-0.1, 0.0, 0.1)) + (1.0 if heating else 0.0)
                    v = round(temps[r][j], 1)
                samples.append(Sample(ts, key.quantity, v, key.unit, Quality.GOOD, rack, key.module, key.cell))
            b = Batch.of_samples(rack, samples, device=rack, created=t0)
            assert b.keys is keys
            batches.append(b)
        out.append(batches)
    return out


def make_engine(racks: int) -> AlarmEngine:
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    return AlarmEngine(rules, {f"rack{r:03d}": f"rack{r:03d}" for r in range(racks)})


def cpu_per_point(polls: list[list[Batch]], racks: int, group: int) -> tuple[float, float]:
    """CPU µs per point and per batch for one pass over the polls with a fresh engine."""
    engine = make_engine(racks)
    n = batches = 0
    t0 = time.process_time()
    for poll in polls:
        for i in range(0, len(poll), group):
            part = poll[i : i + group]
            engine.process(part)
            n += sum(b.n for b in part)
            batches += len(part)
    spent = (time.process_time() - t0) * 1e6
    return spent / n, spent / batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--racks", type=int, default=100)
    ap.add_argument("--polls", type=int, default=30)
    ap.add_argument("--group", type=int, default=5, help="batches per process() call (one group commit)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for scenario, alarms in (("quiet", False), ("alarms", True)):
        polls = modbus_polls(args.racks, args.polls, alarms=alarms)
        point, batch = min(cpu_per_point(polls, args.racks, args.group) for _ in range(args.repeat))
        print(f"{scenario:6} {point:7.3f} µs/point  {batch:8.1f} µs/batch  {1 / point:6.2f} M points/s")


if __name__ == "__main__":
    main()
