"""The source queue is bounded in samples (sources wait, nothing is dropped) and a backlog is committed in
groups of bounded size, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.config.settings import load_config
from gateway.model import Batch, Quality, Sample
from gateway.runtime.batchqueue import BatchQueue, QueueFull
from gateway.runtime.core import Runtime
from gateway.runtime.pipeline import QUEUE_WAIT
from gateway.sources.base import SourceContext
from gateway.store.outbox import Outbox
from tests.runtime_support import run_until
from tests.support.waits import await_for


def batch(i: int, n: int) -> Batch:
    return Batch.of_samples("src", [Sample(i, "raw.x", float(k), "", Quality.GOOD, "r1") for k in range(n)], created=i)


async def test_put_waits_while_the_samples_do_not_fit() -> None:
    q = BatchQueue(max_batches=100, max_samples=10)
    await q.put(batch(1, 6))
    second = asyncio.create_task(q.put(batch(2, 6)))  # 12 > 10: waits
    await asyncio.sleep(0.01)
    assert not second.done() and len(q) == 1 and q.samples == 6
    with pytest.raises(QueueFull):
        q.put_nowait(batch(3, 1))  # behind the waiting put, even though one sample would fit
    assert (await q.get()) is not None
    assert await second > 0 and q.samples == 6 and q.full_waits == 1
    got = await q.get()
    assert got is not None and got.created == 2


async def test_a_batch_larger_than_the_bound_enters_an_empty_queue_and_the_end_marker_never_waits() -> None:
    q = BatchQueue(max_batches=1, max_samples=10)
    assert await q.put(batch(1, 50)) == 0.0
    await asyncio.wait_for(q.put(None), 1.0)  # the end marker: room or not
    assert len(q) == 2 and q.samples == 50
    assert (await q.get()) is not None and (await q.get()) is None


async def test_waiters_enter_in_order_and_a_cancelled_put_leaves_nothing() -> None:
    q = BatchQueue(max_batches=2, max_samples=100)
    await q.put(batch(0, 1))
    await q.put(batch(1, 1))
    puts = [asyncio.create_task(q.put(batch(i, 1))) for i in (2, 3, 4)]
    await asyncio.sleep(0.01)
    puts[1].cancel()
    order = []
    for _ in range(4):
        b = await q.get()
        assert b is not None
        order.append(b.created)
        await asyncio.sleep(0.01)
    assert order == [0, 1, 2, 4] and len(q) == 0 and q.samples == 0
    assert puts[1].cancelled()


async def test_a_cancelled_get_takes_nothing() -> None:
    q = BatchQueue(max_batches=10, max_samples=100)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    getter.cancel()
    await asyncio.sleep(0)
    await q.put(batch(1, 1))
    assert len(q) == 1
    got = await asyncio.wait_for(q.get(), 1.0)
    assert got is not None and got.created == 1


class Burst:
    """Emits `count` batches of `size` samples as fast as the queue takes them."""

    name = "burst"

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size, self.emitted = count, size, 0

    async def run(self, ctx: SourceContext) -> None:
        ctx.started()
        for i in range(self.count):
            await ctx.emit(batch(i, self.size))
            self.emitted += 1
        await asyncio.Event().wait()


async def test_a_burst_waits_for_room_and_is_committed_in_bounded_groups_in_order(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.yaml"
    store = tmp_path / "s.db"
    cfg.write_text(f"store: {{path: {store}}}\nhttp: {{enabled: false}}\nruntime: {{queue_samples: 3000}}\n")
    rt = Runtime(load_config(cfg))
    source = Burst(40, 1000)
    rt.sources.append(source)
    rt.pipeline.commit_max_samples = 2500
    groups: list[int] = []
    queued: list[int] = []

    def observe(batches: list[Batch]) -> None:
        groups.append(sum(len(b) for b in batches if b.source == "src"))
        queued.append(rt.queue.samples)

    rt.observers.append(observe)
    waited = QUEUE_WAIT._value.get()
    await run_until(rt, lambda: rt.outbox.stored_samples() == 40_000)
    assert source.emitted == 40 and rt.queue.full_waits > 0 and QUEUE_WAIT._value.get() > waited
    assert max(groups) <= 3000 and sum(groups) == 40_000  # 2,500 passed with the third batch at most
    assert max(queued) <= 3000
    ob = Outbox(tmp_path / "s.db")
    assert [r.batch.created for r in ob.query() if r.batch.source == "src"] == list(range(40))
    ob.close()


async def test_put_now_enters_a_full_queue_ahead_of_waiting_sources() -> None:
    q = BatchQueue(max_batches=1, max_samples=100)
    await q.put(batch(1, 1))
    waiting = asyncio.create_task(q.put(batch(2, 1)))
    await await_for(lambda: q.full_waits == 1, what="the second put waiting for room")
    q.put_now(batch(3, 5))  # past the bound, at once
    assert len(q) == 2 and q.samples == 6 and not waiting.done()
    order = []
    for _ in range(3):
        b = await q.get()
        assert b is not None
        order.append(b.created)
    assert order == [1, 3, 2] and await waiting > 0 and q.samples == 0


async def test_take_now_takes_the_put_now_batches_still_queued_out_of_line() -> None:
    q = BatchQueue(max_batches=3, max_samples=100)
    await q.put(batch(1, 1))
    q.put_now(batch(2, 3))
    await q.put(batch(3, 1))
    q.put_now(batch(4, 2))
    waiting = asyncio.create_task(q.put(batch(5, 1)))  # the queue is over its bound: a source waits
    await await_for(lambda: q.full_waits == 1, what="the put waiting for room")
    taken = q.take_now()
    assert [b.created for b in taken] == [2, 4] and q.samples == 2 and q.take_now() == []
    got = q.get_nowait()
    assert got is not None and got.created == 1
    await asyncio.wait_for(waiting, 10)  # the room they left went to the waiting source
    rest = [q.get_nowait(), q.get_nowait()]
    assert [b.created for b in rest if b is not None] == [3, 5] and q.samples == 0
    q.put_now(batch(6, 1))
    assert q.get_nowait() is not None and q.take_now() == []  # taken by `get`: not taken again
