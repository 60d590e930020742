"""The CAN source in a full Runtime on in-process python-can `virtual` buses: replay, supervision, hygiene."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import can

from gateway.config.settings import load_config
from gateway.metrics import REGISTRY
from gateway.runtime.core import Runtime
from gateway.sources.can.capture import read_capture
from gateway.tools.canreplay import frames_of, replay
from tests.can_support import (
    BMS_DBC,
    BMS_LOG,
    make_site,
    offline_samples,
    project_plan,
)
from tests.support.store import samples_by_quantity as stored_samples
from tests.support.store import statuses as stored_statuses
from tests.support.waits import await_for

_n = itertools.count()
NO_HTTP = "http:\n  enabled: false\n"


def channel() -> str:
    return f"can-it-{time.monotonic_ns()}-{next(_n)}"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def until(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    await await_for(cond, timeout, step=0.02)


@asynccontextmanager
async def running(cfg: Path) -> AsyncIterator[Runtime]:
    rt = Runtime(load_config(cfg))
    ready = asyncio.Event()
    rt.on_ready.append(ready.set)
    task = asyncio.create_task(rt.run())
    try:
        await asyncio.wait_for(ready.wait(), 60)
        yield rt
    finally:
        rt.request_stop("test")
        assert await asyncio.wait_for(task, 60) == 0


async def test_replayed_capture_every_frame_decoded_into_the_outbox(tmp_path: Path) -> None:
    ch = channel()
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: pack, profile: can-redpesk-bms, interface: virtual, channel: {ch}}}\n",
        extra=NO_HTTP,
    )
    frames = frames_of(read_capture(BMS_LOG))
    bus_label = f"virtual:{ch}"
    async with running(cfg):
        tx = can.Bus(interface="virtual", channel=ch)
        try:
            stats = await replay(frames, tx.send, rate=None)
        finally:
            tx.shutdown()
        assert stats.sent == 15796
        await until(lambda: metric("bms_gateway_can_decoded_total", bus=bus_label, rack="pack") >= 15796)
    assert metric("bms_gateway_can_frames_total", bus=bus_label) == 15796
    assert metric("bms_gateway_can_frames_dropped_total", bus=bus_label) == 0
    expected = offline_samples(project_plan("can-redpesk-bms", BMS_DBC, rack="pack"), frames)
    stored = stored_samples(tmp_path / "store.db", rack="pack")
    fresh = Counter({k: n for k, n in stored.items() if k[2] in ("good", "out_of_range")})
    assert fresh == expected  # every sample of every frame, value for value, nothing extra
    assert sum(expected.values()) > 15796


QUICK = """\
protocol: can
dbc: can-example-rack.dbc
stale_after_cycles: 2
messages:
  RackStatus: {cycle_time: 0.1}
  RackLimits: {cycle_time: 0.1}
points:
  - {signal: SoC, quantity: soc}
  - {signal: BmsState, quantity: bms_state}
  - {signal: ChargeCurrentLimit, quantity: charge_current_limit}
