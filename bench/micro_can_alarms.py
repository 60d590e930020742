"""Micro benchmarks of the CAN decode path, the udp_multicast receive path and the alarm engine.

CPU time (`time.process_time()`), one process; run with `python -m bench.micro_can_alarms`. "before" is
the reference path of the same code (plans compiled with fast=False, BusReader with fast_udp=False),
"after" the fast path; the alarm engine has one path, both alarm rows run it. Reference figures of the
code before the fast paths (commit 5411a43, same bench, 2-core VM): decode 147,000 frames/s, udp 120,000
frames/s, alarms 1,210,000 samples/s; "after" at commit 2a1524d (fast decoders, recvmsg drain): decode
237,000 frames/s, udp 185,000 frames/s; with the generated samplers and the pattern-matched recv drain:
decode 480,000 frames/s, udp 347,000 frames/s. `bench/micro_can.py` measures the whole CAN source.
  decode   frames/s through `RackPlan.decode` (the example rack DBC and profile; frames encoded with cantools)
  udp      frames/s read by `BusReader` from a udp_multicast bus pinned to loopback (sender in a thread)
  alarms   samples/s through `AlarmEngine.process` with the lithium-ion defaults, 100 racks x 1,000 cells
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path
from typing import Any

import can

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.ruleset import defaults_path, load_rule_file
from gateway.config.yamlpos import load_yaml, to_plain
from gateway.model import Batch, Quality, Sample
from gateway.sources.can.config import CanProfile
from gateway.sources.can.dbcload import load_dbc
from gateway.sources.can.plan import compile_rack
from gateway.sources.can.reader import BusReader, open_bus

ROOT = Path(__file__).resolve().parent.parent
DBC = ROOT / "dbc" / "can-example-rack.dbc"
PROFILE = ROOT / "config" / "profiles" / "can-example-rack.yaml"


def example_frames(db: Any, seed: int = 1) -> list[tuple[int, bool, bytes]]:
    """Every message of the DBC, every mux value, with random in-range signal values."""
    rnd = random.Random(seed)
    out: list[tuple[int, bool, bytes]] = []
    for msg in db.messages:
        muxes: list[int | None] = [None]
        mux_sig = next((s for s in msg.signals if s.is_multiplexer), None)
        if mux_sig is not None:
            muxes = sorted({i for s in msg.signals for i in (s.multiplexer_ids or [])})
        for mux in muxes:
            values: dict[str, Any] = {}
            for s in msg.signals:
                if s.is_multiplexer:
                    values[s.name] = mux
                    continue
                if s.multiplexer_ids and mux not in s.multiplexer_ids:
                    continue
                if s.choices:
                    values[s.name] = int(rnd.choice(list(s.choices)))
                    continue
                lo = s.minimum if s.minimum is not None else s.offset
                hi = s.maximum if s.maximum is not None else s.offset + s.scale * (2 ** min(s.length, 16) - 1)
                raw = rnd.uniform(lo, hi)
                values[s.name] = round((raw - s.offset) / s.scale) * s.scale + s.offset
            try:
                data = msg.encode(values, strict=False)
            except Exception:
                continue
            out.append((msg.frame_id, bool(msg.is_extended_frame), bytes(data)))
    return out


def bench_decode(seconds: float, fast: bool = True) -> float:
    loaded = load_dbc(DBC)
    profile = CanProfile.model_validate(to_plain(load_yaml(PROFILE)))
    plan = compile_rack(profile, loaded.db, rack="r1", fast=fast)
    assert not isinstance(plan, list), plan
    frames = [(plan.key(fid, ext), fid, ext, data) for fid, ext, data in example_frames(loaded.db)]
    frames = [f for f in frames if f[0] in plan.messages]
    n = 0
    decode = plan.decode
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        for key, fid, ext, data in frames:
            decode(key, fid, ext, data, 1)
        n += len(frames)
    return n / (time.process_time() - t0)


def bench_udp(count: int, chunk: int = 2_000, fast: bool = True) -> float:
    """Chunks of datagrams are sent first (not timed), then drained by the reader (CPU timed)."""
    from can.interfaces.udp_multicast.utils import pack_message

    from bench.canbus import GROUP, drain_rate

    port = random.randrange(40_000, 60_000)
    msg = can.Message(arbitration_id=0x110, data=bytes(range(8)), is_extended_id=False, timestamp=1.0)
    datagram = pack_message(msg)

    async def main() -> float:
        bus = open_bus("udp_multicast", GROUP, port=port)
        reader = BusReader(bus, fast_udp=fast)
        reader.start()
        try:
            return await drain_rate(reader, port, [datagram], count, chunk)
        finally:
            reader.stop()
            bus.shutdown()

    return asyncio.run(main())


def alarm_batches(racks: int, cells: int, rounds: int, fault: bool = False) -> list[list[Batch]]:
    rnd = random.Random(3)
    out = []
    for k in range(rounds):
        ts = (k + 1) * 1_000_000_000
        batches = []
        for r in range(racks):
            rack = f"rack{r:03d}"
            samples = []
            for c in range(cells):
                v = 3.30 + rnd.random() * 0.05
                if fault and r % 7 == 0 and c == 5 and 3 <= k <= 20:
                    v = 3.70 if k < 12 else 2.40
                samples.append(Sample(ts, "cell_voltage", v, "V", Quality.GOOD, rack, c // 12, c % 12))
            for c in range(cells // 4):
                t = 25.0 + c % 3 + rnd.random() * 0.1
                if fault and r % 5 == 0 and c == 2 and 6 <= k <= 30:
                    t = 25.0 + (k - 5) * 2.0
                samples.append(Sample(ts, "cell_temperature", t, "°C", Quality.GOOD, rack, c // 6, c % 6))
            samples.append(Sample(ts, "soc", 55.0, "%", Quality.GOOD, rack))
            samples.append(Sample(ts, "rack_current", -12.0, "A", Quality.GOOD, rack))
            samples.append(Sample(ts, "bms_state", "run", "", Quality.GOOD, rack))
            batches.append(Batch.of_samples(rack, samples, device=rack))
        out.append(batches)
    return out


def make_engine(fast: bool = True) -> AlarmEngine:
    """The engine with the default rules (it has one path: `fast` is kept for the decode rows' signature)."""
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    return AlarmEngine(rules, {f"rack{r:03d}": f"rack{r:03d}" for r in range(100)})


def bench_alarms(seconds: float, fast: bool = True) -> float:
    rounds = alarm_batches(100, 1000, 3)
    per_round = sum(b.n for b in rounds[0])
    engine = make_engine(fast)
    n = 0
    t0 = time.process_time()
    k = 0
    while time.process_time() - t0 < seconds:
        engine.process(rounds[k % len(rounds)])
        k += 1
        n += per_round
    return n / (time.process_time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--udp-frames", type=int, default=50_000)
    args = ap.parse_args()
    rows = [
        ("decode", "frames/s", lambda fast: bench_decode(args.seconds, fast)),
        ("udp", "frames/s (receive, CPU)", lambda fast: bench_udp(args.udp_frames, fast=fast)),
        ("alarms", "samples/s", lambda fast: bench_alarms(args.seconds, fast)),
    ]
    for name, unit, run in rows:
        before, after = run(False), run(True)
        print(f"{name:7} before {before:12,.0f}  after {after:12,.0f}  x{after / before:5.2f}  {unit}")


if __name__ == "__main__":
    main()
