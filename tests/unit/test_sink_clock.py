"""A clock that steps backwards never makes a point overwrite a stored one."""

from __future__ import annotations

import numpy as np

from gateway.sinks.clock import ClockGuard, split_line
from gateway.sinks.columns import texts_of


def test_split_line_with_escaped_spaces() -> None:
    key = r"rack,site=a\ b,rack=r1"
    line = key + " soc=1.0,x=2.0 1000"
    assert split_line(line) == (key, "soc=1.0,x=2.0", 1000, line)


def test_forward_time_is_untouched() -> None:
    g = ClockGuard("influx")
    items = [(1, "rack,rack=r1 soc=1.0 100"), (2, "rack,rack=r1 soc=2.0 200")]
    out, state = g.apply(items)
    assert out == items
    g.commit(state)


def test_step_back_is_tagged_and_ends_when_time_passes_the_old_newest() -> None:
    g = ClockGuard("influx")
    out, state = g.apply([(1, "rack,rack=r1 soc=1.0 1000")])
    g.commit(state)
    out, state = g.apply(
        [(2, "rack,rack=r1 soc=2.0 500"), (3, "rack,rack=r1 soc=3.0 1000"), (4, "rack,rack=r1 soc=4.0 1001")]
    )
    assert out == [
        (2, "rack,rack=r1,clock_step=1 soc=2.0 500"),
        (3, "rack,rack=r1,clock_step=1 soc=3.0 1000"),
        (4, "rack,rack=r1 soc=4.0 1001"),
    ]
    g.commit(state)
    assert g.steps == 1


def test_a_retry_renders_the_same_lines_until_committed() -> None:
    g = ClockGuard("influx")
    items = [(1, "rack,rack=r1 soc=1.0 100")]
    first, _ = g.apply(items)
    again, state = g.apply(items)  # the first write failed: nothing committed
    assert first == again == items
    g.commit(state)


def test_same_time_unit_moves_one_unit_on_instead_of_overwriting() -> None:
    g = ClockGuard("influx")
    out, _state = g.apply(
        [(1, "rack,rack=r1 soc=1.0 100"), (2, "rack,rack=r1 soc=2.0 100"), (3, "rack,rack=r1 soc=3.0 101")]
    )
    assert out == [(1, "rack,rack=r1 soc=1.0 100"), (2, "rack,rack=r1 soc=2.0 101"), (3, "rack,rack=r1 soc=3.0 102")]


def test_one_step_is_one_step_across_series() -> None:
    g = ClockGuard("influx")
    _, state = g.apply([(1, "a,r=1 x=1.0 1000"), (1, "b,r=1 x=1.0 1000")])
    g.commit(state)
    out, state = g.apply([(2, "a,r=1 x=2.0 10"), (2, "b,r=1 x=2.0 10")])
    assert out == [(2, "a,r=1,clock_step=1 x=2.0 10"), (2, "b,r=1,clock_step=1 x=2.0 10")]


def test_a_third_reading_in_one_unit_moves_on_and_is_not_a_step() -> None:
    g = ClockGuard("influx")
    items = [(1, "a,r=1 x=1.0 100"), (1, "a,r=1 x=2.0 100"), (1, "a,r=1 x=3.0 100"), (2, "a,r=1 y=4.0 101")]
    out, state = g.apply(items)
    assert out == [(1, "a,r=1 x=1.0 100"), (1, "a,r=1 x=2.0 101"), (1, "a,r=1 x=3.0 102"), (2, "a,r=1 y=4.0 103")]
    g.commit(state)
    assert g.steps == 0
    out, _ = g.apply([(3, "a,r=1 x=5.0 100")])  # before what was written, in a later write: a step
    assert out == [(3, "a,r=1,clock_step=1 x=5.0 100")]


def test_a_reading_carried_to_the_next_write_at_its_own_time_moves_on_and_is_not_a_step() -> None:
    # A CAN window holds a message three times: two go now (the second moved on), the last waits for
    # the next window with its own time (the window's decode time).
    g = ClockGuard("influx")
    out, state = g.apply([(1, "a,r=1 x=1.0 100"), (1, "a,r=1 x=2.0 100")])
    assert out == [(1, "a,r=1 x=1.0 100"), (1, "a,r=1 x=2.0 101")]
    g.commit(state)
    out, state = g.apply([(2, "a,r=1 x=3.0 100"), (2, "a,r=1 x=4.0 120")])
    assert out == [(2, "a,r=1 x=3.0 102"), (2, "a,r=1 x=4.0 120")]
    g.commit(state)
    assert g.steps == 0 and g.newest == {"a,r=1": 120}


def test_admit_each_moves_readings_within_a_unit_and_refuses_a_step() -> None:
    g = ClockGuard("influx")

    def admit(keys: list[str], times: list[int]) -> list[int] | None:
        pending = g.begin()
        out = g.admit_each(pending, texts_of(keys), np.array(times, dtype=np.int64))
        if out is None:
            return None
        g.commit(pending)
        return [int(t) for t in out]

    assert admit(["a", "a", "b", "a"], [100, 100, 100, 100]) == [100, 101, 100, 102]
    # the window's last round, carried at its own time, and the next window
    assert admit(["a", "b", "a", "b"], [100, 100, 120, 120]) == [103, 101, 120, 120]
    assert admit(["a"], [119]) is None  # before the newest as read: a step, tagged by `lines`
    assert admit(["b", "b"], [121, 121]) == [121, 122]
    assert g.newest == {"a": 120, "b": 122}
