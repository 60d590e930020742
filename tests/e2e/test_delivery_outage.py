"""InfluxDB (VictoriaMetrics) down while about 1,000 samples/s flow through `bms-gateway run`: after it returns,
every sample the simulator produced is there, compared sample for sample with the simulator's ground truth.
BMS_TEST_OUTAGE_SECONDS=120 runs the full two-minute outage (the suite runs a short one)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from asyncio.subprocess import Process
from collections.abc import Callable
from math import isclose
from pathlib import Path

from gateway.catalog import level_of
from gateway.outbox import Outbox
from tests.servers import VictoriaMetrics

OUTAGE = float(os.environ.get("BMS_TEST_OUTAGE_SECONDS", "5"))
Point = tuple[str, frozenset[tuple[str, str]], int]


def config(tmp_path: Path, vm: VictoriaMetrics) -> Path:
    lines = ["site: {name: t}", "sources:"]
    for i in range(2):  # 2 racks x 10 cycles/s x 49 samples = 980 samples/s
        lines += [
            "  - type: simulated",
            f"    name: rack-{i}",
            "    interval: 0.1",
            "    modules: 2",
            "    cells_per_module: 8",
            f"    truth_file: {tmp_path / f'truth-{i}.jsonl'}",
        ]
    lines += [
        "sinks:",
        f"  influx: {{type: influxdb, url: '{vm.url}', token: t, backoff_initial: 0.2, backoff_max: 2.0}}",
        f"store: {{path: {tmp_path / 'store.db'}}}",
        "runtime: {grace_period: 20}",
        "http: {enabled: false}",
    ]
    p = tmp_path / "gateway.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def truth(tmp_path: Path) -> dict[Point, float | None]:
    """Every produced sample as VictoriaMetrics names it, with its value (text is stored as 0)."""
    out: dict[Point, float | None] = {}
    newest: dict[tuple[str, frozenset[tuple[str, str]]], int] = {}
    for i in range(2):
        for line in (tmp_path / f"truth-{i}.jsonl").read_text().splitlines():
            ts, q, value, _unit, quality, rack, module, cell, _dts = json.loads(line)
            labels = {"site": "t", "rack": rack, "quality": quality, "source": f"rack-{i}"}
            if module is not None:
                labels["module"] = str(module)
            if cell is not None:
                labels["cell"] = str(cell)
            name = f"{level_of(q, module, cell)}_{q}"
            series = (name, frozenset(labels.items()))
            # Two readings of a series within one millisecond (the write precision): the sink writes
            # the later one a millisecond on rather than overwrite the first (see the clock guard).
            ms = max(ts // 1_000_000, newest.get(series, -1) + 1)
            newest[series] = ms
            out[(*series, ms)] = float(value) if isinstance(value, int | float) else None
    return out


def cursor(db: Path) -> tuple[int, int]:
    ob = Outbox(db, check=False)
    try:
        return ob.acked("influx"), ob.last_seq()
    finally:
        ob.close()


def connected(tmp_path: Path) -> bool:
    return "sink connected" in (tmp_path / "gateway.log").read_text()


async def until(pred: Callable[[], bool], proc: Process, tmp_path: Path, what: str, timeout: float = 60.0) -> None:
    """Wait for `pred` (run in a thread: it reads the store) while the gateway keeps running."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(pred):
        assert proc.returncode is None, (tmp_path / "gateway.log").read_text()[-2000:]
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.2)


async def test_influx_outage_loses_nothing(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    cfg = config(tmp_path, victoria)
    db = tmp_path / "store.db"
    log = (tmp_path / "gateway.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "-c", str(cfg), stdout=log, stderr=log
    )
    try:
        # Running and delivering: the influx cursor moves (a fixed pause would be too short on a busy machine).
        # The store is read once the sink has said it is connected (its cursor exists then).
        await until(lambda: connected(tmp_path) and cursor(db)[0] > 0, proc, tmp_path, "first delivery")
        victoria.stop()
        down = time.monotonic()
        acked_at_stop = (await asyncio.to_thread(cursor, db))[0]
        # The outage lasts OUTAGE seconds and until the backlog holds rows committed since the stop.
        await until(
            lambda: time.monotonic() - down >= OUTAGE and cursor(db)[1] > acked_at_stop + 10, proc, tmp_path, "backlog"
        )
        acked, last = await asyncio.to_thread(cursor, db)
        assert acked < last  # the backlog is in the store
        victoria.start()
        back = time.monotonic()
        while True:  # the backlog must be delivered within 60 s of the return
            acked, last = await asyncio.to_thread(cursor, db)
            if acked >= last - 2:
                break
            assert time.monotonic() - back < 60, f"influx cursor {acked} of {last} after 60 s"
            await asyncio.sleep(0.2)
        print(f"backlog delivered {time.monotonic() - back:.1f} s after the return")
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    expected = await asyncio.to_thread(truth, tmp_path)
    got: dict[Point, list[float]] = {}
    deadline = time.monotonic() + 60  # VictoriaMetrics makes new series searchable with a delay
    while True:
        got = {}
        for s in await asyncio.to_thread(victoria.export, '{__name__=~"(rack|cell|module)_.*"}'):
            m = dict(s["metric"])  # type: ignore[call-overload]
            name = m.pop("__name__")
            labels = frozenset(m.items())
            for ts, v in zip(s["timestamps"], s["values"], strict=True):  # type: ignore[call-overload]
                got.setdefault((name, labels, int(ts)), []).append(float(v))
        if set(expected) <= set(got) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    lost = [p for p in expected if p not in got]
    # VictoriaMetrics keeps about 12 significant digits (InfluxDB keeps the float64 exactly).
    wrong = [p for p, v in expected.items() if p in got and v is not None and not isclose(got[p][0], v, rel_tol=1e-9)]
    dups = sum(len(v) - 1 for v in got.values())
    print(f"outage {OUTAGE}s: produced {len(expected)} samples, lost: {len(lost)}, wrong: {len(wrong)}, dup: {dups}")
    for p in wrong[:5]:
        print("wrong:", p, expected[p], got[p])
    assert not lost and not wrong
    assert set(got) == set(expected)  # nothing else
