"""Micro benchmark of the CAN source alone: receive, decode and hand on the frames of the CAN scenario.

    python -m bench.micro_can [--seconds 2] [--udp-frames 60000]

CPU time (`time.process_time()`), one process, the bench DBC and profile of `bench.can_bench`:
  udp      frames/s `BusReader` drains from a udp_multicast bus pinned to loopback (datagrams of
           `bench.can_sender`, sent before the timed drain)
  decode   frames/s through `CanBusSource._decode` + `Rack.take` (the batches the source emits), in
           windows of 1,250 frames (25,000 frames/s × 50 ms)
  source   both: microseconds of CPU per frame, and the frame rate one core would sustain
  pipeline (--pipeline) one second of 25,000 frames/s as the source emits it (50 windows of 20 ms,
           no Layout) through the stages after it, CPU µs per sample (best of 3 rounds): the alarm
           engine (lithium-ion defaults) and `bench.micro_sinks`' InfluxDB, MQTT and outbox stages
  steady   (--steady S) the whole chain in one process for S CPU seconds, state kept as in the
           daemon (one outbox, alarm engine, clock guard, MQTT state): windows of 500 frames (20 ms
           at 25,000 frames/s), two per group commit, alarms, outbox append, each sink reads and
           renders (InfluxDB line protocol + gzip, MQTT telemetry), acks. Frames/s of one core and
           the share of the garbage collector, with Python's default collector settings and with
           `gc.freeze()` after the set-up plus thresholds (10000, 20, 100)

The frames reach `_decode` the way the reader hands them on (`Frame` tuples; `can.Message` on a tree
without them), so the script also runs against an older checkout for a before/after in the same
session: `git worktree add /tmp/before <commit> && cp bench/micro_can.py /tmp/before/bench/ &&
(cd /tmp/before && python -m bench.micro_can)`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import can
from can.interfaces.udp_multicast.utils import pack_message

from bench import can_bench, candata
from bench.canbus import GROUP, drain_rate
from gateway.config.yamlpos import load_yaml_text, to_plain
from gateway.model import Batch
from gateway.sources.can.config import CanProfile, CanSourceConfig
from gateway.sources.can.dbcload import load_dbc
from gateway.sources.can.plan import compile_rack
from gateway.sources.can.rack import Rack
from gateway.sources.can.reader import BusReader, open_bus
from gateway.sources.can.source import CanBusSource

WINDOW = 1250  # frames of one 50 ms batch window at 25,000 frames/s

try:  # the reader's frame type; older trees hand on can.Message
    from gateway.sources.can.reader import from_message

    def as_frame(m: can.Message) -> Any:
        return from_message(m)
except ImportError:  # pragma: no cover - an older checkout

    def as_frame(m: can.Message) -> Any:
        return m


def bench_messages() -> list[can.Message]:
    """What `bench.can_sender` sends, in its order: 50 cycles of the bench rack (81 frames each), a probe
    frame after every 1,250 frames (50 ms at 25,000 frames/s)."""
    db = candata.load()
    cycles = [f for v in range(50) for f in candata.cycle_frames(db, seed=v * 100 + 1)]
    frames = []
    for i, f in enumerate(cycles):
        frames.append(f)
        if i % 1250 == 1249:
            frames.append(candata.probe_frame(db, i // 1250))
    return [
        can.Message(arbitration_id=f.arbitration_id, data=f.data, is_extended_id=False, timestamp=1.0) for f in frames
    ]


def bench_source() -> CanBusSource:
    dbc_path = candata.DBC
    profile = CanProfile.model_validate(to_plain(load_yaml_text(can_bench.PROFILE, "bench_can.yaml")))
    cfg = CanSourceConfig(name="rack-01", profile="bench_can", interface="udp_multicast", channel=GROUP)
    plan = compile_rack(profile, load_dbc(dbc_path).db, rack="rack-01")
    assert not isinstance(plan, list), plan
    return CanBusSource("rack-01", [cfg], [Rack(cfg, plan, profile.comm_loss_timeout)])


def bench_decode(seconds: float) -> float:
    source = bench_source()
    frames = [as_frame(m) for m in bench_messages()]
    windows = [frames[i : i + WINDOW] for i in range(0, len(frames) - WINDOW + 1, WINDOW)]
    rack = source.racks[0]
    n = k = 0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        window = windows[k % len(windows)]
        source._decode(window)
        rack.take(1)
        n += len(window)
        k += 1
    return n / (time.process_time() - t0)


def bench_udp(count: int, chunk: int = 2_000) -> float:
    """Chunks of datagrams are sent first (not timed), then drained by the reader (CPU timed)."""
    port = random.randrange(40_000, 60_000)
    datagrams = [pack_message(m) for m in bench_messages()]

    async def main() -> float:
        bus = open_bus("udp_multicast", GROUP, port=port, filters=bench_source().filters())
        reader = BusReader(bus)
        reader.start()
        try:
            return await drain_rate(reader, port, datagrams, count, chunk)
        finally:
            reader.stop()
            bus.shutdown()

    return asyncio.run(main())


WINDOW_NS = 20_000_000  # a window of 500 frames lasts 20 ms at 25,000 frames/s


def can_rounds(rounds: int, windows: int = 50, frames: int = 500) -> list[list[Batch]]:
    """`rounds` lists of the batches the source emits for `windows` windows of `frames` frames each.

    The source stamps a window's samples when it decodes them, and here the windows are decoded far
    faster than they would arrive: their times are moved to 20 ms apart, as on a bus, so that a
    renderer sees each series move on in time (windows stamped in the same millisecond would take the
    clock guard's path for a series written twice at one time, which a site does not)."""
    source = bench_source()
    rack = source.racks[0]
    messages = [as_frame(m) for m in bench_messages()]
    out: list[list[Batch]] = []
    at = 0
    start = time.time_ns()
    for r in range(rounds):
        batches: list[Batch] = []
        for w in range(windows):
            window = [messages[(at + i) % len(messages)] for i in range(frames)]
            at += frames
            source._decode(window)
            made = rack.take(time.time_ns())
            when = start + (r * windows + w) * WINDOW_NS
            for b in made:
                if len(b.ts):
                    b.ts = b.ts - b.ts.min() + when
            batches += made
        out.append(batches)
    return out


def bench_pipeline() -> dict[str, float]:
    """CPU µs per sample of each stage after the source, for CAN windows (layout None)."""
    from bench import micro_sinks
    from gateway.alarms.engine import AlarmEngine
    from gateway.alarms.ruleset import defaults_path, load_rule_file

    rounds = can_rounds(3)
    n = sum(len(b) for b in rounds[0])
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    engine = AlarmEngine(rules, {"rack-01": "rack-01"})
    out = {"alarms": micro_sinks.measure(lambda i: engine.process(rounds[i]), len(rounds), n)}
    out.update(micro_sinks.run(rounds))
    return out


def bench_steady(seconds: float, tuned: bool) -> tuple[float, float, int]:
    """(frames/s of one core, share of CPU in the garbage collector, full collections) of the whole chain."""
    import gc
    import tempfile
    from pathlib import Path

    from gateway.alarms.engine import AlarmEngine
    from gateway.alarms.ruleset import defaults_path, load_rule_file
    from gateway.sinks.clock import ClockGuard
    from gateway.sinks.influx.lineproto import LineRenderer
    from gateway.sinks.influx.sink import chunks_body, gzip_body, render_chunks
    from gateway.sinks.mqtt.payloads import MqttState, Topics, render_rows
    from gateway.store.outbox import Outbox

    source = bench_source()
    rack = source.racks[0]
    messages = [as_frame(m) for m in bench_messages()]
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    engine = AlarmEngine(rules, {"rack-01": "rack-01"})
    guard, topics, mstate = ClockGuard("bench"), Topics("bms", "site-1"), MqttState()
    renderer = LineRenderer("site-1", "ms")
    gc_time = [0.0, 0.0]
    full = [0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_time[1] = time.process_time()
        else:
            gc_time[0] += time.process_time() - gc_time[1]
            full[0] += info["generation"] == 2

    thresholds = gc.get_threshold()
    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(Path(tmp) / "outbox.db", consumers=["influx", "mqtt"])
        pos = {"influx": 0, "mqtt": 0}
        frames = at = 0
        gc.collect()
        if tuned:
            gc.freeze()
            gc.set_threshold(10_000, 20, 100)
        gc.callbacks.append(on_gc)
        t0 = time.process_time()
        try:
            while time.process_time() - t0 < seconds:
                batches: list[Batch] = []
                for _ in range(2):
                    window = [messages[(at + i) % len(messages)] for i in range(500)]
                    at += 500
                    source._decode(window)
                    batches += rack.take(time.time_ns())
                    frames += len(window)
                box.append(batches + engine.process(batches))
                for sink in pos:
                    rows = box.read(pos[sink], max_samples=5000)
                    if sink == "influx":
                        chunks, pending = render_chunks(rows, renderer, guard)
                        gzip_body(chunks_body(chunks).encode())
                        if pending is not None:
                            guard.commit(pending)
                    else:
                        render_rows(rows, topics, mstate)
                    pos[sink] = rows[-1].seq
                    box.ack(sink, pos[sink])
            cpu = time.process_time() - t0
        finally:
            gc.callbacks.remove(on_gc)
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            box.close()
    return frames / cpu, gc_time[0] / cpu, full[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--udp-frames", type=int, default=60_000)
    ap.add_argument("--pipeline", action="store_true", help="also the stages after the source")
    ap.add_argument("--steady", type=float, default=0.0, help="CPU seconds of the whole chain (0: not run)")
    args = ap.parse_args()
    udp = bench_udp(args.udp_frames)
    decode = bench_decode(args.seconds)
    per_frame = 1e6 / udp + 1e6 / decode
    print(f"udp     {udp:12,.0f} frames/s (receive, CPU)")
    print(f"decode  {decode:12,.0f} frames/s (decode and batches)")
    print(f"source  {per_frame:12.2f} µs CPU per frame = {1e6 / per_frame:,.0f} frames/s on one core")
    if args.pipeline:
        per_sample = 3.21  # samples per frame of the bench rack cycle (260 in 81 frames)
        stages = bench_pipeline()
        total = per_frame + stages["alarms"] * per_sample + stages["total"] * per_sample
        print("after the source, CPU µs per sample (CAN windows, no layout):")
        for name, us in stages.items():
            print(f"  {name:24s} {us:7.2f}")
        print(f"whole gateway {total:6.1f} µs CPU per frame = {1e6 / total:,.0f} frames/s on one core")
    if args.steady:
        for tuned in (False, True):
            rate, share, full = bench_steady(args.steady, tuned)
            name = "freeze + (10000, 20, 100)" if tuned else "default collector"
            print(f"steady  {rate:12,.0f} frames/s on one core, GC {share:5.1%} ({full} full collections): {name}")


if __name__ == "__main__":
    main()
