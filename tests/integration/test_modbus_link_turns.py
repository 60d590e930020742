"""A read waits for its reply's future directly under a timeout scope: pymodbus's own `execute` awaited
it through `asyncio.wait_for`, which on Python 3.11 adds a waiter future and two loop turns to every
request (each as long as everything else ready in the loop: the Modbus cycle's span and its start
jitter on a busy gateway). Real peer: a Modbus TCP server on loopback."""

from __future__ import annotations

import asyncio

import pytest

from gateway.runtime.backoff import Backoff
from gateway.sources.modbus.link import Link
from tests.modbus_faulty import FaultyServer


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