"""


def example_frame(name: str, **values: float) -> can.Message:
    import cantools

    db = cantools.database.load_file(Path(__file__).resolve().parents[2] / "dbc" / "can-example-rack.dbc")
    msg = db.get_message_by_name(name)
    full: dict[str, float] = {s.name: 0 for s in msg.signals}
    full.update(values)
    return can.Message(arbitration_id=msg.frame_id, data=msg.encode(full), is_extended_id=False)


@asynccontextmanager
async def feeding(bus: can.BusABC) -> AsyncIterator[list[can.Message]]:
    """Sends the frames of the yielded list every 30 ms (change its contents to change what is sent)."""
    frames: list[can.Message] = []

    async def send() -> None:
        while True:
            for f in list(frames):
                bus.send(f)
            await asyncio.sleep(0.03)

    task = asyncio.create_task(send())
    try:
        yield frames
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_stale_after_missed_cycles_then_comm_loss_then_back(tmp_path: Path) -> None:
    ch = channel()
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: r1, profile: can-quick, interface: virtual, channel: {ch}}}\n",
        profiles={"can-quick": QUICK},
        extra=NO_HTTP,
    )
    status = example_frame("RackStatus", SoC=60.5, BmsState=2)
    limits = example_frame("RackLimits", ChargeCurrentLimit=140.0)
    store = tmp_path / "store.db"

    def last_status() -> str | None:
        statuses = stored_statuses(store)
        return statuses[-1][1] if statuses else None

    tx = can.Bus(interface="virtual", channel=ch)
    try:
        # Each phase lasts until the gateway shows its effect (a busy machine may take longer).
        async with feeding(tx) as frames:
            async with running(cfg):
                frames[:] = [status, limits]
                await until(lambda: stored_samples(store, rack="r1")[("soc", 60.5, "good", None, None)] >= 10)
                frames[:] = [status]  # RackLimits stops: its values go stale, the rack stays online
                await until(lambda: last_status() == "degraded")
                frames[:] = []  # all stopped
                await until(lambda: last_status() == "offline")
                frames[:] = [status, limits]  # back
                await until(lambda: last_status() == "online")
    finally:
        tx.shutdown()
    stored = stored_samples(store, rack="r1")
    assert stored[("charge_current_limit", 140.0, "stale", None, None)] >= 1
    assert stored[("charge_current_limit", 140.0, "comm_loss", None, None)] >= 1
    assert stored[("soc", 60.5, "comm_loss", None, None)] >= 1
    assert stored[("bms_state", "run", "comm_loss", None, None)] >= 1
    assert stored[("soc", 60.5, "good", None, None)] >= 10
    # the order of events: stale limits while status is fresh, then offline, then online
    ob_statuses = [s for d, s in stored_statuses(store) if d == "r1"]
    offline = len(ob_statuses) - 1 - ob_statuses[::-1].index("offline")
    assert "degraded" in ob_statuses[:offline]  # limits stale, then all
    assert "online" in ob_statuses[offline:]  # then back
    assert metric("bms_gateway_can_stale_total", rack="r1", message="RackLimits") >= 1


async def test_short_unknown_and_error_frames_counted_and_flagged(tmp_path: Path) -> None:
    ch = channel()
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: r2, profile: can-quick, interface: virtual, channel: {ch}, accept_all: true}}\n",
        profiles={"can-quick": QUICK},
        extra=NO_HTTP,
    )
    bus_label = f"virtual:{ch}"
    good = example_frame("RackStatus", SoC=50.0, BmsState=1)
    short = can.Message(arbitration_id=0x100, data=bytes(good.data[:3]), is_extended_id=False)
    unknown = can.Message(arbitration_id=0x555, data=bytes(8), is_extended_id=False)
    error = can.Message(arbitration_id=0x20000080, is_error_frame=True, data=bytes(8), is_extended_id=True)
    async with running(cfg):
        tx = can.Bus(interface="virtual", channel=ch)
        try:
            for f in (good, short, short, unknown, unknown, unknown, error, good):
                tx.send(f)
            await until(lambda: metric("bms_gateway_can_frames_total", bus=bus_label) >= 8)
            await until(lambda: metric("bms_gateway_can_decoded_total", bus=bus_label, rack="r2") >= 4)
        finally:
            tx.shutdown()
    assert metric("bms_gateway_can_errors_total", bus=bus_label, id="0x100", reason="short_frame") == 2
    assert metric("bms_gateway_can_unknown_total", bus=bus_label, id="0x555") == 3
    assert metric("bms_gateway_can_errors_total", bus=bus_label, id="0x555", reason="unknown_id") == 3
    assert metric("bms_gateway_can_errors_total", bus=bus_label, id="0x20000080", reason="error_frame") == 1
    stored = stored_samples(tmp_path / "store.db", rack="r2")
    assert stored[("soc", 50.0, "good", None, None)] == 2
    assert stored[("soc", None, "bad", None, None)] == 2  # the short frames: flagged, never a wrong value
    assert not [k for k in stored if k[0] == "soc" and k[2] == "good" and k[1] != 50.0]


async def test_two_racks_on_one_bus_with_id_offsets(tmp_path: Path) -> None:
    ch = channel()
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: a, profile: can-quick, interface: virtual, channel: {ch}}}\n"
        f"  - {{type: can, name: b, profile: can-quick, interface: virtual, channel: {ch}, id_offset: 0x40}}\n",
        profiles={"can-quick": QUICK},
        extra=NO_HTTP,
    )
    fa = example_frame("RackStatus", SoC=10.0)
    fb = example_frame("RackStatus", SoC=20.0)
    fb.arbitration_id += 0x40
    other = can.Message(arbitration_id=0x100 + 0x80, data=bytes(fa.data), is_extended_id=False)  # filtered
    async with running(cfg) as rt:
        assert [s.name for s in rt.sources] == [f"can:virtual:{ch}"]
        tx = can.Bus(interface="virtual", channel=ch)
        try:
            for f in (fa, fb, other, fa, fb):
                tx.send(f)
            await until(lambda: metric("bms_gateway_can_decoded_total", bus=f"virtual:{ch}", rack="b") >= 2)
        finally:
            tx.shutdown()
    assert stored_samples(tmp_path / "store.db", rack="a")[("soc", 10.0, "good", None, None)] == 2
    assert stored_samples(tmp_path / "store.db", rack="b")[("soc", 20.0, "good", None, None)] == 2
    assert metric("bms_gateway_can_frames_total", bus=f"virtual:{ch}") == 4  # 0x180 dropped by the filters


async def test_a_bus_that_cannot_open_is_offline_and_retried_never_a_crash(tmp_path: Path) -> None:
    name = f"nosuch{next(_n)}"
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: r3, profile: can-quick, interface: socketcan, channel: {name}, "
        "reconnect_initial: 0.05, reconnect_max: 0.1}\n",
        profiles={"can-quick": QUICK},
        extra=NO_HTTP,
    )
    async with running(cfg):
        await until(lambda: metric("bms_gateway_can_reconnects_total", bus=f"socketcan:{name}") >= 3)
    assert stored_statuses(tmp_path / "store.db") == [("r3", "offline")]


async def test_bus_off_error_frame_takes_the_rack_offline_until_frames_return(tmp_path: Path) -> None:
    ch = channel()
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: r4, profile: can-quick, interface: virtual, channel: {ch}, accept_all: true}}\n",
        profiles={"can-quick": QUICK.replace("stale_after_cycles: 2", "stale_after_cycles: 50")},
        extra=NO_HTTP,
    )
    good = example_frame("RackStatus", SoC=70.0)
    bus_off = can.Message(arbitration_id=0x20000040, is_error_frame=True, data=bytes(8), is_extended_id=True)
    store = tmp_path / "store.db"
    async with running(cfg):
        tx = can.Bus(interface="virtual", channel=ch)
        try:
            tx.send(good)
            await until(lambda: ("r4", "online") in stored_statuses(store))
            tx.send(bus_off)
            await until(lambda: stored_statuses(store)[-1] == ("r4", "offline"))
            tx.send(good)
            await until(lambda: stored_statuses(store)[-1] == ("r4", "online"))
        finally:
            tx.shutdown()
    assert stored_statuses(store)[-3:] == [("r4", "online"), ("r4", "offline"), ("r4", "online")]


async def test_frames_received_before_a_stop_are_stored(tmp_path: Path) -> None:
    ch = channel()
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: r5, profile: can-quick, interface: virtual, channel: {ch}, "
        "batch_window: 5.0, batch_max_frames: 100000}\n",  # frames wait in the receive buffer
        profiles={"can-quick": QUICK.replace("stale_after_cycles: 2", "stale_after_cycles: 500")},
        extra=NO_HTTP,
    )
    good = example_frame("RackStatus", SoC=42.0)
    async with running(cfg) as rt:
        source = rt.sources[0]
        tx = can.Bus(interface="virtual", channel=ch)
        try:
            sent = time.monotonic()
            for _ in range(100):
                tx.send(good)
            # Received: the source's receive thread has taken every frame off its virtual bus's queue.
            await until(lambda: source.bus.queue.empty())  # type: ignore[attr-defined]
            stored_now = stored_samples(tmp_path / "store.db", rack="r5")[("soc", 42.0, "good", None, None)]
            if time.monotonic() - sent < 5.0:  # the batch window is still open: nothing handed on yet
                assert stored_now == 0
        finally:
            tx.shutdown()
    assert stored_samples(tmp_path / "store.db", rack="r5")[("soc", 42.0, "good", None, None)] == 100


J1939_DBC = """VERSION ""
BO_ 2566913790 BatteryInfo: 8 BMS
 SG_ Soc : 0|8@1+ (0.4,0) [0|100] "%" X
 SG_ PackVoltage : 8|16@1+ (0.05,0) [0|3200] "V" X
