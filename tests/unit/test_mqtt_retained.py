"""The retained MQTT state of a rack: one text per key table, not an entry per point, holding what a
mapping state key → latest entry would hold, in the same order."""

from __future__ import annotations

import json

from gateway.model import Batch, Sample
from gateway.sinks.mqtt.payloads import MqttState, Topics, render_rows
from gateway.sinks.mqtt.retained import RackState
from gateway.store.outbox import Row

T = 1_700_000_000_000_000_000
TOPICS = Topics("bms", "s1", 1)


def cells(ts: int, cells: range, value: float, quantity: str = "cell_voltage") -> list[Sample]:
    return [Sample(ts, quantity, value + c / 1000, "V", "good", "r1", 1, c) for c in cells]


def expected(batches: list[list[Sample]]) -> list[tuple[str, object]]:
    """What a mapping state key → latest entry holds after these batches (first seen first)."""
    out: dict[str, object] = {}
    for samples in batches:
        for s in samples:
            out[f"{s.quantity}/{s.module}/{s.cell}"] = {"v": s.value, "u": s.unit, "ql": s.quality, "ts": s.ts}
    return list(out.items())


def state_after(batches: list[list[Sample]]) -> tuple[list[tuple[str, object]], RackState]:
    state = MqttState()
    msgs = []
    for seq, samples in enumerate(batches, 1):
        msgs = render_rows([Row(seq, T, Batch.of_samples("src", samples))], TOPICS, state)
    assert msgs[-1].topic == "bms/s1/r1/state"
    return list(json.loads(msgs[-1].payload)["values"].items()), state.racks["r1"]


def test_one_key_table_is_one_text_replaced_by_each_batch() -> None:
    batches = [cells(T + i, range(1, 201), 3.0 + i / 10) for i in range(3)]
    got, rack = state_after(batches)
    assert got == expected(batches)
    assert rack.entries is None and len(rack.segments) == 1 and len(rack) == 200
    assert rack.segments[0].text.count("cell_voltage/") == 200  # one string for the 200 entries


def test_tables_with_other_keys_add_a_segment_each_in_the_order_first_seen() -> None:
    a, b = cells(T, range(1, 5), 3.0), cells(T, range(1, 5), 20.0, "cell_temperature")
    batches = [a, b, cells(T + 1, range(1, 5), 3.1), cells(T + 2, range(1, 5), 21.0, "cell_temperature")]
    got, rack = state_after(batches)
    assert got == expected(batches)
    assert rack.entries is None and len(rack.segments) == 2


def test_overlapping_tables_and_a_key_twice_hold_what_a_mapping_holds() -> None:
    overlap = [cells(T, range(1, 5), 3.0), cells(T + 1, range(3, 8), 3.2), cells(T + 2, range(1, 3), 3.4)]
    got, rack = state_after(overlap)
    assert got == expected(overlap) and rack.entries is not None
    twice = [cells(T, range(1, 3), 3.0) + cells(T + 1, range(1, 3), 3.1)]  # two frames of one id in a window
    got, rack = state_after(twice)
    assert got == expected(twice) and len(got) == 2
    mixed = [cells(T, range(1, 4), 3.0), twice[0], cells(T + 3, range(2, 6), 3.3)]
    assert state_after(mixed)[0] == expected(mixed)
