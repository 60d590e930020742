"""Micro-benchmark of the Modbus source: `python -m bench.micro_modbus [--units 10] [--cycles 20] [--rounds 5]`.

Starts one `bench.modbus_server` process (the bench's 1,000-register racks behind `--units` unit ids)
on loopback and polls it with one endpoint (every rack's 8 block reads of 125 registers, back to
back), measuring this process's CPU (time.process_time) per point for the whole source: pymodbus
request and response, register decoding into columns, cycle bookkeeping and key tables; the median
of the rounds. Then the decoding steps alone on one recorded block: `wire.unpack_registers` (with
pymodbus's own response decode next to it) and the block decoder's columns.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import sys
import tempfile
import timeit
from pathlib import Path

from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from bench.modbus_bench import PROFILE, REGISTERS, VOLTAGES
from bench.peers import free_port, wait_port
from bench.proc import python, spawn
from gateway.model import Batch
from gateway.sources.base import SourceContext
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.decode import BlockDecoder
from gateway.sources.modbus.device import DeviceRun
from gateway.sources.modbus.poller import ModbusEndpoint
from gateway.sources.modbus.profile import ModbusProfile
from gateway.sources.modbus.validate import load_modbus_profile
from gateway.sources.modbus.wire import unpack_registers


async def poll(port: int, profile: ModbusProfile, units: int, cycles: int) -> tuple[float, float, int]:
    """CPU seconds (user, system) and samples of `cycles` back-to-back cycles of every unit."""
    cfgs = [
        ModbusSourceConfig(
            name=f"rack-{u:02d}", profile="bench", host="127.0.0.1", port=port, unit_id=u, interval=0.001
        )
        for u in range(1, units + 1)
    ]
    endpoint = ModbusEndpoint("127.0.0.1", port, [DeviceRun(c, profile) for c in cfgs])
    samples = batches = 0
    t0 = os.times()
    done = asyncio.Event()

    async def emit(batch: Batch) -> None:
        nonlocal samples, batches, t0
        batches += 1
        if batches == units:  # the first cycle (connect, plan) is not measured
            t0 = os.times()
        elif batches > units:
            samples += batch.n
        if batches == units * (cycles + 1):
            done.set()

    task = asyncio.create_task(endpoint.run(SourceContext(emit, lambda: None, "bench")))
    await asyncio.wait_for(done.wait(), 120)
    t1 = os.times()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return t1.user - t0.user, t1.system - t0.system, samples


def decoding(profile: ModbusProfile) -> list[tuple[str, float]]:
    """(step, µs/point) of the decoding steps on one 125-register block."""
    device = DeviceRun(ModbusSourceConfig(name="r", profile="bench", host="127.0.0.1", port=1, unit_id=1), profile)
    block = next(b for bs in device.blocks.values() for b in bs if len(b.points) == 125)
    words = [3300 + (i * 13) % 50 for i in range(block.count)]
    frame = bytes([2 * len(words)]) + struct.pack(f">{len(words)}H", *words)

    def pymodbus_decode() -> None:
        ReadHoldingRegistersResponse().decode(frame)

    def per_point(fn: object, n: int = 2000) -> float:
        return min(timeit.repeat(fn, number=n, repeat=5)) / n / len(block.points) * 1e6  # type: ignore[arg-type]

    decoder = BlockDecoder(block)
    return [
        ("response registers (pymodbus)", per_point(pymodbus_decode)),
        ("response registers (wire)", per_point(lambda: unpack_registers(frame))),
        ("columns from registers", per_point(lambda: decoder(words))),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=10)
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="micro-modbus-"))
    (work / "bench.yaml").write_text(PROFILE)
    profile = load_modbus_profile(work / "bench.yaml")
    port = free_port()
    server = spawn(
        python(
            "-m",
            "bench.modbus_server",
            *("--port", str(port), "--units", str(a.units)),
            *("--registers", str(REGISTERS), "--voltages", str(VOLTAGES)),
        ),
        "modbus-server",
        work / "server.log",
    )
    try:
        wait_port(port, 30)
        us: dict[str, list[float]] = {}
        for _ in range(a.rounds):
            user, system, n = asyncio.run(poll(port, profile, a.units, a.cycles))
            us.setdefault("user", []).append(user / n * 1e6)
            us.setdefault("system", []).append(system / n * 1e6)
            us.setdefault("all", []).append((user + system) / n * 1e6)
        print(f"Modbus source, {a.units} racks × {REGISTERS} registers, {a.cycles} cycles × {a.rounds} rounds")
        print(f"{'step':<34}{'µs/pt':>10}")
        for kind, label in (
            ("all", "whole source, process CPU"),
            ("user", "  of which user"),
            ("system", "  of which system (sockets)"),
        ):
            print(f"{label:<34}{statistics.median(us[kind]):>10.3f}")
        for step, t in decoding(profile):
            print(f"{step:<34}{t:>10.3f}")
    finally:
        server.stop(5)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
