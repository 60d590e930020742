"""Micro-benchmark of the sink hot paths: `python -m bench.micro_sinks [--racks 100] [--points 1000] [--rounds 5]`.

Builds one batch per rack in the shape of the 100-rack Modbus bench (800 cell voltages, 20 per module,
and 200 temperatures, 5 per module, read in blocks of 125 registers, each block at its own time) and
prints CPU µs per sample (time.process_time) for: InfluxDB line protocol incl. the clock guard, the
request body and its gzip compression; MQTT telemetry payloads with the retained state; outbox append +
read (two sinks reading the same rows). The rows are written in turns of 5,000 samples, as the runners
do. Columns: "kept rows", the sinks render the batches the outbox kept since they were appended (its
decoded-row cache); "decoded rows", every read decodes its rows from the store first.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.model import Batch, Sample
from gateway.sinks.clock import ClockGuard
from gateway.sinks.influx.lineproto import LineRenderer
from gateway.sinks.influx.sink import chunks_body, gzip_body, render_chunks
from gateway.sinks.mqtt.payloads import MqttState, Topics, render_rows
from gateway.store.outbox import Outbox, Row

BLOCK = 125  # registers per Modbus read
VOLTAGES = 800  # of every 1,000 points; the rest are temperatures


def rack_samples(rack: str, ts: int, points: int) -> list[Sample]:
    out = []
    for i in range(points):
        t = ts + (i // BLOCK) * 1_370_000  # each block read a little later
        if i < VOLTAGES:
            m, c = divmod(i, 20)
            out.append(Sample(t, "cell_voltage", 3.2 + (i * 7 % 100) / 1000, "V", "good", rack, m + 1, c + 1))
        else:
            m, c = divmod(i - VOLTAGES, 5)
            out.append(Sample(t, "cell_temperature", 20.0 + (i % 13) / 10, "°C", "good", rack, m + 1, c + 1))
    return out


def make_batches(racks: int, points: int, ts: int) -> list[Batch]:
    return [
        Batch.of_samples(
            f"modbus:rack{r + 1:03d}",
            rack_samples(f"rack{r + 1:03d}", ts, points),
            device=f"rack{r + 1:03d}",
            created=ts,
        )
        for r in range(racks)
    ]


def measure(fn: Callable[[int], None], rounds: int, n: int) -> float:
    """Best-of-rounds CPU µs per sample."""
    best = float("inf")
    for i in range(rounds):
        t0 = time.process_time()
        fn(i)
        best = min(best, time.process_time() - t0)
    return best / n * 1e6


WRITE_SAMPLES = 5000  # the runners' default batch_max_samples


def writes(rows: list[Row]) -> list[list[Row]]:
    out: list[list[Row]] = [[]]
    n = 0
    for row in rows:
        if n + len(row.batch) > WRITE_SAMPLES and out[-1]:
            out.append([])
            n = 0
        out[-1].append(row)
        n += len(row.batch)
    return out


def run(rounds: list[list[Batch]], mode: str = "kept rows") -> dict[str, float]:
    """mode: "kept rows" (the outbox's decoded-row cache on) or "decoded rows" (every read decodes)."""
    n = sum(len(b) for b in rounds[0])
    guard = ClockGuard("bench")
    renderer = LineRenderer("site-1", "ms")
    topics = Topics("bms", "site-1")
    mstate = MqttState()
    read: list[dict[str, list[list[Row]]]] = [{"influx": [], "mqtt": []} for _ in rounds]
    bodies: list[list[str]] = [[] for _ in rounds]

    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(Path(tmp) / "outbox.db", consumers=["influx", "mqtt"])
        if mode == "decoded rows":
            box.decoded_max_samples = 0

        def outbox(i: int) -> None:
            after = box.last_seq()
            box.append(rounds[i])
            pos = {"influx": after, "mqtt": after}
            more = True
            while more:  # the sinks' runners take turns, a batch of 5000 samples each
                more = False
                for sink in pos:
                    rows = box.read(pos[sink], max_samples=WRITE_SAMPLES)
                    if rows:
                        read[i][sink].append(rows)
                        pos[sink] = rows[-1].seq
                        more = True

        def influx(i: int) -> None:
            for rows in read[i]["influx"]:
                chunks, pending = render_chunks(rows, renderer, guard)
                if pending is not None:
                    guard.commit(pending)
                bodies[i].append(chunks_body(chunks))

        def body(i: int) -> None:
            for text in bodies[i]:
                gzip_body(text.encode())

        def mqtt(i: int) -> None:
            for rows in read[i]["mqtt"]:
                render_rows(rows, topics, mstate)

        try:
            results = {"outbox append+2 reads": measure(outbox, len(rounds), n)}
            results = {
                "influx lines+clock": measure(influx, len(rounds), n),
                "influx body+gzip": measure(body, len(rounds), n),
                "mqtt telemetry+state": measure(mqtt, len(rounds), n),
                **results,
            }
        finally:
            box.close()
    results["total"] = sum(results.values())
    return results


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    ap = argparse.ArgumentParser(prog="python -m bench.micro_sinks", description=__doc__)
    ap.add_argument("--racks", type=int, default=100)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    t0 = 1_760_000_000_000_000_000
    rounds = [make_batches(args.racks, args.points, t0 + i * 1_000_000_000) for i in range(args.rounds)]
    n = sum(len(b) for b in rounds[0])
    modes = ("kept rows", "decoded rows")
    res = {mode: run(rounds, mode) for mode in modes}
    print(f"{n} samples per round ({args.racks} racks x {args.points}), best of {args.rounds}, CPU µs/sample:")
    print(f"  {'':24s} {'kept rows':>12s} {'decoded rows':>12s}")
    for name in res["kept rows"]:
        print(f"  {name:24s} {res['kept rows'][name]:12.2f} {res['decoded rows'][name]:12.2f}")
    return {name: (res["kept rows"][name], res["decoded rows"][name]) for name in res["kept rows"]}


if __name__ == "__main__":
    main()
