"""The source → pipeline queue, bounded in batches and in samples.

A batch counts as its samples plus its records (`len(batch)`). `put` waits while the queue is full
(backpressure: a source that produces faster than the gateway stores waits, and nothing is dropped);
waiting sources enter in the order they came. An empty queue takes any batch, however large, so a
batch bigger than the bound never blocks for good. `None` (the end marker) takes no room.

`put_now` queues at once, past the bound and ahead of waiting sources: for the gateway's own record
batches (alarm transitions), which must reach the outbox in the order they were journaled. They are
few and small (bounded by the alarms in view), so the bound they pass is not the one that matters.
`take_now` takes those still queued out of line: the pipeline commits them with the group it is about
to process, ahead of what that processing journals.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from gateway.model import Batch


class QueueFull(Exception):
    """`put_nowait` on a full queue."""


class BatchQueue:
    def __init__(self, max_batches: int, max_samples: int) -> None:
        self.max_batches = max_batches
        self.max_samples = max_samples
        self.samples = 0  # samples (and records) of the queued batches
        self.waited = 0.0  # seconds producers spent waiting for room, in all
        self.full_waits = 0  # puts that had to wait
        self._items: deque[tuple[Batch | None, int]] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._now: set[int] = set()  # ids of the `put_now` batches still queued

    def __len__(self) -> int:
        return len(self._items)

    def has_room(self, size: int) -> bool:
        if not self._items:
            return True
        return len(self._items) < self.max_batches and self.samples + size <= self.max_samples

    def full(self) -> bool:
        return not self.has_room(1)

    def put_nowait(self, item: Batch | None) -> None:
        size = 0 if item is None else len(item)
        if item is not None and (self._putters or not self.has_room(size)):
            raise QueueFull
        self._append(item, size)

    def put_now(self, item: Batch) -> None:
        """Queue `item` at once, whether there is room or not (see the module's text)."""
        self._now.add(id(item))
        self._append(item, len(item))

    def take_now(self) -> list[Batch]:
        """The `put_now` batches still queued, in their order, taken out of the queue."""
        if not self._now:
            return []
        now, self._now = self._now, set()
        taken: list[Batch] = []
        kept: deque[tuple[Batch | None, int]] = deque()
        for item, size in self._items:
            if item is not None and id(item) in now:
                taken.append(item)
                self.samples -= size
            else:
                kept.append((item, size))
        self._items = kept
        self._wake_putter()
        return taken

    async def put(self, item: Batch | None) -> float:
        """Queue `item`, waiting (behind earlier waiters) while there is no room; return the seconds waited.
        The end marker never waits."""
        size = 0 if item is None else len(item)
        waited = 0.0
        if item is not None and (self._putters or not self.has_room(size)):
            self.full_waits += 1
            t0 = time.monotonic()
            try:
                await self._wait_for_room(size)
            finally:
                waited = time.monotonic() - t0
                self.waited += waited
        self._append(item, size)
        self._wake_putter()  # room may be left for the next waiter
        return waited

    async def _wait_for_room(self, size: int) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._putters.append(fut)
        try:
            while True:
                await fut
                if self.has_room(size):
                    return
                fut = loop.create_future()  # woken, but the room went to nobody yet: first in line again
                self._putters.appendleft(fut)
        except BaseException:
            if fut in self._putters:
                self._putters.remove(fut)
            elif fut.done() and not fut.cancelled():
                self._wake_putter()  # it was our turn: pass it on
            raise

    def _append(self, item: Batch | None, size: int) -> None:
        self._items.append((item, size))
        self.samples += size
        self._wake_getter()

    def _wake_putter(self) -> None:
        while self._putters:
            if not self.has_room(1):
                return
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return

    def get_nowait(self) -> Batch | None:
        if not self._items:
            raise asyncio.QueueEmpty
        item, size = self._items.popleft()
        self.samples -= size
        if self._now and item is not None:
            self._now.discard(id(item))
        self._wake_putter()
        return item

    async def get(self) -> Batch | None:
        """The oldest item, waiting for one; a cancelled get takes nothing."""
        while not self._items:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except BaseException:
                if fut in self._getters:
                    self._getters.remove(fut)
                elif fut.done() and not fut.cancelled() and self._items:
                    self._wake_getter()  # it was our turn: pass it on
                raise
        return self.get_nowait()

    def _wake_getter(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return
