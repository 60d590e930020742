"""A link's reads time out through one timer for the link: the reads that are answered in time leave no
timer behind each, and a read that gets no answer still ends with None once its own deadline passed,
whatever deadline the timer had been set for by the reads before it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.sources.modbus.deadline import ReadDeadline


def test_answered_reads_share_one_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        timers: list[float] = []
        real = loop.call_at

        def call_at(when: float, *args: Any) -> asyncio.TimerHandle:
            timers.append(when)
            return real(when, *args)

        monkeypatch.setattr(loop, "call_at", call_at)
        deadline = ReadDeadline()
        for _ in range(200):  # answered at once, well within their 30 s
            future = loop.create_future()
            deadline.arm(loop, future, loop.time() + 30)
            loop.call_soon(future.set_result, "reply")
            assert await future == "reply"
            deadline.disarm()
        deadline.cancel()
        return len(timers)

    assert asyncio.run(main()) == 1


def test_a_read_without_an_answer_ends_at_its_own_deadline() -> None:
    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        deadline = ReadDeadline()
        first = loop.create_future()
        deadline.arm(loop, first, loop.time() + 0.05)  # the timer is set for this read's end
        first.set_result("reply")
        deadline.disarm()
        late = loop.create_future()
        deadline.arm(loop, late, loop.time() + 0.3)  # later than the timer: it wakes, then waits on
        unanswered = await asyncio.wait_for(late, 30)
        sooner = loop.create_future()
        deadline.arm(loop, sooner, loop.time() + 60)
        deadline.arm(loop, sooner, loop.time() + 0.05)  # a shorter timeout than the timer's: set sooner
        short = await asyncio.wait_for(sooner, 30)
        deadline.cancel()
        return [unanswered, short, deadline.handle]

    assert asyncio.run(main()) == [None, None, None]


def test_a_link_used_in_a_new_loop_sets_its_timer_there() -> None:
    deadline = ReadDeadline()

    async def read(timeout: float) -> object:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        deadline.arm(loop, future, loop.time() + timeout)
        return await asyncio.wait_for(future, 30)

    with pytest.raises(TimeoutError):  # the first loop ends before its timer (set for an hour) wakes
        asyncio.run(asyncio.wait_for(read(3600), 0.01))
    assert asyncio.run(read(0.05)) is None
