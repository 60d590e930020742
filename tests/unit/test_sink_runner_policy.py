"""Batching and backoff decisions of the sink runner (pure)."""

from __future__ import annotations

from gateway.sinks.runner import RETRY_AFTER_MAX, batch_wait, retry_delay


def test_partial_batch_waits_until_max_age_after_the_last_write_began() -> None:
    assert batch_wait(10, 0.05, 5000, 0.2, draining=False) == 0.2 - 0.05


def test_partial_batch_after_a_quiet_spell_goes_now() -> None:
    assert batch_wait(10, 0.3, 5000, 0.2, draining=False) == 0.0


def test_full_batch_goes_now() -> None:
    assert batch_wait(5000, 0.0, 5000, 0.2, draining=False) == 0.0


def test_draining_writes_partial_batches_at_once() -> None:
    assert batch_wait(1, 0.0, 5000, 0.2, draining=True) == 0.0


def test_without_retry_after_the_backoff_delay_is_taken() -> None:
    assert retry_delay(2.7, None) == 2.7  # the delays themselves: tests/unit/test_backoff.py


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    assert retry_delay(4.0, 30.0) == 30.0
    assert retry_delay(4.0, 10 * RETRY_AFTER_MAX) == RETRY_AFTER_MAX
    assert retry_delay(4.0, -1.0) == 0.0


def test_a_clock_going_back_never_waits_longer_than_the_maximum() -> None:
    assert batch_wait(10, -3600.0, 5000, 0.2, draining=False) == 0.2
