"""The bus reader on real python-can buses: the loop wakes on a socket (no thread), batches, bounded buffer."""

from __future__ import annotations

import can
import pytest

from gateway.sources.can.reader import BusReader, open_bus
from tests.servers import free_port, free_udp_port
from tests.support.waits import await_for


async def test_udp_multicast_is_read_by_the_event_loop_in_batches() -> None:
    port = free_udp_port()
    rx = open_bus("udp_multicast", "239.74.163.7", port=port, filters=[{"can_id": 0x100, "can_mask": 0x7F0}])
    tx = open_bus("udp_multicast", "239.74.163.7", port=port)
    reader = BusReader(rx)
    reader.start()
    try:
        assert reader._thread is None and reader._fd >= 0  # watched by the loop, no receive thread
        for i in range(5):
            tx.send(can.Message(arbitration_id=0x100 + i, data=bytes([i]), is_extended_id=False))
        tx.send(can.Message(arbitration_id=0x200, data=b"\x09", is_extended_id=False))  # not in the filter
        tx.send(can.Message(arbitration_id=0x10F, data=b"\xff", is_extended_id=False))  # the last frame sent
        # A batch ends at max_frames (the window is only an upper bound: generous on a busy machine).
        first = await reader.batch(window=30, max_frames=3, timeout=30)
        assert [m.arbitration_id for m in first] == [0x100, 0x101, 0x102]
        rest: list[int] = []

        async def up_to_the_last() -> bool:  # everything up to the last frame sent, in order
            rest.extend(m.arbitration_id for m in await reader.batch(window=0.05, max_frames=10, timeout=1))
            return 0x10F in rest

        seen = lambda: f"frames after the first batch: {rest}"  # noqa: E731
        await await_for(up_to_the_last, 30, "the last frame sent", step=0, detail=seen)
        # 0x200 was sent before the last frame, on the same socket: had it passed the filter, it would be here.
        assert rest == [0x103, 0x104, 0x10F]
        assert await reader.batch(window=0.05, max_frames=10, timeout=0.1) == []  # nothing more: timeout
    finally:
        reader.stop()
        rx.shutdown()
        tx.shutdown()


async def test_virtual_bus_thread_reader_and_bounded_buffer() -> None:
    ch = f"reader-{free_port()}"
    rx = open_bus("virtual", ch)
    tx = can.Bus(interface="virtual", channel=ch)
    reader = BusReader(rx, max_buffer=10)
    reader.start()
    try:
        assert reader._thread is not None  # no file descriptor: one blocking receive thread
        for i in range(25):
            tx.send(can.Message(arbitration_id=i, data=b"", is_extended_id=False))
        # The receive thread takes every frame: ten are buffered, the other fifteen dropped and counted.
        await await_for(lambda: len(reader.buffer) + reader.dropped == 25, timeout=30)
        got = await reader.batch(window=0.01, max_frames=100, timeout=1)
        assert len(got) == 10 and reader.dropped == 15  # counted, never silent
        assert [m.arbitration_id for m in got] == list(range(10))  # the first ones kept, the newest dropped
    finally:
        reader.stop()
        rx.shutdown()
        tx.shutdown()


async def test_a_receive_error_ends_the_batch_with_the_error() -> None:
    ch = f"reader-err-{free_port()}"
    rx = open_bus("virtual", ch)
    reader = BusReader(rx)
    reader.start()
    try:
        rx.shutdown()  # the bus goes away under the reader: recv raises
        with pytest.raises(can.CanError):
            await reader.batch(window=0.01, max_frames=10, timeout=5)
    finally:
        reader.stop()
