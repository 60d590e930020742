"""The CAN bench's latency split: send → decode (the source) and decode → MQTT (everything after it)."""

from __future__ import annotations

import math

from bench.can_bench import WARMUP_PROBES, split_ms


def test_split_uses_probes_seen_at_both_ends_after_the_warm_up() -> None:
    ms = 1_000_000
    sent = [(seq, seq * 50 * ms) for seq in range(WARMUP_PROBES + 100)]
    decoded = {seq: t + 20 * ms for seq, t in sent}
    arrived = {seq: t + 20 * ms + 60 * ms for seq, t in sent if seq % 10}  # every tenth never arrives
    decoded[0] = 10_000 * ms  # in the warm-up: not counted
    decoded[WARMUP_PROBES + 3] = sent[WARMUP_PROBES + 3][1] + 45 * ms
    split = split_ms(sent, decoded, arrived)
    assert 20 < split["p99_decode"] <= 45 and math.isclose(split["p99_after"], 60.0)
    none = split_ms(sent, {}, arrived)
    assert math.isnan(none["p99_decode"]) and math.isnan(none["p99_after"])
