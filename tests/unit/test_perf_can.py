"""The CAN fast paths against their references: the plan's cantools path, python-can's udp_multicast recv."""

from __future__ import annotations

import asyncio
import random

import can

from bench.micro_can_alarms import example_frames
from gateway.config.profiles import load_profile
from gateway.sources.can.dbcload import load_dbc
from gateway.sources.can.plan import RackPlan, compile_rack
from gateway.sources.can.reader import BusReader, open_bus
from tests.can_golden import assert_golden
from tests.can_support import BMS_DBC, DBC_DIR, FOX_DBC, FOX_TRC, log_frames, profile_path
from tests.servers import free_udp_port
from tests.support.waits import await_for


def _plan(profile: str, dbc: object) -> RackPlan:
    prof = load_profile(profile_path(profile))
    db = load_dbc(dbc, lenient=prof.lenient).db  # type: ignore[attr-defined,arg-type]
    plan = compile_rack(prof, db, rack="r1")  # type: ignore[arg-type]
    assert isinstance(plan, RackPlan)
    return plan


def _damaged(frames: list[tuple[int, bool, bytes]], seed: int) -> list[tuple[int, bool, bytes]]:
    rnd = random.Random(seed)
    out = []
    for aid, ext, data in frames:
        out.append((aid, ext, bytes(rnd.randrange(256) for _ in data)))  # any bits: unknown muxes, out of range
        out.append((aid, ext, data[: rnd.randrange(len(data) + 1)]))  # short
        out.append((aid, ext, data + b"\x55\xaa"))  # excess
    return out


def test_the_decoder_agrees_with_cantools_over_the_bms_dump_whole_and_damaged() -> None:
    plan = _plan("can-redpesk-bms", BMS_DBC)
    frames = [(m.arbitration_id, m.is_extended_id, bytes(m.data)) for m in log_frames()]
    assert_golden(plan, frames)
    assert_golden(plan, _damaged(frames[:2000], 1))


def test_the_decoder_agrees_with_cantools_over_the_foxbms_trace_and_the_example_rack() -> None:
    plan = _plan("can-foxbms", FOX_DBC)
    frames = [(m.arbitration_id, m.is_extended_id, bytes(m.data)) for m in log_frames(FOX_TRC)]
    assert_golden(plan, frames)
    assert_golden(plan, _damaged(frames, 2))
    plan = _plan("can-example-rack", DBC_DIR / "can-example-rack.dbc")
    frames = example_frames(load_dbc(DBC_DIR / "can-example-rack.dbc").db)
    assert_golden(plan, frames)
    assert_golden(plan, _damaged(frames, 3))


def _passing(sent: list[can.Message]) -> int:
    """Frames the reader's filter lets through (the bus takes CAN FD frames too)."""
    return sum(1 for m in sent if m.arbitration_id & 0x700 == 0x100)


async def _receive(fast: bool, port: int, sent: list[can.Message]) -> tuple[list[tuple[object, ...]], int]:
    group = "239.74.163.9"
    rx = open_bus("udp_multicast", group, port=port, filters=[{"can_id": 0x100, "can_mask": 0x700}])
    tx = open_bus("udp_multicast", group, port=port)
    reader = BusReader(rx, max_buffer=150, fast_udp=fast)
    reader.start()
    try:
        for m in sent:
            tx.send(m)
        # Nothing is taken out until every frame has been received (the last one sent passes the filter
        # and is dropped, the buffer being full): on a busy machine the kernel may hand the frames over in
        # several parts, and taking some out in between would change how many are dropped.
        passing = _passing(sent)
        await await_for(
            lambda: len(reader.buffer) + reader.dropped >= passing,
            30,
            f"{passing} frames received",
            step=0.01,
            detail=lambda: f"{len(reader.buffer) + reader.dropped} received",
        )
        got: list[can.Message] = []
        while True:
            batch = await reader.batch(0.05, 1000, 0.5)
            if not batch:
                break
            got.extend(batch)
        return [
            (m.arbitration_id, m.is_extended_id, bytes(m.data), m.dlc, m.is_fd, m.is_remote_frame, m.timestamp > 0)
            for m in got
        ], reader.dropped
    finally:
        reader.stop()
        rx.shutdown()
        tx.shutdown()


def test_udp_fast_drain_reads_what_python_can_reads_filters_and_drops_included() -> None:
    sent = [
        can.Message(arbitration_id=0x100 + (i % 0x200), data=bytes([i % 256] * (i % 9)), is_extended_id=False)
        for i in range(400)
    ]
    sent.append(can.Message(arbitration_id=0x101, data=bytes(range(12)), is_fd=True))
    sent.append(can.Message(arbitration_id=0x1FF, data=b"end", is_extended_id=False))  # the last one sent
    fast = asyncio.run(_receive(True, free_udp_port(), sent))
    slow = asyncio.run(_receive(False, free_udp_port(), sent))
    assert fast == slow
    assert len(fast[0]) == 150 and fast[1] == _passing(sent) - 150  # the first 150 kept, the rest counted


def test_udp_fast_drain_fails_the_bus_on_a_datagram_python_can_refuses() -> None:
    import socket

    from can.interfaces.udp_multicast.utils import pack_message

    async def run(fast: bool, port: int) -> str:
        group = "239.74.163.9"
        rx = open_bus("udp_multicast", group, port=port)
        reader = BusReader(rx, fast_udp=fast)
        reader.start()
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        bad = can.Message(arbitration_id=0x900, data=b"\x01", is_extended_id=False)  # 11-bit id out of range
        tx.sendto(pack_message(bad), (group, port))
        try:
            await reader.batch(0.01, 10, 1.0)
        except can.CanError as exc:
            return type(exc).__name__
        finally:
            reader.stop()
            rx.shutdown()
            tx.close()
        return "no error"

    assert asyncio.run(run(True, free_udp_port())) == asyncio.run(run(False, free_udp_port())) == "CanOperationError"
