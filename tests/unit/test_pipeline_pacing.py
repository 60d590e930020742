"""The group commit is paced, not delayed: a batch after a quiet spell is committed at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.runtime.batchqueue import BatchQueue
from gateway.runtime.pipeline import Pipeline
from gateway.store.outbox import Outbox
from tests.delivery_support import sample_batch
from tests.support.waits import await_for


async def test_a_batch_after_a_quiet_spell_is_committed_at_once(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    pipeline = Pipeline(BatchQueue(100, 100_000), ob, [])
    task = asyncio.create_task(pipeline.run(commit_interval=600))
    try:
        await pipeline.emit(sample_batch("r1", 1, 10))
        await await_for(lambda: ob.last_seq() == 1)  # not after the 600 s interval
        await pipeline.emit(sample_batch("r1", 2, 10))
        await pipeline.emit(sample_batch("r1", 3, 10))
        await await_for(lambda: len(pipeline.queue) == 0)  # both taken into the next group
        assert ob.last_seq() == 1  # which waits for the interval
        await pipeline.queue.put(None)  # the end marker: what is gathered is committed
        await await_for(task.done)
        assert ob.last_seq() == 3
    finally:
        task.cancel()
        ob.close()
