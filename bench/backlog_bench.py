"""Backlog scenario: simulated racks at about 5,000 samples/s into the InfluxDB sink (VictoriaMetrics);
VictoriaMetrics is stopped for an outage, restarted, and the time the sink takes to catch up is
measured from the outbox's consumer cursor (`Outbox(path).consumers()`: pending samples).

Drain time = from the restart until the sink's pending samples are back under 2 s of production.
Ratio = outage / drain (target >= 10). Lost = numeric samples in the store minus values in
VictoriaMetrics (string fields are not stored by VictoriaMetrics, so they are not counted).
The naive baseline writes the same rate through influxdb-client's batching API through the same
outage; its loss is what it wrote minus what VictoriaMetrics holds.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

from bench.common import Gateway, Options, base_config, influx_sink, read_json, write_yaml
from bench.peers import VictoriaMetrics, vm_value_count
from bench.proc import python, spawn
from bench.stats import Row, Runs
from gateway.config.base import SinkBase
from gateway.store.codec import summary

RACKS, MODULES, CELLS_PER_MODULE, SENSORS_PER_MODULE = 20, 10, 20, 2  # 253 samples per rack and second


def site_config(work: Path, vm_url: str) -> Path:
    doc = base_config(work)
    doc["sources"] = [
        {
            "type": "simulated",
            "name": f"rack-{r + 1:02d}",
            "modules": MODULES,
            "cells_per_module": CELLS_PER_MODULE,
            "sensors_per_module": SENSORS_PER_MODULE,
            "seed": r + 1,
        }
        for r in range(RACKS)
    ]
    doc["sinks"] = {"influx": influx_sink(vm_url)}
    return write_yaml(work / "gateway.yaml", doc)


def pending(store: Path, sink: str = "influx") -> int:
    from gateway.store.outbox import Outbox

    ob = Outbox(store)
    try:
        for c in ob.consumers():
            if c.name == sink:
                return c.pending_samples
        return -1
    finally:
        ob.db.close()


def numeric_samples(store: Path) -> int:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    n = 0
    try:
        for (payload,) in db.execute("SELECT payload FROM batches WHERE kind='samples'"):
            n += summary(payload).numbers
    finally:
        db.close()
    return n


def run_gateway(
    work: Path, steady: float, outage: float, rate_window: float = 5.0, tail: float = 3.0
) -> dict[str, float]:
    shutil.rmtree(work, ignore_errors=True)
    vm = VictoriaMetrics(work / "vm").start()
    gw = Gateway(site_config(work, vm.url), work)
    try:
        gw.wait_ready(60)
        time.sleep(steady)
        rate = pending_rate(gw.store, rate_window)
        vm.stop()
        t_down = time.monotonic()
        time.sleep(outage)
        backlog = pending(gw.store)
        vm.start()
        t_up = time.monotonic()
        limit = 2 * rate
        drain = first = float("nan")
        peak = backlog
        while time.monotonic() - t_up < max(120.0, outage):
            left = pending(gw.store)
            peak = max(peak, left)
            if first != first and 0 <= left < peak - 2 * rate:  # the sink writes again (backoff over)
                first = time.monotonic() - t_up
            if 0 <= left <= limit:
                drain = time.monotonic() - t_up
                break
            time.sleep(0.25)
        real_outage = t_up - t_down
        time.sleep(tail)
    finally:
        gw.stop()
    left = pending(gw.store)
    stored = numeric_samples(gw.store)
    in_vm = settled_count(vm, '{__name__=~"(cell|module|rack)_.*"}', stored)
    vm.stop()
    return {
        "outage": real_outage,
        "backlog": backlog,
        "drain": drain,
        "first": first,
        "ratio": real_outage / drain if drain == drain and drain > 0 else float("nan"),
        "lost": max(0, stored - in_vm) + max(0, left),
        "rate": rate,
        "rss": gw.proc.last_hwm,
    }


def settled_count(vm: VictoriaMetrics, match: str, expect: int, limit: float = 20.0) -> int:
    """Values VictoriaMetrics holds, read again until they reach `expect` or stop changing.

    Right after a restart VictoriaMetrics can take a few seconds before every accepted write is
    searchable (seen: a count a few thousand short that was complete on the next read); a single
    read would report that as lost."""
    deadline = time.monotonic() + limit
    last = -1
    while True:
        n = vm_value_count(vm, match)
        if (
            n >= expect
            or time.monotonic() > deadline
            or (n == last and n > 0 and time.monotonic() > deadline - limit / 2)
        ):
            return n
        last = n
        time.sleep(0.5)


def pending_rate(store: Path, seconds: float) -> float:
    """Samples/s the store grows by (from the outbox's total), measured over `seconds`."""

    def total() -> int:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT coalesce(sum(n), 0) FROM batches WHERE kind='samples'").fetchone()[0])
        finally:
            db.close()

    a = total()
    time.sleep(seconds)
    return (total() - a) / seconds


def run_naive(work: Path, steady: float, outage: float) -> dict[str, float]:
    shutil.rmtree(work, ignore_errors=True)
    vm = VictoriaMetrics(work / "vm").start()
    out = work / "naive.json"
    naive = spawn(
        python(
            "-m",
            "bench.baselines.influx_naive",
            "--url",
            vm.url,
            "--racks",
            str(RACKS),
            "--fields",
            "253",
            "--out",
            str(out),
        ),
        "naive",
        work / "naive.log",
    )
    try:
        time.sleep(steady + 5)
        vm.stop()
        time.sleep(outage)
        vm.start()
        time.sleep(max(30.0, outage / 10))
    finally:
        naive.stop(120)
    got = read_json(out)
    in_vm = vm_value_count(vm, '{__name__=~"naive_.*"}')
    vm.stop()
    return {"lost": max(0, got["written"] - in_vm), "rss": naive.last_hwm, "written": got["written"]}


def run(opts: Options) -> list[Row]:
    outage = opts.duration or (60.0 if opts.quick else 600.0)
    steady = 10.0 if opts.quick else 30.0
    runs = opts.runs
    root = opts.work / "backlog"
    gw, nv = Runs(), Runs()
    for i in range(runs):
        gw.add(**run_gateway(root / f"gw{i}", steady, outage))
        v = {k: x[-1] for k, x in gw.values.items()}
        print(
            f"  backlog run {i + 1}: gateway {v['rate']:.0f} samples/s, outage {v['outage']:.0f} s, backlog "
            f"{v['backlog']:.0f}, drain {v['drain']:.1f} s, ratio {v['ratio']:.1f}, lost {v['lost']:.0f}",
            flush=True,
        )
        nv.add(**run_naive(root / f"naive{i}", steady, outage))
        print(
            f"  backlog run {i + 1}: naive wrote {nv.values['written'][-1]:.0f}, lost {nv.values['lost'][-1]:.0f}",
            flush=True,
        )
    ratio = gw.med("ratio")
    return [
        Row("backlog", "ingest samples/s", gw.med("rate"), float("nan"), "~5,000"),
        Row("backlog", "outage s", gw.med("outage"), gw.med("outage")),
        Row("backlog", "backlog samples at restart", gw.med("backlog"), float("nan"), better="lower"),
        Row("backlog", "drain s", gw.med("drain"), float("nan"), better="lower"),
        Row(
            "backlog",
            "first write after restart s",
            gw.med("first"),
            float("nan"),
            better="lower",
            note=f"retry backoff (backoff_max {SinkBase.model_fields['backoff_max'].default:g} s)",
        ),
        Row(
            "backlog", "drain speed samples/s", gw.med("backlog") / gw.med("drain"), float("nan"), note="net of ingest"
        ),
        Row("backlog", "outage / drain", ratio, float("nan"), ">=10x", met=ratio >= 10),
        Row("backlog", "lost samples", gw.med("lost"), nv.med("lost"), "0", "lower", met=gw.med("lost") == 0),
        Row("backlog", "peak RSS MB", gw.med("rss"), nv.med("rss"), better="lower"),
    ]
