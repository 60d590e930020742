"""The sinks' fast paths (cached line-protocol prefixes, clock guard on split parts, MQTT telemetry from
fixed pieces) give exactly the bytes of a plain reference rendering."""

from __future__ import annotations

import json
import re

import pytest

from gateway.catalog import level_of
from gateway.model import Batch, DeviceState, DeviceStatus, Quality, Sample
from gateway.sinks.clock import ClockGuard
from gateway.sinks.influx.lineproto import encode_batch, encode_batches, field_value, precision_divisor, tag
from gateway.sinks.influx.sink import render, render_parts
from gateway.sinks.mqtt.payloads import ALL_LEVELS, MqttState, Topics, clean, render_rows, sample_doc, state_key
from gateway.store.outbox import Row

T = 1_700_000_000_123_456_789
NAN, INF = float("nan"), float("inf")


def varied_samples(ts: int, rack: str) -> list[Sample]:
    return [
        Sample(ts, "soc", 55.5, "%", Quality.GOOD, rack),
        Sample(ts, "rack_voltage", 800, "V", "good", rack),
        Sample(ts, "rack_current", -12.25, "A", "stale", rack),
        Sample(ts, "cell_voltage", 3.301, "V", "stale", rack, 2, 7),
        Sample(ts, "cell_voltage", NAN, "V", "bad", rack, 2, 8),
        Sample(ts, "cell_voltage", INF, "V", "out_of_range", rack, 2, 9),
        Sample(ts, "cell_voltage", -INF, "V", "missing", rack, 2, 10),
        Sample(ts, "cell_voltage", None, "V", "comm_loss", rack, 2, 11),
        Sample(ts, "cell_temperature", 25.0, "°C", "good", rack, 2, 7),
        Sample(ts, "module_voltage", 52.8, "V", "good", rack, 2),
        Sample(ts, "contactor_state", 'cl"o\\sed\nnow', "", "good", rack),
        Sample(ts, "cell_balancing", True, "", "good", rack, 2, 7),
        Sample(ts, "cell_balancing", False, "", "good", rack, 3, 1),
        Sample(ts, "raw.x y,z=w", 1.5, "", "bad", rack),
        Sample(ts, "raw.m", 7, "", "good", rack, 4),
        Sample(ts, "raw.c", 8, "", "good", rack, None, 5),
        Sample(ts, "raw.n", NAN, "", "missing", rack),
        Sample(ts, "raw.big", 10**20, "", "good", rack),
        Sample(ts, "raw.text", "tëxt ✓", "", "good", rack),
        Sample(ts, "soc", 56.0, "%", "good", rack, None, None, ts - 5),
        Sample(ts + 1, "soc", 57.0, "%", "good", rack),  # the next time unit (or the same one at s/ms)
        Sample(ts, "soh", 99.0, "%", "good", rack),  # joins the first line of the batch
    ]


def batches() -> list[Batch]:
    out = []
    for i, rack in enumerate(["r1", "rack 2,a=b", "r\\3", ""]):
        status = DeviceStatus(rack, DeviceState.DEGRADED, "some points fail", T) if i == 1 else None
        for source in ("modbus:r1", "can x,y=z"):
            out.append(Batch(source, varied_samples(T + i, rack), device=rack, status=status, created=T))
    out.append(Batch("s", varied_samples(T, "r1") + varied_samples(T, "r2"), device="r1", created=T))
    return out


# -- plain reference renderings (the code before the fast paths) -----------------------------------


def ref_encode_batches(bs: list[Batch], site: str, precision: str) -> list[str]:
    div = precision_divisor(precision)
    site_t = tag(site)
    lines: list[str] = []
    for batch in bs:
        groups: dict[tuple[int, str, int | None, int | None, str, str], list[str]] = {}
        src = tag(batch.source)
        for s in batch.samples:
            fv = field_value(s.value)
            if fv is None:
                continue
            key = (s.ts, s.rack, s.module, s.cell, s.quality, level_of(s.quantity, s.module, s.cell))
            groups.setdefault(key, []).append(f"{tag(s.quantity)}={fv}")
        for (ts, rack, module, cell, quality, level), fields in groups.items():
            tags = f"{level},site={site_t},rack={tag(str(rack))}"
            if module is not None:
                tags += f",module={module}"
            if cell is not None:
                tags += f",cell={cell}"
            tags += f",quality={quality},source={src}"
            lines.append(f"{tags} {','.join(fields)} {int(ts) // div}")
    return lines


_SPACE = re.compile(r"(?<!\\) ")


def ref_guard(items: list[tuple[int, str]], newest: dict[str, int], stepped: dict[str, int]) -> list[tuple[int, str]]:
    out = []
    steps = max(stepped.values(), default=0)
    new_step = 0
    for seq, line in items:
        key, rest = _SPACE.split(line, maxsplit=1)
        fields, ts_s = rest.rsplit(" ", 1)
        ts = int(ts_s)
        top = newest.get(key)
        if top is None or ts > top:
            newest[key] = ts
            stepped.pop(key, None)
            out.append((seq, line))
        elif ts == top and key not in stepped:
            newest[key] = ts + 1
            out.append((seq, f"{key} {fields} {ts + 1}"))
        else:
            if key not in stepped:
                if not new_step:
                    steps += 1
                    new_step = steps
                stepped[key] = new_step
            out.append((seq, f"{key},clock_step={stepped[key]} {fields} {ts}"))
    return out


