"""Register-read responses decoded by `wire` against pymodbus's own decoder, and an endpoint that stops
when pymodbus swallows its cancellation."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from gateway.model import Batch
from gateway.sources.base import SourceContext
from gateway.sources.modbus.poller import ModbusEndpoint
from gateway.sources.modbus.wire import unpack_registers
from tests.support.waits import await_for
from tests.unit.test_modbus_cycle import device

# -- response registers ------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 0xFFFF), max_size=125), st.binary(max_size=3))
def test_registers_are_those_pymodbus_decodes(regs: list[int], tail: bytes) -> None:
    data = bytes([2 * len(regs)]) + struct.pack(f">{len(regs)}H", *regs) + tail
    theirs = ReadHoldingRegistersResponse()
    theirs.decode(data)
    words = unpack_registers(data)
    assert words.tolist() == theirs.registers == regs and words.dtype.itemsize == 2  # an array, no int objects


@given(st.binary(min_size=1, max_size=12))
def test_any_byte_count_is_taken_like_pymodbus(data: bytes) -> None:
    theirs = ReadHoldingRegistersResponse()
    try:
        theirs.decode(data)
    except ModbusIOException:
        with pytest.raises(ValueError):
            unpack_registers(data)
    else:
        assert unpack_registers(data).tolist() == theirs.registers


# -- cancellation -------------------------------------------------------------------------------------


class AnsweringContext:
    """A transaction manager that answers every request in the next loop turn (what `Link.read` uses)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.recv_buffer = b""
        self.response_future: asyncio.Future[Any] | None = None
        self.reads = 0

    def getNextTID(self) -> int:  # pymodbus's name
        return 1

    def pdu_send(self, pdu: Any) -> None:
        self.reads += 1
        future = self.response_future
        assert future is not None
        asyncio.get_running_loop().call_soon(future.set_result, _Registers([0] * pdu.count))


class SwallowingClient:
    """Answers every read at once, so the task is cancelled in a loop turn in which its answer is there
    too (pymodbus's `wait_for` on Python 3.11 returned the answer then instead of raising)."""

    connected = True

    def __init__(self) -> None:
        self.ctx = AnsweringContext()

    def close(self) -> None:
        pass


class _Registers:
    def __init__(self, regs: list[int]) -> None:
        self.registers = regs
        self.bits = [False] * len(regs)

    def isError(self) -> bool:
        return False


async def test_a_cancelled_endpoint_stops_when_a_read_swallows_the_cancellation(tmp_path: Path) -> None:
    dev = device(tmp_path, interval=0.001)
    endpoint = ModbusEndpoint("127.0.0.1", 1, [dev])
    client = SwallowingClient()

    async def connect() -> bool:
        endpoint.link.client = client  # type: ignore[assignment]
        return True

    endpoint.link.connect = connect  # type: ignore[method-assign]
    emitted: list[Batch] = []

    async def emit(batch: Batch) -> None:
        emitted.append(batch)

    task = asyncio.create_task(endpoint.run(SourceContext(emit, lambda: None, "t")))
    await await_for(lambda: len(emitted) >= 3, 60, "3 batches", step=0.001)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert done, "the endpoint kept polling after it was cancelled"
    assert task.cancelled()


def test_the_records_made_for_every_read_are_cheap_to_make() -> None:
    """A read makes its request's guard record, the reply's frame, the outcome and the decoded columns:
    tuples or plain slotted dataclasses, not frozen dataclasses (whose __init__ sets each field through
    object.__setattr__: three times as long)."""
    from dataclasses import fields, is_dataclass

    from gateway.sources.modbus.decode import Decoded
    from gateway.sources.modbus.device import Outcome
    from gateway.sources.modbus.replies import Frame, Request

    assert all(issubclass(t, tuple) for t in (Outcome, Frame, Decoded))
    assert is_dataclass(Request) and not getattr(Request, "__dataclass_params__").frozen  # noqa: B009
    assert [f.name for f in fields(Request)] == ["unit_id", "function_code", "address", "count"]
