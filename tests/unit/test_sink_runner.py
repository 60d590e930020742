"""The runner's policy with a sink written here (the Sink protocol is ours): order, retries, drain, budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.config.base import SinkBase
from gateway.errors import SinkError
from gateway.sinks.base import Rejected
from gateway.sinks.runner import SinkRunner
from gateway.store.outbox import Outbox, Row
from tests.delivery_support import running, sample_batch
from tests.support.waits import await_for


class ListSink:
    """Keeps what it is given; fails the first `fail` writes."""

    def __init__(self, fail: int = 0, retry_after: float | None = None) -> None:
        self.name = "list"
        self.fail = fail
        self.retry_after = retry_after
        self.writes: list[list[int]] = []
        self.attempts = 0
        self.attempted_at: list[float] = []  # monotonic time of each attempt

    async def open(self) -> None:
        pass

    async def write(self, rows: Sequence[Row]) -> Sequence[Rejected]:
        self.attempts += 1
        self.attempted_at.append(time.monotonic())
        if self.fail > 0:
            self.fail -= 1
            raise SinkError("down", retry_after=self.retry_after)
        self.writes.append([r.seq for r in rows])
        return []

    async def close(self) -> None:
        pass


def cfg(**kw: float) -> SinkBase:
    return SinkBase.model_validate({"backoff_initial": 0.01, "backoff_max": 0.05, "batch_max_age": 0.05, **kw})


async def test_failures_retry_and_delivery_keeps_order(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    sink = ListSink(fail=3)
    runner = SinkRunner("list", sink, ob, cfg(batch_max_samples=30))
    for i in range(10):
        ob.append([sample_batch("r1", i + 1, 10)])
    async with running(runner):
        await await_for(runner.caught_up)
    assert sink.attempts == 3 + len(sink.writes)
    assert [s for w in sink.writes for s in w] == list(range(1, 11))  # every row once, in order
    assert all(len(w) <= 3 for w in sink.writes)  # batches by size: 30 samples
    assert ob.acked("list") == 10
    ob.close()


async def test_retry_after_is_waited_out_before_the_next_attempt(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    sink = ListSink(fail=1, retry_after=0.5)
    runner = SinkRunner("list", sink, ob, cfg())
    ob.append([sample_batch("r1", 1, 1)])
    async with running(runner):
        await await_for(runner.caught_up)
    assert sink.attempts == 2 and sink.writes == [[1]]
    # The second attempt came no sooner than the server asked (backoff alone: 5-10 ms).
    assert sink.attempted_at[1] - sink.attempted_at[0] >= 0.5
    ob.close()


async def test_drain_writes_a_partial_batch_at_once(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    sink = ListSink()
    runner = SinkRunner("list", sink, ob, cfg(batch_max_age=3600))
    async with running(runner):
        ob.append([sample_batch("r1", time.time_ns(), 1)])
        runner.notify()
        await await_for(lambda: sink.writes == [[1]])  # the first goes at once; the next write waits an hour
        ob.append([sample_batch("r1", time.time_ns(), 1)])  # a fresh row
        runner.notify()
        await await_for(lambda: [r.seq for r in runner._buffer] == [2])  # read, held for more
        assert sink.writes == [[1]]
        assert await runner.drain(30.0)
    assert sink.writes == [[1], [2]]
    ob.close()


async def test_a_bug_in_a_sink_is_not_swallowed(tmp_path: Path) -> None:
    class Broken(ListSink):
        async def write(self, rows: Sequence[Row]) -> Sequence[Rejected]:
            raise ZeroDivisionError

    ob = Outbox(tmp_path / "o.db")
    runner = SinkRunner("list", Broken(), ob, cfg())
    ob.append([sample_batch("r1", 1, 1)])
    with pytest.raises(ZeroDivisionError):
        await asyncio.wait_for(runner.run(), 30)
    assert ob.acked("list") == 0  # nothing acknowledged
    ob.close()


async def test_writes_are_paced_not_delayed(tmp_path: Path) -> None:
    """A row after a quiet spell goes at once, however long `batch_max_age` is; the next partial batch
    waits for it (rows meanwhile share one write)."""
    ob = Outbox(tmp_path / "o.db")
    sink = ListSink()
    runner = SinkRunner("list", sink, ob, cfg(batch_max_age=600))
    async with running(runner):
        ob.append([sample_batch("r1", 1, 10)])
        runner.notify()
        await await_for(lambda: sink.writes == [[1]])  # not 600 s later
        ob.append([sample_batch("r1", 2, 10)])
        ob.append([sample_batch("r1", 3, 10)])
        runner.notify()
        await await_for(lambda: runner.outbox.read(1, max_samples=100) != [])
        assert sink.writes == [[1]]  # paced: 600 s from the first write's start
    ob.close()
