"""Jittered exponential backoff: the one rule for how long to wait before trying a failed connection,
bus or write again. Every source (a Modbus endpoint and its offline devices, a CAN bus) and the sink
runner use it.

The delay before retry number n (0-based, counted since the last success) is a step of
`initial * multiplier**n`, at most `maximum`, of which a random part is left out ("equal jitter" by
default: each delay lies in [step/2, step)), so that many gateways restarting together do not hammer a
recovering peer in step. A success resets the sequence. Pure: no clock, no event loop (`sleep` is the
one asynchronous convenience), and the random source can be injected.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

MAX_EXPONENT = 64  # beyond it every step is at the ceiling anyway; keeps multiplier**n finite


def backoff_step(attempt: int, initial: float, maximum: float, multiplier: float = 2.0) -> float:
    """The delay before retry number `attempt` (0-based) without jitter: grows by `multiplier`, capped at `maximum`."""
    return min(maximum, initial * multiplier ** min(max(0, attempt), MAX_EXPONENT))


def jittered(step: float, jitter: float, rand: float) -> float:
    """`step` less a random part of at most `jitter` of it: in [step * (1 - jitter), step) for `rand` in [0, 1)."""
    return step * (1.0 - jitter * (1.0 - rand))


@dataclass(slots=True)
class Backoff:
    """The delays between attempts at something that fails: `next_delay()` after each failure,
    `reset()` after a success."""

    initial: float
    maximum: float
    multiplier: float = 2.0
    jitter: float = 0.5  # fraction of a step that may be left out at random (0: no jitter)
    rand: Callable[[], float] = random.random  # uniform in [0, 1)
    attempt: int = 0  # failures since the last success

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.maximum > 0):
            raise ValueError(f"backoff delays must be positive (initial {self.initial}, maximum {self.maximum})")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(
                f"backoff multiplier must be >= 1 and jitter within 0..1 ({self.multiplier}, {self.jitter})"
            )

    def next_delay(self) -> float:
        """The delay before the next attempt, after a failure (counts it)."""
        step = backoff_step(self.attempt, self.initial, self.maximum, self.multiplier)
        self.attempt += 1
        return jittered(step, self.jitter, self.rand())

    def reset(self) -> None:
        """A success: the next failure waits `initial` again."""
        self.attempt = 0

    async def sleep(self) -> float:
        """Wait the next delay (after a failure); returns it."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay
