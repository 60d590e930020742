"""How long a sink write holds the event loop: `python -m bench.micro_sink_loop [--samples 10000] [--writes 20]`.

The InfluxDB and MQTT sinks write rows of the 100-rack Modbus shape (`bench.micro_sinks`) to servers
that answer at once (no network: the InfluxDB request is a stub, the MQTT client's publish returns),
while a ticker task on the same loop (sleeping 1 ms at a time) notes the CPU time the loop's thread
spent between two of its wake-ups ("busy": the longest one step of the loop held it, the figure that
matters; a full garbage collection landing in a step shows here too) and how late it woke up (wall
time: on a loaded machine also the time the process did not run). Printed per sink: the longest busy
and late times (ms) and the CPU µs per sample of the writes, for
  - "chunked": the sink as it is (it lets the loop run after every 2,000 rendered samples);
  - "one go": the same with no yield (a whole write rendered at once);
  - "thread": the rendering run in a worker thread (`asyncio.to_thread`), the loop waiting for it.
The collector is set up as the gateway does (`gateway.runtime.gcpolicy.settle`) unless `--default-gc`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench.micro_sinks import make_batches
from gateway.runtime import gcpolicy
from gateway.sinks.base import Rejected
from gateway.sinks.config import InfluxSinkConfig, MqttSinkConfig
from gateway.sinks.influx import sink as influx
from gateway.sinks.influx.sink import InfluxSink, render_row
from gateway.sinks.mqtt import sink as mqtt
from gateway.sinks.mqtt.payloads import render_rows
from gateway.sinks.mqtt.sink import MqttSink
from gateway.store.outbox import Row


class StubWriteService:
    def post_write(self, **kwargs: Any) -> None:
        return None  # 204


class StubClient:
    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        return None


def influx_sink() -> InfluxSink:
    sink = InfluxSink("influx", InfluxSinkConfig(url="http://127.0.0.1:9", token="t"), "site-1")
    sink._service = StubWriteService()
    return sink


def mqtt_sink() -> MqttSink:
    sink = MqttSink("mqtt", MqttSinkConfig(host="127.0.0.1", tls=False), "site-1")
    sink._client = StubClient()  # type: ignore[assignment]
    return sink


async def influx_in_thread(sink: InfluxSink, rows: Sequence[Row]) -> list[Rejected]:
    """The InfluxDB write with its rendering in a worker thread."""
    guard = sink.guard
    pending = guard.begin() if guard is not None else None

    def render() -> list[influx.Chunk]:
        return [c for row in rows for c in render_row(row, sink.renderer, guard, pending)]

    chunks = await asyncio.to_thread(render)
    rejected = await asyncio.to_thread(sink._send, chunks)
    if guard is not None and pending is not None:
        guard.commit(pending)
    return rejected


async def mqtt_in_thread(sink: MqttSink, rows: Sequence[Row]) -> list[Rejected]:
    msgs = await asyncio.to_thread(render_rows, rows, sink.topics, sink.state, sink.cfg.retain_state)
    await sink._publish(msgs)
    return []


TICK = 0.001  # the ticker sleeps this long: mostly idle, like the gateway's other tasks


async def ticking(write: Callable[[], Awaitable[object]], writes: int) -> tuple[list[float], list[float], float]:
    """While the writes run one after the other (the first, which prepares the plans, not counted):
    how much later than asked (s) a ticker woke up, and the CPU time (s) the loop's thread spent
    between two of its wake-ups (on a loaded machine the wall time also holds time the process was
    not running; the CPU time is what the loop's callbacks took); CPU s of the counted writes."""
    late: list[float] = []
    busy: list[float] = []
    done = False
    await write()  # first sight of the key tables and series

    async def ticker() -> None:
        last, last_cpu = time.perf_counter(), time.thread_time()
        while not done:
            await asyncio.sleep(TICK)
            now, now_cpu = time.perf_counter(), time.thread_time()
            late.append(max(0.0, now - last - TICK))
            busy.append(now_cpu - last_cpu)
            last, last_cpu = now, now_cpu

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    cpu = 0.0
    for _ in range(writes):
        c0 = time.process_time()
        await write()
        cpu += time.process_time() - c0
    done = True
    await task
    return late, busy, cpu


def run(samples: int, writes: int, settle_gc: bool = True) -> dict[str, tuple[float, float, float]]:
    racks = samples // 1000
    rounds = [make_batches(racks, 1000, 1_760_000_000_000_000_000 + i * 1_000_000_000) for i in range(writes + 1)]
    rowsets = [[Row(i * racks + j + 1, b.created, b) for j, b in enumerate(bs)] for i, bs in enumerate(rounds)]
    if settle_gc:
        gcpolicy.settle()  # as the gateway does once it runs
    out: dict[str, tuple[float, float, float]] = {}
    for name, make in (("influx", influx_sink), ("mqtt", mqtt_sink)):
        for mode in ("chunked", "one go", "thread"):
            sink: Any = make()
            it = iter(rowsets)
            saved = (influx.YIELD_EVERY_SAMPLES, mqtt.YIELD_EVERY_SAMPLES)
            if mode == "one go":
                influx.YIELD_EVERY_SAMPLES = mqtt.YIELD_EVERY_SAMPLES = 1 << 62
            in_thread = (influx_in_thread if name == "influx" else mqtt_in_thread) if mode == "thread" else None

            def write(sink: Any = sink, in_thread: Any = in_thread, it: Any = it) -> Awaitable[object]:
                rows = next(it)
                return sink.write(rows) if in_thread is None else in_thread(sink, rows)  # type: ignore[no-any-return]

            try:
                late, busy, cpu = asyncio.run(ticking(write, writes))
            finally:
                influx.YIELD_EVERY_SAMPLES, mqtt.YIELD_EVERY_SAMPLES = saved
            out[f"{name} {mode}"] = (max(busy) * 1e3, max(late) * 1e3, cpu / (writes * samples) * 1e6)
    return out


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float, float]]:
    ap = argparse.ArgumentParser(prog="python -m bench.micro_sink_loop", description=__doc__)
    ap.add_argument("--samples", type=int, default=10_000, help="samples per write (1,000 per rack batch)")
    ap.add_argument("--writes", type=int, default=20)
    ap.add_argument("--default-gc", action="store_true", help="keep the default collector settings")
    args = ap.parse_args(argv)
    res = run(args.samples, args.writes, not args.default_gc)
    print(f"{args.writes} writes of {args.samples} samples:")
    print(f"  {'':16s} {'max busy ms':>11s} {'max late ms':>11s} {'CPU µs/sample':>14s}")
    for name, (busy, late, cpu) in res.items():
        print(f"  {name:16s} {busy:11.1f} {late:11.1f} {cpu:14.2f}")
    return res


if __name__ == "__main__":
    main()
