"""Drift-free schedule and jittered exponential backoff."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.modbus.schedule import backoff_delay, next_due


def test_on_time_cycle() -> None:
    assert next_due(10.0, 1.0, 10.3) == (11.0, 0)


def test_late_cycle_does_not_shift_later_ones() -> None:
    due, skipped = next_due(10.0, 1.0, 12.5)
    assert (due, skipped) == (13.0, 2)


@given(st.floats(0, 1e6), st.floats(0.01, 100), st.floats(0, 1e4))
def test_next_due_stays_on_the_grid(due: float, interval: float, late: float) -> None:
    now = due + late
    nxt, skipped = next_due(due, interval, now)
    assert nxt > now - 1e-6
    assert abs((nxt - due) / interval - round((nxt - due) / interval)) < 1e-6
    assert round((nxt - due) / interval) == skipped + 1


def test_backoff_grows_to_the_ceiling_with_jitter() -> None:
    assert [backoff_delay(n, 0.5, 30, rand=1.0) for n in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert [backoff_delay(n, 0.5, 30, rand=0.0) for n in range(3)] == [0.25, 0.5, 1.0]
    assert backoff_delay(10_000, 0.5, 30, rand=0.5) == 22.5
