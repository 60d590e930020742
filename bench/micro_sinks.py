"""Micro-benchmark of the sink hot paths: `python -m bench.micro_sinks [--racks 100] [--points 1000] [--rounds 5]`.

Builds one batch per rack (RackModel samples padded with synthetic module/cell samples to `--points`)
and prints CPU µs per sample (time.process_time) for: line protocol encoding incl. the clock guard,
MQTT telemetry payload building, and outbox append + read (two sinks reading the same rows).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.model import Batch, Sample
from gateway.outbox import Outbox, Row
from gateway.sim.battery import RackModel, RackParams
from gateway.sinks.clock import ClockGuard
from gateway.sinks.influx import render_parts
from gateway.sinks.mqttpayloads import MqttState, Topics, render_rows


def make_batches(racks: int, points: int, ts: int) -> list[Batch]:
    model = RackModel(RackParams())
    out = []
    for r in range(racks):
        rack = f"rack{r + 1:03d}"
        samples = model.samples(ts, rack)[:points]
        i = 0
        while len(samples) < points:
            m, c = divmod(i, 16)
            samples.append(Sample(ts, "cell_voltage", 3.2 + (i % 100) / 1000, "V", "good", rack, m + 1, c + 1))
            i += 1
        out.append(Batch(f"modbus:{rack}", samples, device=rack, created=ts))
    return out


def measure(fn: Callable[[int], None], rounds: int, n: int) -> float:
    """Best-of-rounds CPU µs per sample."""
    best = float("inf")
    for i in range(rounds):
        t0 = time.process_time()
        fn(i)
        best = min(best, time.process_time() - t0)
    return best / n * 1e6


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m bench.micro_sinks", description=__doc__)
    ap.add_argument("--racks", type=int, default=100)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    t0 = 1_760_000_000_000_000_000
    rounds = [make_batches(args.racks, args.points, t0 + i * 1_000_000_000) for i in range(args.rounds)]
    n = sum(len(b) for b in rounds[0])
    rowsets = [[Row(j + 1, b.created, b) for j, b in enumerate(bs)] for bs in rounds]
    guard = ClockGuard("bench")

    def influx(i: int) -> None:
        _items, state = guard.apply_parts(render_parts(rowsets[i], "site-1", "ns"))
        guard.commit(state)

    topics = Topics("bms", "site-1")
    mstate = MqttState()

    def mqtt(i: int) -> None:
        render_rows(rowsets[i], topics, mstate)

    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(Path(tmp) / "outbox.db", consumers=["influx", "mqtt"])

        def outbox(i: int) -> None:
            after = box.last_seq()
            box.append(rounds[i])
            for _sink in ("influx", "mqtt"):
                pos = after
                while True:
                    rows = box.read(pos, max_samples=20_000)
                    if not rows:
                        break
                    pos = rows[-1].seq

        results = {
            "lineproto+clock": measure(influx, args.rounds, n),
            "mqtt telemetry": measure(mqtt, args.rounds, n),
            "outbox append+2 reads": measure(outbox, args.rounds, n),
        }
        box.close()
    print(f"{n} samples per round ({args.racks} racks x {args.points}), best of {args.rounds}, CPU µs/sample:")
    for name, us in results.items():
        print(f"  {name:24s} {us:7.2f}")
    print(f"  {'total':24s} {sum(results.values()):7.2f}")
    return results


if __name__ == "__main__":
    main()
