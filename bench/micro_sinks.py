"""Micro-benchmark of the sink hot paths: `python -m bench.micro_sinks [--racks 100] [--points 1000] [--rounds 5]`.

Builds one batch per rack in the shape of the 100-rack Modbus bench (800 cell voltages, 20 per module,
and 200 temperatures, 5 per module, read in blocks of 125 registers, each block at its own time) and
prints CPU µs per sample (time.process_time) for: InfluxDB line protocol incl. the clock guard, the
request body and its gzip compression; MQTT telemetry payloads with the retained state; outbox append +
read (two sinks reading the same rows). The rows are written in turns of 5,000 samples, as the runners
do. Columns: "before", the plain renderings the fast paths replaced (kept below; InfluxDB bodies
gzip-compressed at level 9 as influxdb-client does); "no layout", the code as it is for batches without
a `Layout` (CAN windows, decoded store rows); "layout", the same batches with their layout; the ratio
before / layout.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.catalog import level_of
from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Layout, Sample
from gateway.sinks import layoutcheck
from gateway.sinks.clock import ClockGuard
from gateway.sinks.influx.lineproto import encode_device_status, field_value, precision_divisor, tag
from gateway.sinks.influx.sink import chunks_body, gzip_body, render_chunks
from gateway.sinks.mqtt.payloads import ALL_LEVELS, MqttState, Topics, clean, dumps, render_rows, sample_doc, state_key
from gateway.store import outbox as outbox_module
from gateway.store.outbox import Outbox, Row

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


def plain_mqtt(rows: list[Row], topics: Topics, values: dict[str, dict[str, dict[str, object]]]) -> list[bytes]:
    out = []
    for row in rows:
        by_rack: dict[str, list[Sample]] = {}
        for s in row.batch.samples:
            if topics.levels is ALL_LEVELS or level_of(s.quantity, s.module, s.cell) in topics.levels:
                by_rack.setdefault(s.rack, []).append(s)
        for rack, samples in by_rack.items():
            doc = {"seq": row.seq, "site": topics.site, "rack": rack, "source": row.batch.source,
                   "samples": [sample_doc(s) for s in samples]}  # fmt: skip
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


BLOCK = 125  # registers per Modbus read
VOLTAGES = 800  # of every 1,000 points; the rest are temperatures


def rack_samples(rack: str, ts: int, points: int) -> list[Sample]:
    out = []
    for i in range(points):
        t = ts + (i // BLOCK) * 1_370_000  # each block read a little later
        if i < VOLTAGES:
            m, c = divmod(i, 20)
            out.append(Sample(t, "cell_voltage", 3.2 + (i * 7 % 100) / 1000, "V", "good", rack, m + 1, c + 1))
        else:
            m, c = divmod(i - VOLTAGES, 5)
            out.append(Sample(t, "cell_temperature", 20.0 + (i % 13) / 10, "°C", "good", rack, m + 1, c + 1))
    return out


def make_layouts(racks: int, points: int) -> list[Layout]:
    out = []
    for r in range(racks):
        keys = [(s.quantity, s.unit, s.rack, s.module, s.cell) for s in rack_samples(f"rack{r + 1:03d}", 0, points)]
        out.append(Layout(keys, [(a, min(a + BLOCK, points)) for a in range(0, points, BLOCK)]))
    return out


def make_batches(layouts: list[Layout], points: int, ts: int) -> list[Batch]:
    return [
        Batch(
            f"modbus:rack{r + 1:03d}",
            rack_samples(f"rack{r + 1:03d}", ts, points),
            device=f"rack{r + 1:03d}",
            created=ts,
            layout=layout,
        )
        for r, layout in enumerate(layouts)
    ]


def without_layout(batches: list[Batch]) -> list[Batch]:
    return [Batch(b.source, b.samples, device=b.device, created=b.created) for b in batches]


def forget_checks() -> None:
    layoutcheck._recent.clear()
    layoutcheck._recent_samples[0] = 0


def measure(fn: Callable[[int], None], rounds: int, n: int) -> float:
    """Best-of-rounds CPU µs per sample."""
    best = float("inf")
    for i in range(rounds):
        t0 = time.process_time()
        fn(i)
        best = min(best, time.process_time() - t0)
    return best / n * 1e6


WRITE_SAMPLES = 5000  # the runners' default batch_max_samples


def writes(rows: list[Row]) -> list[list[Row]]:
    out: list[list[Row]] = [[]]
    n = 0
    for row in rows:
        if n + len(row.batch) > WRITE_SAMPLES and out[-1]:
            out.append([])
            n = 0
        out[-1].append(row)
        n += len(row.batch)
    return out


def run(rounds: list[list[Batch]], mode: str) -> dict[str, float]:
    """mode: "before" (the plain renderings), "no layout" or "layout"."""
    before = mode == "before"
    if mode == "no layout":
        rounds = [without_layout(bs) for bs in rounds]
    n = sum(len(b) for b in rounds[0])
    rowsets = [writes([Row(j + 1, b.created, b) for j, b in enumerate(bs)]) for bs in rounds]
    guard = ClockGuard("bench")
    newest_of: list[dict[str, int]] = [{}]
    bodies: list[list[str]] = [[] for _ in rounds]

    def influx(i: int) -> None:
        forget_checks()
        for rows in rowsets[i]:
            if before:
                state = dict(newest_of[0])  # the guard's state copied per write, kept when confirmed
                items = plain_guard(plain_lines(rows, "site-1", "ms"), state)
                newest_of[0] = state
                bodies[i].append("\n".join(line for _, line in items))
            else:
                chunks, pending = render_chunks(rows, "site-1", "ms", guard)
                if pending is not None:
                    guard.commit(pending)
                bodies[i].append(chunks_body(chunks))

    def body(i: int) -> None:
        for text in bodies[i]:
            if before:
                gzip.compress(text.encode())  # influxdb-client's enable_gzip: level 9
            else:
                gzip_body(text.encode())

    topics = Topics("bms", "site-1")
    mstate = MqttState()
    values: dict[str, dict[str, dict[str, object]]] = {}

    def mqtt(i: int) -> None:
        forget_checks()  # each sink pays the layout check (in the gateway the second one often reuses it)
        for rows in rowsets[i]:
            if before:
                plain_mqtt(rows, topics, values)
            else:
                render_rows(rows, topics, mstate)

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
                    rows = box.read(pos[sink], max_samples=WRITE_SAMPLES)
                    if rows:
                        pos[sink] = rows[-1].seq
                        more = True

        try:
            results = {
                "influx lines+clock": measure(influx, len(rounds), n),
                "influx body+gzip": measure(body, len(rounds), n),
                "mqtt telemetry+state": measure(mqtt, len(rounds), n),
                "outbox append+2 reads": measure(outbox, len(rounds), n),
            }
        finally:
            outbox_module.decode = decode
            box.close()
    results["total"] = sum(results.values())
    return results


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float, float]]:
    ap = argparse.ArgumentParser(prog="python -m bench.micro_sinks", description=__doc__)
    ap.add_argument("--racks", type=int, default=100)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    t0 = 1_760_000_000_000_000_000
    layouts = make_layouts(args.racks, args.points)
    rounds = [make_batches(layouts, args.points, t0 + i * 1_000_000_000) for i in range(args.rounds)]
    n = sum(len(b) for b in rounds[0])
    modes = ("before", "no layout", "layout")
    res = {mode: run(rounds, mode) for mode in modes}
    print(f"{n} samples per round ({args.racks} racks x {args.points}), best of {args.rounds}, CPU µs/sample:")
    print(f"  {'':24s} {'before':>9s} {'no layout':>9s} {'layout':>9s} {'ratio':>7s}")
    for name in res["layout"]:
        b, nl, la = (res[m][name] for m in modes)
        print(f"  {name:24s} {b:9.2f} {nl:9.2f} {la:9.2f} {b / la:6.1f}x")
    return {name: (res["before"][name], res["no layout"][name], res["layout"][name]) for name in res["layout"]}


if __name__ == "__main__":
    main()
