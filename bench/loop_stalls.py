"""Where the gateway's event loop stalls: `python -m bench.loop_stalls [seconds] [threshold_ms] [profile] [--can RATE]`.

Starts the Modbus scenario's peers (bench.modbus_bench: 100 racks, MQTT and InfluxDB sinks; with
`--can RATE` the CAN scenario's instead: bench.can_sender at RATE frames/s for the window), runs the
gateway in this process for `seconds` (default 40) with a watchdog thread, and prints what held the
loop longer than `threshold_ms` (default 20): every callback that ran that long (its task's name), the
stacks the watchdog sampled while it ran (every 2 ms, aggregated by the innermost gateway frames), and
the garbage collector's pauses. The loop's own lag (a 10 ms ticker's lateness) is printed as
percentiles. Measuring costs about a microsecond a callback; figures of CPU per point come from
`python -m bench modbus`, not from here. With `profile`, pyinstrument also records the measured
window (after the warm-up, so start-up work such as the sinks' plans is left out) and prints it;
with `memory`, tracemalloc records from the start and the largest holders at the end are printed.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bench import can_bench, modbus_bench
from bench.peers import Mosquitto, VictoriaMetrics, free_port
from bench.stats import percentile

SAMPLE_EVERY = 0.002  # seconds between the watchdog's looks at the loop
TICK = 0.010  # the lag ticker's period


class Stalls:
    """Callbacks longer than `threshold` and the stacks sampled while they ran."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.current: tuple[float, object] | None = None  # (start, handle) of the running callback
        self.slow: list[tuple[float, str]] = []
        self.stacks: collections.Counter[str] = collections.Counter()
        self.gc_pauses: list[float] = []
        self.lags: list[float] = []
        self._gc_t0 = 0.0
        self._stop = threading.Event()
        self.loop_thread = threading.get_ident()

    def install(self) -> None:
        run: Callable[[Any], None] = asyncio.events.Handle._run
        stalls = self

        def timed(handle: Any) -> None:
            t0 = time.perf_counter()
            stalls.current = (t0, handle)
            try:
                run(handle)
            finally:
                stalls.current = None
                took = time.perf_counter() - t0
                if took >= stalls.threshold:
                    stalls.slow.append((took, describe(handle)))

        asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]  # measuring every callback
        gc.callbacks.append(self._gc)
        threading.Thread(target=self._watch, name="stall-watch", daemon=True).start()

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        else:
            self.gc_pauses.append(time.perf_counter() - self._gc_t0)

    def _watch(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            cur = self.current
            if cur is None or time.perf_counter() - cur[0] < self.threshold:
                continue
            frame = sys._current_frames().get(self.loop_thread)
            if frame is not None:
                self.stacks[where(frame)] += 1

    async def ticker(self) -> None:
        nxt = time.monotonic() + TICK
        while True:
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
            now = time.monotonic()
            self.lags.append(now - nxt)
            nxt = max(now, nxt) + TICK

    def report(self) -> str:
        out = [
            f"loop lag (a {TICK * 1000:.0f} ms ticker's lateness, ms): "
            + ", ".join(f"p{p} {percentile(self.lags, p) * 1000:.1f}" for p in (50, 90, 99, 99.9))
            + f", max {max(self.lags, default=0) * 1000:.1f}"
        ]
        by_task: collections.defaultdict[str, list[float]] = collections.defaultdict(list)
        for took, name in self.slow:
            by_task[name].append(took)
        out.append(f"callbacks over {self.threshold * 1000:.0f} ms: {len(self.slow)}")
        for name, ts in sorted(by_task.items(), key=lambda kv: -sum(kv[1])):
            out.append(f"  {len(ts):5d} x  max {max(ts) * 1000:7.1f} ms  total {sum(ts):6.2f} s  {name}")
        big = [p for p in self.gc_pauses if p >= 0.005]
        worst = max(self.gc_pauses, default=0) * 1000
        out.append(f"gc: {len(self.gc_pauses)} collections, {len(big)} over 5 ms, max {worst:.1f} ms")
        out.append("stacks sampled during stalls (innermost gateway frames, count of 2 ms samples):")
        for stack, n in self.stacks.most_common(25):
            out.append(f"  {n:5d}  {stack}")
        return "\n".join(out)

    def stop(self) -> None:
        self._stop.set()


def describe(handle: Any) -> str:
    cb = getattr(handle, "_callback", None)
    task = getattr(cb, "__self__", None)
    if isinstance(task, asyncio.Task):
        return f"task {task.get_name()}"
    return repr(cb)[:100]


def where(frame: FrameType) -> str:
    """The innermost frames of the project (gateway/ first, else any), innermost last."""
    frames = traceback.extract_stack(frame)
    ours = [f for f in frames if "/gateway/" in f.filename]
    pick = (ours or frames)[-4:]
    inner = frames[-1]
    tail = f" [in {Path(inner.filename).name}:{inner.name}]" if frames and inner not in pick else ""
    return " > ".join(f"{Path(f.filename).stem}:{f.name}:{f.lineno}" for f in pick) + tail


def top_memory(lines: int = 40) -> str:
    """What the traced allocations alive now hold, by line, largest first (`memory` mode)."""
    import tracemalloc

    snap = tracemalloc.take_snapshot()
    stats = snap.statistics("lineno")
    total = sum(s.size for s in stats)
    out = [f"traced memory alive: {total / 1e6:.1f} MB in {sum(s.count for s in stats)} blocks"]
    for s in stats[:lines]:
        frame = s.traceback[0]
        out.append(
            f"  {s.size / 1e6:8.2f} MB {s.count:9d}  {frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
        )
    out.append("the largest holders by where they were made (4 frames, innermost last):")
    for s in snap.statistics("traceback")[:12]:
        where = " < ".join(f"{Path(f.filename).stem}:{f.lineno}" for f in reversed(s.traceback))
        out.append(f"  {s.size / 1e6:8.2f} MB {s.count:9d}  {where}")
    return "\n".join(out) + "\n"


def main() -> None:
    argv = sys.argv[1:]
    can_rate = 0
    if "--can" in argv:
        i = argv.index("--can")
        can_rate = int(argv[i + 1])
        del argv[i : i + 2]
    seconds = float(argv[0]) if len(argv) > 0 else 40.0
    threshold = float(argv[1]) / 1000 if len(argv) > 1 else 0.020
    mode = argv[2] if len(argv) > 2 else ""
    root = Path("/tmp/bms-bench/stalls")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    mosq = Mosquitto(root / "mosquitto").start()
    vm = VictoriaMetrics(root / "vm").start()
    servers: list[Any] = []
    try:
        send: Callable[[], None] | None = None
        if can_rate:
            port = free_port()
            cfg = can_bench.gateway_config(root / "gw", port, mosq.port, vm.url)

            def send() -> None:
                can_bench.send(root / "gw", port, can_rate, seconds)

        else:
            servers, ports = modbus_bench.start_servers(root)
            cfg = modbus_bench.site_config(root / "gw", ports, mosq.port, vm.url)
        stalls, profiled = run_gateway(cfg, seconds, threshold, mode, send)
        print(stalls.report())
        if profiled:
            out = root / f"{mode}.txt"
            out.write_text(profiled)
            print(f"== {mode} of the window ({out})\n" + profiled)
    finally:
        mosq.stop()
        vm.stop()
        modbus_bench.stop_all(servers)


def run_gateway(
    cfg: Path, seconds: float, threshold: float, mode: str, send: Callable[[], None] | None = None
) -> tuple[Stalls, str]:
    """The gateway in this process for `seconds` (after a 10 s warm-up), with the stalls recorded;
    `send` (the CAN sender, blocking for the window) runs in a thread meanwhile."""
    from gateway import app
    from gateway.config.settings import load_config
    from gateway.ops.logs import configure_logging

    loaded = load_config(cfg)
    configure_logging("warning", "json")
    stalls = Stalls(threshold)
    profiler = None
    if mode == "memory":
        import tracemalloc

        tracemalloc.start(4)
    if mode == "profile":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.002, async_mode="disabled")

    async def go() -> None:
        rt = app.build_runtime(loaded)
        rt.settle_gc = True
        task = asyncio.create_task(rt.run())
        await asyncio.sleep(10)  # warm-up: connections, first cycles, plans
        stalls.install()
        tick = asyncio.create_task(stalls.ticker())
        if profiler is not None:
            profiler.start()
        if send is not None:
            await asyncio.to_thread(send)
        else:
            await asyncio.sleep(seconds)
        if profiler is not None:
            profiler.stop()
        stalls.stop()
        if mode == "memory":
            memory.append(top_memory())
        tick.cancel()
        rt.request_stop("bench")
        await task

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    memory: list[str] = []
    asyncio.run(go())
    if profiler is None:
        return stalls, "".join(memory)
    from pyinstrument.renderers import ConsoleRenderer

    session = profiler.last_session
    assert session is not None, "the profiler recorded nothing"
    tree = ConsoleRenderer(unicode=False, color=False, show_all=False).render(session)
    flat = ConsoleRenderer(unicode=False, color=False, flat=True, flat_time="self").render(session)
    return stalls, tree + "\n" + "\n".join(flat.splitlines()[:60])


if __name__ == "__main__":
    main()