"""
J1939_PROFILE = """protocol: can
dbc: j1939.dbc
j1939: true
points:
  - {signal: Soc, quantity: soc}
  - {signal: PackVoltage, quantity: rack_voltage}
"""


async def test_j1939_racks_match_by_pgn_and_source_address(tmp_path: Path) -> None:
    ch = channel()
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: sa21, profile: can-j, interface: virtual, channel: {ch}, source_address: 0x21}}\n"
        f"  - {{type: can, name: sa22, profile: can-j, interface: virtual, channel: {ch}, source_address: 0x22}}\n",
        profiles={"can-j": J1939_PROFILE},
        extra=NO_HTTP,
    )
    (tmp_path / "dbc" / "j1939.dbc").write_text(J1939_DBC)
    data = bytes([100, 0x40, 0x1F]) + bytes(5)  # SoC 40 %, 8000 × 0.05 = 400 V
    frames = [
        can.Message(arbitration_id=0x18FFFE21, data=data),  # priority 6, SA 0x21
        can.Message(arbitration_id=0x0CFFFE21, data=data),  # priority 3, same PGN and SA
        can.Message(arbitration_id=0x18FFFE22, data=bytes([50]) + bytes(7)),  # SA 0x22
        can.Message(arbitration_id=0x18FFFE33, data=data),  # nobody's SA: filtered out
        can.Message(arbitration_id=0x18FFFD21, data=data),  # another PGN: filtered out
    ]
    async with running(cfg):
        tx = can.Bus(interface="virtual", channel=ch)
        try:
            for f in frames:
                tx.send(f)
            await until(lambda: metric("bms_gateway_can_frames_total", bus=f"virtual:{ch}") >= 3)
            await until(lambda: metric("bms_gateway_can_decoded_total", bus=f"virtual:{ch}", rack="sa22") >= 1)
        finally:
            tx.shutdown()
    a = stored_samples(tmp_path / "store.db", rack="sa21")
    assert a[("soc", 40.0, "good", None, None)] == 2 and a[("rack_voltage", 400.0, "good", None, None)] == 2
    assert stored_samples(tmp_path / "store.db", rack="sa22")[("soc", 20.0, "good", None, None)] == 1
    assert metric("bms_gateway_can_frames_total", bus=f"virtual:{ch}") == 3


FD_DBC = 'VERSION ""\nBO_ 512 CellBlock: 64 BMS\n' + "".join(
    f' SG_ V{i} : {16 * i}|16@1+ (1,0) [0|5000] "mV" X\n' for i in range(32)
)
FD_PROFILE = """protocol: can
dbc: fd.dbc
points:
  - {signal: "V{i}", quantity: cell_voltage, array: {count: 32, per_module: 16}}
