"""The one reconnect/retry backoff rule (gateway.runtime.backoff), without an event loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.runtime.backoff import Backoff, backoff_step, jittered


def fixed(r: float) -> Backoff:
    return Backoff(0.5, 30.0, rand=lambda: r)


def test_backoff_sequence_doubles_from_initial_up_to_the_ceiling() -> None:
    b = Backoff(0.5, 30.0, jitter=0.0)
    assert [b.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert b.attempt == 9


def test_backoff_multiplier() -> None:
    b = Backoff(1.0, 100.0, multiplier=3.0, jitter=0.0)
    assert [b.next_delay() for _ in range(6)] == [1, 3, 9, 27, 81, 100]


def test_backoff_cap_holds_after_very_many_failures() -> None:
    assert backoff_step(10_000, 0.5, 30.0) == 30.0
    assert backoff_step(10**9, 0.1, 5.0, multiplier=10.0) == 5.0
    b = fixed(0.5)
    b.attempt = 10**6
    assert b.next_delay() == 22.5


def test_backoff_reset_starts_over_at_initial() -> None:
    b = Backoff(0.5, 30.0, jitter=0.0)
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.attempt == 0
    assert b.next_delay() == 0.5


def test_backoff_equal_jitter_by_default() -> None:
    low, high = fixed(0.0), fixed(0.999999)
    assert [low.next_delay() for _ in range(3)] == [0.25, 0.5, 1.0]
    assert all(0.99 * s < high.next_delay() < s for s in (0.5, 1.0, 2.0))


@given(
    st.integers(0, 200),
    st.floats(0.001, 10),
    st.floats(0.001, 1000),
    st.floats(1.0, 10.0),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0, exclude_max=True),
)
def test_backoff_jitter_bounds(
    attempt: int, initial: float, maximum: float, mult: float, jitter: float, r: float
) -> None:
    b = Backoff(initial, maximum, multiplier=mult, jitter=jitter, rand=lambda: r, attempt=attempt)
    step = backoff_step(attempt, initial, maximum, mult)
    delay = b.next_delay()
    assert step * (1 - jitter) - 1e-12 <= delay <= step
    assert delay <= maximum
    assert step <= max(maximum, initial)


def test_backoff_jitter_with_the_real_random_source_stays_in_bounds() -> None:
    b = Backoff(1.0, 1.0)
    delays = [b.next_delay() for _ in range(1000)]
    assert all(0.5 <= d < 1.0 for d in delays)
    assert max(delays) - min(delays) > 0.1  # not one fixed value: the retries of many gateways spread


def test_jittered_is_the_step_less_a_random_part() -> None:
    assert jittered(4.0, 0.5, 0.0) == 2.0
    assert jittered(4.0, 0.0, 0.3) == 4.0
    assert jittered(4.0, 1.0, 0.0) == 0.0


@pytest.mark.parametrize(
    "kw", [{"initial": 0.0}, {"maximum": -1.0}, {"multiplier": 0.5}, {"jitter": 1.5}, {"jitter": -0.1}]
)
def test_backoff_refuses_nonsense(kw: dict[str, float]) -> None:
    args = {"initial": 0.5, "maximum": 30.0, "multiplier": 2.0, "jitter": 0.5, **kw}
    with pytest.raises(ValueError):
        Backoff(args["initial"], args["maximum"], multiplier=args["multiplier"], jitter=args["jitter"])
