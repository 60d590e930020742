"""Batching and backoff decisions of the sink runner (pure)."""

from __future__ import annotations

from gateway.sinks.runner import RETRY_AFTER_MAX, batch_wait, next_backoff, retry_delay


def test_partial_batch_waits_for_the_rest_of_its_age() -> None:
    assert batch_wait(10, 0.05, 5000, 0.2, draining=False) == 0.2 - 0.05


def test_old_enough_partial_batch_goes_now() -> None:
    assert batch_wait(10, 0.3, 5000, 0.2, draining=False) == 0.0


def test_full_batch_goes_now() -> None:
    assert batch_wait(5000, 0.0, 5000, 0.2, draining=False) == 0.0


def test_draining_writes_partial_batches_at_once() -> None:
    assert batch_wait(1, 0.0, 5000, 0.2, draining=True) == 0.0


def test_jitter_stays_within_half_to_full_backoff() -> None:
    assert retry_delay(4.0, None, 0.0) == 2.0
    assert 3.99 < retry_delay(4.0, None, 0.9999) < 4.0


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    assert retry_delay(4.0, 30.0, 0.5) == 30.0
    assert retry_delay(4.0, 10 * RETRY_AFTER_MAX, 0.5) == RETRY_AFTER_MAX
    assert retry_delay(4.0, -1.0, 0.5) == 0.0


def test_backoff_doubles_up_to_the_maximum() -> None:
    b = 0.5
    seen = []
    for _ in range(8):
        b = next_backoff(b, 30.0)
        seen.append(b)
    assert seen == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_negative_age_never_waits_longer_than_the_maximum() -> None:
    assert batch_wait(10, -3600.0, 5000, 0.2, draining=False) == 0.2
