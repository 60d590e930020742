"""Bounds on commands (pure): nesting found without recursion, rate limits per rack with a bounded number of
racks, refusals journaled in bursts, replies that echo bounded fields."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms.commandlimits import OTHER_RACKS, RackBuckets, TokenBucket, nesting_depth
from gateway.alarms.commandrecord import DENIED_BURST, LONGEST, QUIET, RefusalLog, refusal_entry
from gateway.alarms.commands import MAX_ECHO, bounded_reply

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n', max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=3), inner,
                                                                max_size=3),
    max_leaves=20,
)  # fmt: skip


def depth_of(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((depth_of(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((depth_of(x) for x in v.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_nesting_depth_is_the_structures_whatever_the_strings_hold(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert nesting_depth(text, 100) == depth_of(value)


def test_nesting_depth_stops_early_on_a_huge_nest() -> None:
    assert nesting_depth(b"[" * 10_000_000, 8) == 9


def test_token_bucket_refills_at_its_rate() -> None:
    b = TokenBucket(rate=2.0, capacity=3)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.5) and not b.take(0.5)
    assert [b.take(100.0) for _ in range(4)] == [True, True, True, False]  # never more than its capacity


def test_rack_buckets_are_per_rack_and_bounded_in_number() -> None:
    buckets = RackBuckets(rate=1.0, capacity=1, max_racks=8)
    assert buckets.take("rack-01", 0.0) and not buckets.take("rack-01", 0.0)
    assert buckets.take("rack-02", 0.0)  # another rack is not held back
    for i in range(10_000):  # names from topics anyone may publish: the table stays small
        buckets.take(f"junk-{i}", 0.0)
    assert len(buckets.buckets) <= 9 and OTHER_RACKS in buckets.buckets
    assert not buckets.take("rack-01", 0.0)  # a real rack keeps its own bucket while it is in use
    assert all(len(name) <= 64 for name in buckets.buckets)
    buckets.take("r" * 60_000, 0.0)  # a topic level of any length: never a key
    assert all(len(name) <= 64 for name in buckets.buckets)


def test_refusals_are_journaled_once_per_burst_with_counts() -> None:
    journal: list[dict[str, Any]] = []
    refusals = RefusalLog(journal.extend, lambda: 0)
    t = 0.0
    for i in range(2000):  # a flood of junk: the first is journaled, the rest counted
        t += 0.001
        entry = refusal_entry(0, "rack-01", "invalid", "not_json", "not JSON", None, b"\x00" * 1000, 1000, 500)
        refusals.refused("invalid", entry, t)
        refusals.dropped("rate_limited", f"rack-{i}", t)
        refusals.flush(t)
    assert [e["type"] for e in journal] == ["command_refused", "command_dropped"]
    refusals.flush(t + QUIET)
    summaries = [e for e in journal if e["type"] == "commands_refused"]
    assert {(e["kind"], e["count"]) for e in summaries} == {("invalid", 1999), ("dropped", 1999)}
    assert summaries[0]["reasons"] in ({"not_json": 1999}, {"rate_limited": 1999})
    assert len(journal[0]["excerpt"]) <= 100 and len(json.dumps(journal)) < 5000


def test_denied_commands_are_journaled_one_by_one_within_a_budget() -> None:
    journal: list[dict[str, Any]] = []
    refusals = RefusalLog(journal.extend, lambda: 0)
    doc = {"action": "ack", "user": "mallory", "reason": "x" * 10_000, "alarm_id": "rack-01:a", "id": 7}
    for i in range(1000):
        refusals.refused("denied", refusal_entry(0, "rack-01", "denied", "unsigned", "not signed", doc, None, 1, 500),
                         i * 0.01)  # fmt: skip
    single = [e for e in journal if e["type"] == "command_refused"]
    assert len(single) == DENIED_BURST
    assert single[0]["user"] == "mallory" and len(single[0]["reason"]) < 520 and single[0]["request_id"] == "7"
    refusals.flush(10.0 + LONGEST)
    assert journal[-1]["count"] == 1000 - DENIED_BURST and journal[-1]["reasons"] == {"unsigned": 900}


def test_replies_echo_bounded_fields() -> None:
    reply = bounded_reply({"id": "i" * 1000, "ok": False, "alarm_ids": [f"r:{i}" for i in range(500)],
                           "errors": ["e" * 100_000] * 3})  # fmt: skip
    assert len(reply["alarm_ids"]) == MAX_ECHO and reply["alarm_ids_more"] == 500 - MAX_ECHO
    assert len(json.dumps(reply)) < 3000 and "errors_more" not in reply
