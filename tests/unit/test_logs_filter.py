"""The log stream's bounds as pure processors: field and line caps, the repeat limiter (on a clock the
test moves), pymodbus's frame dumps and its per-timeout line."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest
import structlog

from gateway.ops.logfilter import (
    FIELD_MAX,
    LINE_MAX,
    CappedJSON,
    LibraryRules,
    RepeatLimiter,
    cap_fields,
    kind_of,
    shorten,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def line(event: str = "No response received after 3 retries", **fields: Any) -> dict[str, Any]:
    return {"event": event, "level": "warning", "logger": "pymodbus.logging", "timestamp": "t", **fields}


def feed(limiter: RepeatLimiter, ed: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return dict(limiter(None, "warning", ed))
    except structlog.DropEvent:
        return None


def test_shorten_keeps_head_and_tail_within_the_bound() -> None:
    text = "head" + "x" * 10_000 + "tail"
    short = shorten(text, 100)
    assert short.startswith("head") and short.endswith("tail")
    assert len(short) <= 100
    assert f"[{len(text) - 2 * (50 - 16)} chars cut]" in short
    assert shorten("short", 100) == "short"


def test_every_long_string_field_is_cut_and_marked() -> None:
    ed = cap_fields(None, "error", {"event": "e" * 1_300_000, "exception": "t" * 5000, "device": "rack-01", "n": 3})
    assert len(ed["event"]) <= FIELD_MAX and len(ed["exception"]) <= FIELD_MAX
    assert ed["device"] == "rack-01" and ed["n"] == 3 and ed["truncated"] is True
    assert "truncated" not in cap_fields(None, "info", {"event": "fine"})


def test_a_kind_masks_the_numbers_of_the_event_and_of_numeric_fields_only() -> None:
    assert kind_of(line("after 3 retries, 0x1f")) == kind_of(line("after 12 retries, 0xab"))
    assert kind_of(line("offline", device="rack-01")) != kind_of(line("offline", device="rack-02"))
    assert kind_of(line("retrying", retry_in=0.2)) == kind_of(line("retrying", retry_in=1.6))
    assert kind_of(line("x", timestamp="a")) == kind_of(line("x", timestamp="b"))
    assert kind_of({**line("x"), "level": "error"}) != kind_of(line("x"))


def test_repeats_beyond_the_burst_are_left_out_and_counted_on_the_next_line() -> None:
    clock = Clock()
    limiter = RepeatLimiter(window=60, burst=3, clock=clock)
    written = [feed(limiter, line(f"No response received after {i} retries")) for i in range(100)]
    assert [w is not None for w in written[:4]] == [True, True, True, False]
    assert sum(w is not None for w in written) == 3
    assert limiter.due() == []  # the window has not passed
    clock.now += 60
    nxt = feed(limiter, line("No response received after 7 retries"))
    assert nxt is not None and nxt["repeated"] == 97
    other = feed(limiter, line("something else"))
    assert other is not None and "repeated" not in other


def test_a_kind_that_stops_repeating_is_written_late_with_its_count() -> None:
    clock = Clock()
    limiter = RepeatLimiter(window=60, burst=1, clock=clock)
    for i in range(10):
        feed(limiter, line("flood", attempt=i))
    clock.now += 59
    assert limiter.due() == []
    clock.now += 1
    late = limiter.due()
    assert [(e["event"], e["attempt"], e["repeated"]) for e in late] == [("flood", 9, 8)]  # 1 written + 9 left out
    assert limiter.due() == [] and limiter.pending() == []


def test_pending_gives_every_held_line_at_the_end() -> None:
    clock = Clock()
    limiter = RepeatLimiter(window=60, burst=1, clock=clock)
    for event in ("a", "a", "b", "b", "b", "c"):
        feed(limiter, line(event))
    held = {e["event"]: e.get("repeated") for e in limiter.pending()}
    assert held == {"a": None, "b": 1}  # "a": one left out, shown as itself; "b": 2 left out


def test_a_message_whose_fields_change_every_time_is_bounded_too() -> None:
    clock = Clock()
    limiter = RepeatLimiter(window=60, burst=3, message_burst=5, clock=clock)
    rng = random.Random(1)
    written = [feed(limiter, line("reply does not answer", received=rng.randbytes(7).hex(" "))) for _ in range(50)]
    assert sum(w is not None for w in written) == 5
    assert feed(limiter, line("another message", received="x")) is not None
    clock.now += 60
    (late,) = limiter.due()
    assert late["event"] == "reply does not answer" and late["similar"] == 50 - 5 - 1  # the newest of 45 left out
    nxt = feed(limiter, line("reply does not answer", received="00"))
    assert nxt is not None and "similar" not in nxt  # the count went out with the late line


def test_a_full_table_of_kinds_limits_nothing_new_but_forgets_quiet_kinds() -> None:
    clock = Clock()
    limiter = RepeatLimiter(window=60, burst=1, max_kinds=2, clock=clock)
    for event in ("a", "b", "c", "c"):
        assert feed(limiter, line(event)) is not None  # "c" is not tracked: written every time
    clock.now += 60
    assert feed(limiter, line("d")) is not None
    assert feed(limiter, line("d")) is None  # "a" and "b" were quiet for a window: "d" took a place


def test_a_line_over_the_cap_has_its_largest_fields_cut_then_dropped() -> None:
    render = CappedJSON()
    ed = {
        "event": "x" * 2000,
        "exception": "\x00" * 2000,  # 6 characters each in JSON
        "devices": [f"rack-{i:03}" for i in range(2000)],
        "level": "error",
        "logger": "runtime",
        "timestamp": "2026-01-01T00:00:00Z",
    }
    out = render(None, "error", ed)
    assert len(out) <= LINE_MAX
    doc = json.loads(out)
    assert doc["truncated"] is True and doc["dropped"] == ["devices"]
    assert doc["event"].startswith("x") and doc["level"] == "error" and doc["logger"] == "runtime"
    assert render(None, "info", {"event": "short"}) == '{"event": "short"}'


def test_pymodbus_frame_dumps_are_cut_and_its_timeout_line_is_quiet_above_debug() -> None:
    rules = LibraryRules(logging.INFO)
    ed = rules(None, "error", line("Frame check failed\n>>>>> send: 0x0 0x1\n>>>>> recv: 0x7 0x8"))
    assert ed["event"] == "Frame check failed"
    with pytest.raises(structlog.DropEvent):
        rules(None, "error", line("No response received after 3 retries, continue with next request"))
    quiet = LibraryRules(logging.DEBUG)(None, "error", line("No response received after 3 retries"))
    assert quiet["level"] == "debug"
    other = rules(None, "warning", {**line("No response received after 3 retries"), "logger": "urllib3"})
    assert other["level"] == "warning"
