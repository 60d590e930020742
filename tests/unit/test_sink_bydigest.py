"""Work prepared per layout is shared by equal layouts and bounded by the samples of the layouts held."""

from __future__ import annotations

from gateway.model import Layout
from gateway.sinks.bydigest import ByDigest, BySegment
from gateway.sinks.influx import lineplan
from gateway.sinks.mqtt import telemetryplan
from gateway.sinks.mqtt.payloads import good_piece


def layout(rack: str, n: int) -> Layout:
    return Layout([("cell_voltage", "V", rack, 1, c) for c in range(n)], [(0, n)])


def test_equal_layouts_share_bounded_least_recently_used_out() -> None:
    cache: ByDigest[str] = ByDigest(max_keys=25)
    a, b, c = layout("a", 10), layout("b", 10), layout("c", 10)
    assert cache.get(a) is None
    cache.put(a, "A")
    assert cache.get(layout("a", 10)) == "A"  # made anew, same content
    cache.put(b, "B")
    assert cache.get(a) == "A"  # a used last: b goes first
    cache.put(c, "C")
    assert cache.get(b) is None and cache.get(a) == "A" and cache.get(c) == "C"
    assert len(cache) == 2
    cache.put(layout("big", 30), "X")  # larger than the bound alone: kept, the others go
    assert len(cache) == 1


def test_plans_are_shared_by_equal_layouts() -> None:
    a, again = layout("r1", 5), layout("r1", 5)
    assert a is not again and a.id != again.id
    assert lineplan.plan_for(a, "s", "src") is lineplan.plan_for(again, "s", "src")
    assert lineplan.plan_for(a, "s", "src") is not lineplan.plan_for(a, "s", "other")
    assert telemetryplan.plan_for(a, None, good_piece) is telemetryplan.plan_for(again, None, good_piece)


def test_layouts_share_the_plans_of_equal_segments() -> None:
    keys = [("cell_voltage", "V", "r9", 1, c) for c in range(6)]
    whole = Layout(keys, [(0, 3), (3, 6)])
    failed = Layout(keys[:3] + [("cell_voltage", "V", "r9", 2, c) for c in range(3)], [(0, 3), (3, 6)])
    a, b = lineplan.plan_for(whole, "s", "src"), lineplan.plan_for(failed, "s", "src")
    assert a is not b and a.segments[0] is b.segments[0] and a.segments[1] is not b.segments[1]
    ta, tb = telemetryplan.plan_for(whole, None, good_piece), telemetryplan.plan_for(failed, None, good_piece)
    assert ta.segments[0] is tb.segments[0] and ta.segments[1] is not tb.segments[1]


def test_segment_cache_bounded_least_recently_used_out() -> None:
    cache: BySegment[str, int] = BySegment(max_keys=10)
    cache.put("a", 1, 4)
    cache.put("b", 2, 4)
    assert cache.get("a") == 1 and "a" in cache  # a used last: b goes first
    cache.put("c", 3, 4)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2
    cache.put("big", 4, 20)  # larger than the bound alone: kept, the others go
    assert len(cache) == 1 and cache.get("big") == 4
