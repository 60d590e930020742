"""Recordings of Modbus devices: raw register blocks with their timing, written as JSON lines.

Format (one JSON object per line, UTF-8):

- line 1, the header: `{"format": "bms-gateway-modbus-recording", "version": 1, "started": <ns>,
  "devices": [{"name": "rack-01", "unit_id": 1, "profile": "modbus-generic-rack"}, ...]}`
- then one line per block read, in the order they happened:
  `{"t": <seconds since start>, "ts": <ns>, "unit": 1, "cycle": 7, "table": "input", "start": 0,
  "count": 22, "words": [...]}` for an answer (`words` holds 0/1 for coils and discrete inputs),
  `..."code": 2}` for a Modbus exception, `..."mismatch": "wrong_function"}` for a reply that did not
  answer the read (`replies.KINDS`), `..."error": "timeout"}` when the device did not answer.

A replay serves the blocks back through the simulator: all blocks of one device cycle become visible
at once, at the time of the cycle's first block, so a poller never sees half of one cycle and half
of the next. Exceptions are served again for the recorded range; timeouts and replies that did not
answer keep the last values.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gateway.errors import ConfigError, Problem
from gateway.model import Batch, Quality
from gateway.sources.modbus.cycle import Cycle as Columns
from gateway.sources.modbus.cycle import keys_of
from gateway.sources.modbus.decode import BlockDecoder
from gateway.sources.modbus.device import DeviceRun, Outcome
from gateway.sources.modbus.plan import Block, Point
from gateway.tools.modbussim import ModbusSimulator, SimDevice

FORMAT = "bms-gateway-modbus-recording"


class Recorder:
    """A poller response hook that writes every block outcome to a recording file."""

    def __init__(self, out: IO[str], devices: list[DeviceRun], profiles: dict[str, str]) -> None:
        self.out = out
        self.t0 = time.monotonic()
        self.frames = 0
        header = {
            "format": FORMAT,
            "version": 1,
            "started": time.time_ns(),
            "devices": [{"name": d.name, "unit_id": d.unit_id, "profile": profiles.get(d.name, "")} for d in devices],
        }
        out.write(json.dumps(header) + "\n")

    def __call__(self, dev: DeviceRun, block: Block, outcome: Outcome) -> None:
        frame: dict[str, Any] = {
            "t": round(time.monotonic() - self.t0, 6),
            "ts": outcome.ts,
            "unit": dev.unit_id,
            "cycle": dev.cycles,
            "table": block.table,
            "start": block.start,
            "count": block.count,
        }
        if outcome.words is not None:
            frame["words"] = [int(w) for w in outcome.words]
        elif outcome.code is not None:
            frame["code"] = outcome.code
        elif outcome.mismatch is not None:
            frame["mismatch"] = outcome.mismatch
        else:
            frame["error"] = outcome.error or "timeout"
        self.out.write(json.dumps(frame, separators=(",", ":")) + "\n")
        self.frames += 1


@dataclass(frozen=True, slots=True)
class Cycle:
    t: float
    unit: int
    frames: tuple[dict[str, Any], ...]


def read_recording(path: Path) -> tuple[dict[str, Any], list[Cycle]]:
    """The header and the device cycles of a recording; errors name file:line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(Problem(str(path), 0, 0, f"cannot read recording: {exc.strerror}")) from exc
    frames: list[dict[str, Any]] = []
    header: dict[str, Any] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(Problem(str(path), n, exc.colno, f"not JSON: {exc.msg}")) from exc
        if n == 1:
            if doc.get("format") != FORMAT:
                raise ConfigError(Problem(str(path), 1, 1, f"not a Modbus recording (expected format {FORMAT!r})"))
            header = doc
            continue
        missing = {"t", "unit", "table", "start", "count"} - set(doc)
        if missing:
            raise ConfigError(Problem(str(path), n, 1, f"frame lacks {sorted(missing)}"))
        frames.append(doc)
    order: list[tuple[int, Any]] = []
    grouped: dict[tuple[int, Any], list[dict[str, Any]]] = {}
    for f in frames:
        key = (int(f["unit"]), f.get("cycle"))
        if key not in grouped:
            grouped[key] = []
            order.append(key)
        grouped[key].append(f)
    return header, [Cycle(float(grouped[k][0]["t"]), k[0], tuple(grouped[k])) for k in order]


def apply_cycle(dev: SimDevice, cycle: Cycle) -> None:
    """Make one recorded cycle visible in a simulated device's image."""
    for f in cycle.frames:
        table, start, count = f["table"], int(f["start"]), int(f["count"])
        if "words" in f:
            dev.image.write(table, start, f["words"])
            for a in range(start, start + count):
                dev.codes.pop((table, a), None)
        elif "code" in f:
            dev.codes[(table, start)] = int(f["code"])


def replay_simulator(header: dict[str, Any]) -> ModbusSimulator:
    units = sorted({int(d["unit_id"]) for d in header.get("devices", [])}) or [1]
    return ModbusSimulator([SimDevice(u, []) for u in units])


async def replay(sim: ModbusSimulator, cycles: list[Cycle], *, loop: bool = False, speed: float = 1.0) -> None:
    """Apply the recorded cycles to the simulator with their original timing (divided by `speed`)."""
    while True:
        t0 = time.monotonic()
        for c in cycles:
            delay = t0 + c.t / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            dev = sim.devices.get(c.unit)
            if dev is not None:
                apply_cycle(dev, c)
        if not loop or not cycles:
            return
        await asyncio.sleep(max(0.0, cycles[-1].t - cycles[0].t) / max(1, len(cycles)) / speed)


def decode_recording(points: list[Point], cycles: list[Cycle], rack: str = "") -> list[tuple[Cycle, Batch]]:
    """The batch of every recorded cycle, decoded offline with a profile's points (no network).

    Each recorded block is decoded with the points that lie inside it, so a recording made with any
    plan (split blocks, one request per point) decodes the same way."""
    by_table: dict[str, list[Point]] = {}
    for p in points:
        by_table.setdefault(p.table, []).append(p)
    out: list[tuple[Cycle, Batch]] = []
    for c in cycles:
        columns = Columns()
        for f in c.frames:
            table, start, count = str(f["table"]), int(f["start"]), int(f["count"])
            inside = tuple(p for p in by_table.get(table, []) if start <= p.address and p.end <= start + count)
            if not inside:
                continue
            decoder = BlockDecoder(Block(table, start, count, inside[0].interval, inside))
            ts = int(f.get("ts", 0))
            if "words" in f:
                columns.decoded(decoder, f["words"], ts)
            else:
                answered = "code" in f or "mismatch" in f
                columns.lost(decoder, ts, Quality.BAD if answered else Quality.COMM_LOSS)
        out.append((c, columns.batch(rack, keys_of(columns.decoders, rack), None, 0)))
    return out
