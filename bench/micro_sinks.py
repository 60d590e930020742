"""Micro-benchmark of the sink hot paths: `python -m bench.micro_sinks [--racks 100] [--points 1000] [--rounds 5]`.

Builds one batch per rack (RackModel samples padded with synthetic module/cell samples to `--points`)
and prints CPU µs per sample (time.process_time) for: line protocol encoding incl. the clock guard,
MQTT telemetry payload building (with the retained state), and outbox append + read (two sinks
reading the same rows); first with the plain renderings the fast paths replaced ("before", kept
below), then with the code as it is ("after"), and the ratio.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway import outbox as outbox_module
from gateway.catalog import level_of
from gateway.lineproto import encode_device_status, field_value, precision_divisor, tag
from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Sample
from gateway.outbox import Outbox, Row
from gateway.sim.battery import RackModel, RackParams
from gateway.sinks.clock import ClockGuard
from gateway.sinks.influx import render_parts
from gateway.sinks.mqttpayloads import ALL_LEVELS, MqttState, Topics, clean, dumps, render_rows, state_key

# -- the plain renderings before the fast paths (same bytes, more work per sample) ------------------


def plain_lines(rows: list[Row], site: str, precision: str) -> list[tuple[int, str]]:
    div = precision_divisor(precision)
    out: list[tuple[int, str]] = []
    for row in rows:
        batch = row.batch
        groups: dict[tuple[int, str, int | None, int | None, str, str], list[str]] = {}
        src = tag(batch.source)
        for s in batch.samples:
            fv = field_value(s.value)
            if fv is None:
                continue
            key = (s.ts, s.rack, s.module, s.cell, s.quality, level_of(s.quantity, s.module, s.cell))
            groups.setdefault(key, []).append(f"{tag(s.quantity)}={fv}")
        for (ts, rack, module, cell, quality, level), fields in groups.items():
            tags = f"{level},site={tag(site)},rack={tag(str(rack))}"
            if module is not None:
                tags += f",module={module}"
            if cell is not None:
                tags += f",cell={cell}"
            tags += f",quality={quality},source={src}"
            out.append((row.seq, f"{tags} {','.join(fields)} {int(ts) // div}"))
        out += [(row.seq, line) for line in encode_device_status(batch, site, precision)]
    return out


_SPACE = re.compile(r"(?<!\\) ")


def plain_guard(items: list[tuple[int, str]], newest: dict[str, int]) -> list[tuple[int, str]]:
    """The clock guard re-parsing every line (forward times only: what the benchmark feeds it)."""
    out = []
    for seq, line in items:
        key, rest = _SPACE.split(line, maxsplit=1)
        fields, ts_s = rest.rsplit(" ", 1)
        ts = int(ts_s)
        top = newest.get(key)
        if top is None or ts > top:
            newest[key] = ts
            out.append((seq, line))
        else:
            newest[key] = ts + 1
            out.append((seq, f"{key} {fields} {ts + 1}"))
    return out


def plain_sample_doc(s: Sample) -> dict[str, object]:
    doc: dict[str, object] = {"ts": s.ts, "q": s.quantity, "v": clean(s.value), "u": s.unit, "ql": s.quality}
    if s.module is not None:
        doc["m"] = s.module
    if s.cell is not None:
        doc["c"] = s.cell
    if s.device_ts is not None:
        doc["dts"] = s.device_ts
    return doc


def plain_mqtt(rows: list[Row], topics: Topics, values: dict[str, dict[str, dict[str, object]]]) -> list[bytes]:
    out = []
    for row in rows:
        by_rack: dict[str, list[Sample]] = {}
        for s in row.batch.samples:
            if topics.levels is ALL_LEVELS or level_of(s.quantity, s.module, s.cell) in topics.levels:
                by_rack.setdefault(s.rack, []).append(s)
        for rack, samples in by_rack.items():
            doc = {"seq": row.seq, "site": topics.site, "rack": rack, "source": row.batch.source,
                   "samples": [plain_sample_doc(s) for s in samples]}  # fmt: skip
            out.append(dumps(doc))
            vals = values.setdefault(rack, {})
            for s in samples:
                vals[state_key(s)] = {"v": clean(s.value), "u": s.unit, "ql": s.quality, "ts": s.ts}
            out.append(dumps({"site": topics.site, "rack": rack, "values": vals}))
    return out


def plain_decode(payload: bytes) -> Batch:
    doc = json.loads(payload)
    st = doc["st"]
    status = None if st is None else DeviceStatus(st[0], DeviceState(st[1]), st[2], st[3])
    return Batch(source=doc["s"], device=doc["d"], kind=BatchKind(doc["k"]), created=doc["c"], status=status,
                 records=doc["r"], samples=[Sample(*row) for row in doc["x"]])  # fmt: skip


def make_batches(racks: int, points: int, ts: int) -> list[Batch]:
    model = RackModel(RackParams())
    out = []
    for r in range(racks):
        rack = f"rack{r + 1:03d}"
        samples = model.samples(ts, rack)[:points]
        i = 0
        while len(samples) < points:
            m, c = divmod(i, 16)
            samples.append(Sample(ts, "cell_voltage", 3.2 + (i % 100) / 1000, "V", "good", rack, m + 1, c + 1))
            i += 1
        out.append(Batch(f"modbus:{rack}", samples, device=rack, created=ts))
    return out


def measure(fn: Callable[[int], None], rounds: int, n: int) -> float:
    """Best-of-rounds CPU µs per sample."""
    best = float("inf")
    for i in range(rounds):
        t0 = time.process_time()
        fn(i)
        best = min(best, time.process_time() - t0)
    return best / n * 1e6


def run(rounds: list[list[Batch]], before: bool) -> dict[str, float]:
    n = sum(len(b) for b in rounds[0])
    rowsets = [[Row(j + 1, b.created, b) for j, b in enumerate(bs)] for bs in rounds]
    guard = ClockGuard("bench")
    newest: dict[str, int] = {}

    def influx(i: int) -> None:
        if before:
            plain_guard(plain_lines(rowsets[i], "site-1", "ns"), newest)
            return
        _items, state = guard.apply_parts(render_parts(rowsets[i], "site-1", "ns"))
        guard.commit(state)

    topics = Topics("bms", "site-1")
    mstate = MqttState()
    values: dict[str, dict[str, dict[str, object]]] = {}

    def mqtt(i: int) -> None:
        if before:
            plain_mqtt(rowsets[i], topics, values)
        else:
            render_rows(rowsets[i], topics, mstate)

    decode = outbox_module.decode
    with tempfile.TemporaryDirectory() as tmp:
        box = Outbox(Path(tmp) / "outbox.db", consumers=["influx", "mqtt"])
        if before:
            box.decoded_max_samples = 0  # every read decodes its rows
            outbox_module.decode = plain_decode

        def outbox(i: int) -> None:
            after = box.last_seq()
            box.append(rounds[i])
            pos = {"influx": after, "mqtt": after}
            more = True
            while more:  # the sinks' runners take turns, a batch of 5000 samples each
                more = False
                for sink in pos:
                    rows = box.read(pos[sink], max_samples=5000)
                    if rows:
                        pos[sink] = rows[-1].seq
                        more = True

        try:
            results = {
                "lineproto+clock": measure(influx, len(rounds), n),
                "mqtt telemetry": measure(mqtt, len(rounds), n),
                "outbox append+2 reads": measure(outbox, len(rounds), n),
            }
        finally:
            outbox_module.decode = decode
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
    before = run(rounds, before=True)
    after = run(rounds, before=False)
    print(f"{n} samples per round ({args.racks} racks x {args.points}), best of {args.rounds}, CPU µs/sample:")
    print(f"  {'':24s} {'before':>8s} {'after':>8s} {'ratio':>7s}")
    for name in after:
        print(f"  {name:24s} {before[name]:8.2f} {after[name]:8.2f} {before[name] / after[name]:6.1f}x")
    return {name: (before[name], after[name]) for name in after}


if __name__ == "__main__":
    main()
