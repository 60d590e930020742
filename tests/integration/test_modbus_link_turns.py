"""A read waits for its reply's future directly under a timeout scope: pymodbus's own `execute` awaited
it through `asyncio.wait_for`, which on Python 3.11 adds a waiter future and two loop turns to every
request (each as long as everything else ready in the loop: the Modbus cycle's span and its start
jitter on a busy gateway). Real peer: a Modbus TCP server on loopback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.runtime.backoff import Backoff
from gateway.sources.modbus.deadline import ReadDeadline
from gateway.sources.modbus.link import Link
from tests.modbus_faulty import FaultyServer
from tests.support.waits import await_for


async def test_a_read_awaits_its_reply_without_wait_for(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FaultyServer()
    await server.start()
    link = Link("127.0.0.1", server.port, 5.0, 0.0, Backoff(0.1, 1.0))
    try:
        assert await link.connect()

        def no_wait_for(*_: object, **__: object) -> None:
            raise AssertionError("a read went through asyncio.wait_for")

        monkeypatch.setattr(asyncio, "wait_for", no_wait_for)
        for fc in (3, 4):
            rr = await link.read(1, fc, 0, 10, 5.0)
            assert rr is not None and not rr.isError() and len(rr.registers) == 10
        assert link.sent == 2 and link.up is True
    finally:
        link.close()
        await server.stop()


class CancelOnReply(ReadDeadline):
    """A read deadline that also cancels `task` from a callback of the reply's future, registered when
    the read arms its deadline: before the read awaits the future, so before the task's own wake-up."""

    __slots__ = ("task",)

    def __init__(self) -> None:
        super().__init__()
        self.task: asyncio.Task[object] | None = None

    def arm(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], deadline: float) -> None:
        future.add_done_callback(self._cancel)
        super().arm(loop, future, deadline)

    def _cancel(self, future: asyncio.Future[Any]) -> None:
        if self.task is not None and not future.cancelled():
            self.task.cancel()


async def test_a_read_cancelled_as_its_reply_arrives_is_cancelled() -> None:
    """A cancel in the loop turn the reply arrives (after the future has its result, before the task
    resumes) ends the read with CancelledError: awaited directly, the future cannot swallow it (as
    `asyncio.wait_for` did on 3.11), so the poller needs no check of its own after each read."""
    server = FaultyServer()
    await server.start()
    link = Link("127.0.0.1", server.port, 5.0, 0.0, Backoff(0.1, 1.0))
    try:
        assert await link.connect()
        link.deadline = deadline = CancelOnReply()
        deadline.task = task = asyncio.create_task(link.read(1, 3, 0, 10, 5.0))
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled() and link.sent == 1
        deadline.task = None
        rr = await link.read(1, 3, 0, 10, 5.0)  # the link reads on
        assert rr is not None and len(rr.registers) == 10
    finally:
        link.close()
        await server.stop()


async def test_a_read_cancelled_before_its_reply_forgets_it(caplog: pytest.LogCaptureFixture) -> None:
    """A read cancelled while its reply is on the way (a stop, a reload) is forgotten at once: the reply
    that comes later answers nothing, is dropped without pymodbus's "ERROR: received pdu without a
    corresponding request" line, and the next read gets its own answer."""
    server = FaultyServer()
    await server.start()
    server.hold = asyncio.Event()
    link = Link("127.0.0.1", server.port, 5.0, 0.0, Backoff(0.1, 1.0))
    try:
        assert await link.connect()
        assert link.client is not None
        ctx = link.client.ctx
        received: list[bytes] = []
        take = ctx.callback_data

        def counted(data: bytes, addr: tuple[str, int] | None = None) -> int:
            received.append(data)
            return take(data, addr)

        ctx.callback_data = counted  # type: ignore[method-assign]
        task = asyncio.create_task(link.read(1, 3, 0, 10, 5.0))
        await await_for(lambda: server.requests == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with caplog.at_level(logging.DEBUG, logger="pymodbus"):
            server.hold.set()  # the cancelled read's answer comes now, before any other read
            await await_for(lambda: received)
            rr = await link.read(1, 4, 0, 7, 5.0)
        assert rr is not None and not rr.isError() and rr.function_code == 4 and len(rr.registers) == 7
        assert not [r for r in caplog.records if "without a corresponding request" in r.getMessage()]
    finally:
        link.close()
        await server.stop()
