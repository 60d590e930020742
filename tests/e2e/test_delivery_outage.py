"""InfluxDB (VictoriaMetrics) down while about 1,000 samples/s flow through `bms-gateway run`: after it returns,
every sample the simulator produced is there, compared sample for sample with the simulator's ground truth.
BMS_TEST_OUTAGE_SECONDS=120 runs the full two-minute outage (the suite runs a short one)."""

from __future__ import annotations

import asyncio
import contextlib
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
from tests.servers import VictoriaMetrics
from tests.support.site import PLAIN_RACK, write_config
from tests.support.store import opened
from tests.support.waits import await_for

OUTAGE = float(os.environ.get("BMS_TEST_OUTAGE_SECONDS", "5"))
Point = tuple[str, frozenset[tuple[str, str]], int]


def config(tmp_path: Path, vm: VictoriaMetrics) -> Path:
    # 2 racks x 10 cycles/s x 49 samples = 980 samples/s
    sink = f"sinks:\n  influx: {{type: influxdb, url: '{vm.url}', token: t, backoff_initial: 0.2, backoff_max: 2.0}}\n"
    rack = {**PLAIN_RACK, "seed": None}
    return write_config(tmp_path, ["rack-0", "rack-1"], interval=0.1, grace=20, rack=rack, extra=sink)


def truth(tmp_path: Path) -> dict[Point, float | None]:
    """Every produced sample as VictoriaMetrics names it, with its value (text is stored as 0)."""
    out: dict[Point, float | None] = {}
    newest: dict[tuple[str, frozenset[tuple[str, str]]], int] = {}
    for i in range(2):
        for line in (tmp_path / f"truth-rack-{i}.jsonl").read_text().splitlines():
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
    with opened(db, check=False) as ob:
        return ob.acked("influx"), ob.last_seq()


def connected(tmp_path: Path) -> bool:
    return "sink connected" in (tmp_path / "gateway.log").read_text()


async def until(pred: Callable[[], bool], proc: Process, tmp_path: Path, what: str, timeout: float = 60.0) -> None:
    """Wait for `pred` (run in a thread: it reads the store) while the gateway keeps running."""

    async def holds() -> bool:
        assert proc.returncode is None, (tmp_path / "gateway.log").read_text()[-2000:]
        return await asyncio.to_thread(pred)

    await await_for(holds, timeout, what, step=0.2)


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
        acked, last = await asyncio.to_thread(cursor, db)

        async def delivered() -> bool:
            nonlocal acked, last
            acked, last = await asyncio.to_thread(cursor, db)
            return acked >= last - 2

        # The backlog must be delivered within 60 s of the return.
        cursor_now = lambda: f"influx cursor {acked} of {last}"  # noqa: E731
        await await_for(delivered, 60, "the backlog delivered", step=0.2, detail=cursor_now)
        print(f"backlog delivered {time.monotonic() - back:.1f} s after the return")
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    expected = await asyncio.to_thread(truth, tmp_path)
    got: dict[Point, list[float]] = {}

    async def all_exported() -> bool:
        nonlocal got
        got = {}
        for s in await asyncio.to_thread(victoria.export, '{__name__=~"(rack|cell|module)_.*"}'):
            m = dict(s["metric"])  # type: ignore[call-overload]
            name = m.pop("__name__")
            labels = frozenset(m.items())
            for ts, v in zip(s["timestamps"], s["values"], strict=True):  # type: ignore[call-overload]
                got.setdefault((name, labels, int(ts)), []).append(float(v))
        return set(expected) <= set(got)

    # VictoriaMetrics makes new series searchable with a delay; what did not arrive is counted below.
    with contextlib.suppress(AssertionError):
        await await_for(all_exported, 60, "every sample in VictoriaMetrics", step=0.3)
    lost = [p for p in expected if p not in got]
    # VictoriaMetrics keeps about 12 significant digits (InfluxDB keeps the float64 exactly).
    wrong = [p for p, v in expected.items() if p in got and v is not None and not isclose(got[p][0], v, rel_tol=1e-9)]
    dups = sum(len(v) - 1 for v in got.values())
    print(f"outage {OUTAGE}s: produced {len(expected)} samples, lost: {len(lost)}, wrong: {len(wrong)}, dup: {dups}")
    for p in wrong[:5]:
        print("wrong:", p, expected[p], got[p])
    assert not lost and not wrong
    assert set(got) == set(expected)  # nothing else
