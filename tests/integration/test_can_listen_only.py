"""Listen-only CAN on real python-can buses: virtual and udp_multicast (software buses, nothing to set)
still receive when opened listen-only; a socketcan source says once at start that its listen-only
mode comes from `ip link`, however often its bus is reopened."""

from __future__ import annotations

from pathlib import Path

import can
import structlog

from gateway.sources.can.reader import BusReader, open_bus
from tests.can_support import make_site
from tests.integration.test_can_runtime import NO_HTTP, QUICK, metric, running, until
from tests.servers import free_port, free_udp_port
from tests.support.waits import await_for

NOTE = "CAN bus not opened listen-only by the gateway"


async def receive(rx: can.BusABC, tx: can.BusABC) -> list[int]:
    reader = BusReader(rx)
    reader.start()
    try:
        for i in range(3):
            tx.send(can.Message(arbitration_id=0x100 + i, data=bytes([i]), is_extended_id=False))
        got: list[int] = []

        async def three() -> bool:
            got.extend(m.arbitration_id for m in await reader.batch(window=0.05, max_frames=10, timeout=1))
            return len(got) >= 3

        await await_for(three, 30, "3 frames received", step=0, detail=lambda: got)
        return got
    finally:
        reader.stop()


async def test_virtual_bus_opened_listen_only_receives() -> None:
    ch = f"listen-only-{free_port()}"
    rx = open_bus("virtual", ch, listen_only=True)
    tx = can.Bus(interface="virtual", channel=ch)
    try:
        assert await receive(rx, tx) == [0x100, 0x101, 0x102]
    finally:
        rx.shutdown()
        tx.shutdown()


async def test_udp_multicast_opened_listen_only_receives_on_loopback() -> None:
    port = free_udp_port()
    rx = open_bus("udp_multicast", "239.74.163.9", port=port, listen_only=True)  # pinned to 127.0.0.1
    tx = open_bus("udp_multicast", "239.74.163.9", port=port)
    try:
        assert await receive(rx, tx) == [0x100, 0x101, 0x102]
    finally:
        rx.shutdown()
        tx.shutdown()


async def test_a_socketcan_source_says_once_where_listen_only_is_set(tmp_path: Path) -> None:
    name = f"nosuch{free_port()}"
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: r3, profile: can-quick, interface: socketcan, channel: {name}, "
        "reconnect_initial: 0.05, reconnect_max: 0.1}\n",
        profiles={"can-quick": QUICK},
        extra=NO_HTTP,
    )
    with structlog.testing.capture_logs() as logs:
        async with running(cfg):
            await until(lambda: metric("bms_gateway_can_reconnects_total", bus=f"socketcan:{name}") >= 3)
    notes = [e for e in logs if e["event"] == NOTE]
    assert len(notes) == 1  # at start, not at every reopen
    assert notes[0]["log_level"] == "info" and notes[0]["bus"] == f"socketcan:{name}"
    assert f"ip link set {name} type can bitrate <bitrate> listen-only on" in notes[0]["note"]


async def test_a_source_that_is_told_not_to_listen_only_says_nothing(tmp_path: Path) -> None:
    name = f"nosuch{free_port()}"
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: r4, profile: can-quick, interface: socketcan, channel: {name}, listen_only: false, "
        "reconnect_initial: 0.05, reconnect_max: 0.1}\n",
        profiles={"can-quick": QUICK},
        extra=NO_HTTP,
    )
    with structlog.testing.capture_logs() as logs:
        async with running(cfg):
            await until(lambda: metric("bms_gateway_can_reconnects_total", bus=f"socketcan:{name}") >= 2)
    assert [e for e in logs if e["event"] == NOTE] == []
    assert any(e["event"] == "CAN source stopped" for e in logs)
