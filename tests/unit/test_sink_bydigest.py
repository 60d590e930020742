"""Work prepared per layout is shared by equal layouts and bounded by the samples of the layouts held."""

from __future__ import annotations

from gateway.model import Layout
from gateway.sinks import lineplan, telemetryplan
from gateway.sinks.bydigest import ByDigest
from gateway.sinks.mqttpayloads import good_piece


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