def ref_dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str).encode()


def ref_telemetry(seq: int, b: Batch, topics: Topics) -> list[tuple[str, bytes]]:
    by_rack: dict[str, list[Sample]] = {}
    for s in b.samples:
        if topics.levels is ALL_LEVELS or level_of(s.quantity, s.module, s.cell) in topics.levels:
            by_rack.setdefault(s.rack, []).append(s)
    return [
        (
            topics.rack(rack, "telemetry"),
            ref_dumps(
                {
                    "seq": seq,
                    "site": topics.site,
                    "rack": rack,
                    "source": b.source,
                    "samples": [sample_doc(s) for s in ss],
                }
            ),
        )
        for rack, ss in by_rack.items()
    ]


# -- the fast paths against them -------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["ns", "us", "ms", "s"])
@pytest.mark.parametrize("site", ["site-1", "my site,x=y"])
def test_line_protocol_same_bytes(precision: str, site: str) -> None:
    bs = batches()
    for _ in range(2):  # first sight and cached prefixes
        assert encode_batches(bs, site, precision) == ref_encode_batches(bs, site, precision)
        for b in bs:
            assert encode_batch(b, site, precision)[: len(ref_encode_batches([b], site, precision))] == (
                ref_encode_batches([b], site, precision)
            )


@pytest.mark.parametrize("precision", ["ns", "s"])
def test_clock_guard_on_parts_same_lines_and_state(precision: str) -> None:
    guard = ClockGuard("t")
    newest: dict[str, int] = {}
    stepped: dict[str, int] = {}
    # forward, the same time again (moves one unit on), a step back (tagged), forward past the newest
    for shift in (0, 0, -(10**12), -(10**12), 10**13):
        bs = [Batch(b.source, [s._replace(ts=s.ts + shift) for s in b.samples], device=b.device,
                    status=b.status, created=b.created) for b in batches()]  # fmt: skip
        rows = [Row(i + 1, T, b) for i, b in enumerate(bs)]
        items = render(rows, "site", precision)
        parts = render_parts(rows, "site", precision)
        assert [(p[0], p[4] if p[4] is not None else f"{p[1]} {p[2]} {p[3]}") for p in parts] == items
        expected = ref_guard(items, newest, stepped)
        out, state = guard.apply_parts(parts)
        assert out == expected
        assert guard.apply(items)[0] == expected  # the line-based entry point agrees
        guard.commit(state)
        assert guard.newest == newest and guard.stepped == stepped


@pytest.mark.parametrize("levels", [ALL_LEVELS, frozenset({"rack"}), frozenset({"cell", "module"})])
def test_mqtt_telemetry_same_bytes(levels: frozenset[str]) -> None:
    topics = Topics("bms", "s 1", 1, levels)
    state = MqttState()
    ref_values: dict[str, dict[str, dict[str, object]]] = {}
    for seq, b in enumerate(batches() * 2, 1):
        msgs = render_rows([Row(seq, T, b)], topics, state)
        tele = [(m.topic, m.payload) for m in msgs if m.topic.endswith("/telemetry")]
        assert tele == ref_telemetry(seq, b, topics)
        touched: list[str] = []
        for s in b.samples:
            if levels is ALL_LEVELS or level_of(s.quantity, s.module, s.cell) in levels:
                doc = {"v": clean(s.value), "u": s.unit, "ql": s.quality, "ts": s.ts}
                ref_values.setdefault(s.rack, {})[state_key(s)] = doc
                touched += [] if s.rack in touched else [s.rack]
        states = [m.payload for m in msgs if m.topic.endswith("/state")]
        assert states == [ref_dumps({"site": topics.site, "rack": r, "values": ref_values[r]}) for r in touched]
    assert ref_dumps(state.values) == ref_dumps(ref_values)


def test_mqtt_state_keeps_earlier_entries_and_adds_new_ones_at_the_end() -> None:
    earlier: dict[str, object] = {"v": 1.0, "u": "%", "ql": "good", "ts": T - 1}
    state = MqttState()
    render_rows([Row(1, T, Batch("s", [Sample(T - 1, "soh", 1.0, "%", "good", "r1")]))], Topics("bms", "s1"), state)
    b = Batch("s", [Sample(T, "soc", 55.0, "%", "good", "r1")])
    msgs = render_rows([Row(2, T, b)], Topics("bms", "s1"), state)
    values = {"soh": earlier, "soc": {"v": 55.0, "u": "%", "ql": "good", "ts": T}}
    assert msgs[-1].payload == ref_dumps({"site": "s1", "rack": "r1", "values": values})
    assert state.values == {"r1": values}