"""


async def test_can_fd_frames_with_64_bytes(tmp_path: Path) -> None:
    ch = channel()
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: fd, profile: can-fd, interface: virtual, channel: {ch}, fd: true}}\n",
        profiles={"can-fd": FD_PROFILE},
        extra=NO_HTTP,
    )
    (tmp_path / "dbc" / "fd.dbc").write_text(FD_DBC)
    data = b"".join((3000 + i).to_bytes(2, "little") for i in range(32))
    async with running(cfg):
        tx = can.Bus(interface="virtual", channel=ch)
        try:
            tx.send(can.Message(arbitration_id=512, data=data, is_fd=True, is_extended_id=False))
            await until(lambda: metric("bms_gateway_can_decoded_total", bus=f"virtual:{ch}", rack="fd") >= 1)
        finally:
            tx.shutdown()
    stored = stored_samples(tmp_path / "store.db", rack="fd")
    assert stored[("cell_voltage", 3.0, "good", 1, 1)] == 1
    assert stored[("cell_voltage", 3.031, "good", 2, 16)] == 1
    assert sum(n for k, n in stored.items() if k[0] == "cell_voltage" and k[2] == "good") == 32


async def test_frames_beyond_the_receive_buffer_are_counted_and_logged(tmp_path: Path) -> None:
    ch = channel()
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: r6, profile: can-quick, interface: virtual, channel: {ch}, "
        "batch_window: 1.0, batch_max_frames: 100000, receive_buffer: 10}\n",
        profiles={"can-quick": QUICK.replace("stale_after_cycles: 2", "stale_after_cycles: 500")},
        extra=NO_HTTP,
    )
    good = example_frame("RackStatus", SoC=33.0)
    label = f"virtual:{ch}"
    async with running(cfg):
        tx = can.Bus(interface="virtual", channel=ch)
        try:
            for _ in range(25):
                tx.send(good)
            await until(lambda: metric("bms_gateway_can_frames_dropped_total", bus=label) >= 15)
            await until(lambda: metric("bms_gateway_can_decoded_total", bus=label, rack="r6") >= 10)
        finally:
            tx.shutdown()
    assert metric("bms_gateway_can_frames_dropped_total", bus=label) == 15
    assert stored_samples(tmp_path / "store.db", rack="r6")[("soc", 33.0, "good", None, None)] == 10  # 10 + 15 = 25
