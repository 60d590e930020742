"""Micro-benchmark of report by exception: `python -m bench.micro_exception [--batches 400] [--repeats 1]`.

One rack of 240 cell voltages, 240 cell temperatures and 20 rack quantities, stored once a second as a
batch (`--repeats 4`: four polls in one batch, as a CAN window holds several frames of an id), each
value a seeded random walk of sensor noise (2 mV, 0.1 °C). A sink with deadbands of 5 mV and 0.5 °C
filters every batch (the rack quantities have none and pass). Prints the filter's time per batch, the
share of samples sent, the MQTT renderer's time for whole and cut batches, and the MQTT bytes with and
without the retained state topic.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gateway.model import Batch, Key, Keys
from gateway.sinks.config import ReportByException
from gateway.sinks.exceptionfilter import ExceptionFilter
from gateway.sinks.mqtt.payloads import MqttState, Topics, render_rows
from gateway.store.outbox import Row

CELLS = 240
RACK_QUANTITIES = 20


def key_table(repeats: int) -> Keys:
    one = [Key("cell_voltage", "V", "r1", c // 24 + 1, c % 24 + 1) for c in range(CELLS)]
    one += [Key("cell_temperature", "°C", "r1", c // 24 + 1, c % 24 + 1) for c in range(CELLS)]
    one += [Key(f"raw.q{i}", "", "r1") for i in range(RACK_QUANTITIES)]
    return Keys.of(one * repeats)


def batches(count: int, repeats: int) -> list[Batch]:
    rng = np.random.default_rng(1)
    keys = key_table(repeats)
    width = 2 * CELLS + RACK_QUANTITIES
    value = np.concatenate([np.full(CELLS, 3.3), np.full(CELLS, 25.0), np.zeros(RACK_QUANTITIES)])
    scale = np.concatenate([np.full(CELLS, 0.002), np.full(CELLS, 0.1), np.ones(RACK_QUANTITIES)])
    out = []
    for i in range(count):
        polls = []
        for _ in range(repeats):
            value = value + rng.normal(0.0, 1.0, width) * scale
            polls.append(value)
        ts = np.repeat((np.arange(repeats, dtype=np.int64) + i * repeats) * 1_000_000_000, width)
        out.append(Batch("r1", keys, ts, np.concatenate(polls), np.zeros(len(keys), dtype=np.uint8)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    data = batches(args.batches, args.repeats)
    cfg = ReportByException(heartbeat=300, deadbands={"cell_voltage": 0.005, "cell_temperature": 0.5})
    flt = ExceptionFilter("bench", cfg)
    rows = [[Row(i + 1, 0, b)] for i, b in enumerate(data)]
    t0 = time.perf_counter()
    cut = []
    for r in rows:
        cut.append(flt.apply(r))
        flt.commit()
    filter_s = time.perf_counter() - t0
    total = sum(b.n for b in data)
    sent = sum(r.batch.n for out in cut for r in out)
    n = len(data)
    print(f"{len(data[0].keys)} points a batch: filter {filter_s / n * 1e3:.2f} ms a batch "
          f"({total / filter_s / 1e6:.2f} M samples/s), sent {sent / total:.1%}")  # fmt: skip
    topics = Topics("bms", "s1")
    for label, given in (("whole", rows), ("cut", cut)):
        state = MqttState()
        t0 = time.perf_counter()
        for r in given:
            render_rows(r, topics, state)
        print(f"MQTT render, {label} batches: {(time.perf_counter() - t0) / n * 1e3:.2f} ms a batch")
    for retain in (False, True):
        size = {}
        for label, given in (("whole", rows), ("cut", cut)):
            state = MqttState()
            size[label] = sum(len(m.payload) for r in given for m in render_rows(r, topics, state, retain))
        print(f"MQTT bytes, retain_state {str(retain).lower()}: whole {size['whole'] / 1e6:.2f} MB, "
              f"cut {size['cut'] / 1e6:.2f} MB ({size['cut'] / size['whole']:.1%})")  # fmt: skip


if __name__ == "__main__":
    main()
