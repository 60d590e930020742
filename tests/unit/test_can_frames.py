"""Frames as the reader hands them on, and the source's direct route against the plan's general path."""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import can
import pytest
from can.interfaces.udp_multicast.utils import pack_message

from bench.micro_can_alarms import example_frames
from gateway.model import DeviceState
from gateway.sources.can.config import CanSourceConfig
from gateway.sources.can.dbcload import load_dbc
from gateway.sources.can.plan import RackPlan
from gateway.sources.can.rack import Rack
from gateway.sources.can.reader import _PACKED, Frame, _other_frame, _plain_frame, frame_of, from_message
from gateway.sources.can.source import CanBusSource
from tests.can_support import BMS_DBC, DBC_DIR, log_frames, project_plan


def _packed(**kw: Any) -> dict[str, Any]:
    import msgpack  # type: ignore[import-untyped]

    d: dict[str, Any] = msgpack.unpackb(pack_message(can.Message(**kw)), raw=False)
    return d


def _variants() -> list[dict[str, Any]]:
    out = []
    for aid, ext in [(0, False), (0x7FF, False), (0x800, False), (0x1FFFFFFF, True), (0x20000000, True), (-1, False)]:
        for n in (0, 3, 8):
            out.append(_packed(arbitration_id=aid, is_extended_id=ext, data=bytes(range(n))))
    base = _packed(arbitration_id=0x123, is_extended_id=False, data=b"\x01\x02")
    changes: list[dict[str, Any]] = [
        {"dlc": 3},
        {"dlc": None},
        {"data": [1, 2]},
        {"data": bytes(9), "dlc": 9},
        {"is_fd": True},
        {"is_fd": True, "data": bytes(12), "dlc": 12},
        {"is_remote_frame": True},
        {"is_remote_frame": True, "data": b""},
        {"is_error_frame": True},
        {"bitrate_switch": True},
        {"error_state_indicator": True},
        {"is_extended_id": 1},
        {"arbitration_id": True},
        {"channel": "can7"},
    ]
    out += [{**base, **c} for c in changes]
    out.append({k: v for k, v in base.items() if k != "channel"})
    out.append({**base, "unexpected": 1})
    return out


@pytest.mark.parametrize("timestamp", [1.5, 0.0, -1.0])
def test_plain_frames_are_what_python_can_makes_of_the_datagram(timestamp: float) -> None:
    fast = 0
    for d in _variants():
        try:
            want: Frame | str = _other_frame(dict(d), timestamp)
        except can.CanOperationError:
            want = "refused"
        got = _plain_frame(d, timestamp)
        if got is None:
            continue  # the general path takes it
        fast += 1
        assert repr(got) == repr(want), d
    assert fast >= (9 if timestamp >= 0 else 0)


def _datagrams() -> list[bytes]:
    import msgpack  # type: ignore[import-untyped]

    out = []
    for aid in (0, 0x7F, 0x80, 0xFF, 0x100, 0x7FF, 0x800, 0xFFFF, 0x10000, 0x1FFFFFFF, 0x20000000, 0xFFFFFFFF):
        for ext in (False, True):
            for n in (0, 1, 8):
                out.append(pack_message(can.Message(arbitration_id=aid, is_extended_id=ext, data=bytes(range(n)))))
    out.append(pack_message(can.Message(arbitration_id=5, is_extended_id=False, data=b"\x01\x02", dlc=3)))
    out.append(pack_message(can.Message(arbitration_id=5, is_extended_id=False, data=bytes(12), is_fd=True)))
    out.append(pack_message(can.Message(arbitration_id=5, is_extended_id=False, data=bytes(9), dlc=9)))
    out.append(pack_message(can.Message(arbitration_id=5, is_remote_frame=True, dlc=2)))
    out.append(pack_message(can.Message(arbitration_id=5, is_error_frame=True)))
    out.append(pack_message(can.Message(arbitration_id=5, channel="vcan0", data=b"\x01")))
    out.append(pack_message(can.Message(arbitration_id=5, timestamp=float("inf"), data=b"\x01")))
    out += [msgpack.packb(x) for x in ([1, 2], {"arbitration_id": 3}, "x", {**_packed(arbitration_id=9), "dlc": -1})]
    out.append(b"\xc1 not msgpack")
    base = pack_message(can.Message(arbitration_id=0x123, is_extended_id=False, data=b"\x01\x02\x03"))
    out += [base[:-1], base + b"\xc2", base.replace(b"\xa3dlc\x03", b"\xa3dlc\x02")]  # cut, extra, dlc != length
    wide = pack_message(can.Message(arbitration_id=0x1ABCDEF, is_extended_id=True, data=bytes(8)))
    out += [wide[:i] for i in range(len(wide))] + [wide[:i] + b"\xff" + wide[i + 1 :] for i in range(len(wide))]
    return out


def test_every_datagram_becomes_the_frame_python_can_makes_of_it_or_the_same_refusal() -> None:
    from can.interfaces.udp_multicast.utils import unpack_message

    fast = 0
    for raw in _datagrams():
        try:
            want: Frame | str = from_message(unpack_message(raw, replace={"timestamp": 2.5}, check=True))
        except Exception:
            want = "refused"
        try:
            got: Frame | str = frame_of(raw, 2.5)
        except can.CanOperationError:
            got = "refused"
        assert repr(got) == repr(want), raw
        fast += _PACKED.fullmatch(raw) is not None
    assert fast >= 36


def test_a_message_becomes_a_frame_with_its_fields() -> None:
    m = can.Message(arbitration_id=0x18FF50E5, data=bytearray(b"\x01\x02"), is_extended_id=True, timestamp=3.0)
    f = from_message(m)
    assert f == (0x18FF50E5, True, False, False, b"\x01\x02", 2, False, 3.0)
    assert type(f.data) is bytes and f.arbitration_id == m.arbitration_id


def _source() -> CanBusSource:
    plan = project_plan("can-redpesk-bms", BMS_DBC)
    cfg = CanSourceConfig(name="r1", profile="can-redpesk-bms", interface="virtual", channel="x")
    return CanBusSource("r1", [cfg], [Rack(cfg, plan, 5.0)])


def _windows(seed: int) -> list[list[Frame]]:
    rnd = random.Random(seed)
    frames = [from_message(m) for m in log_frames()[:3000]]
    odd = []
    for f in frames[:300]:
        data = f.data
        odd.append(f._replace(data=bytes(rnd.randrange(256) for _ in data)))  # any bits
        odd.append(f._replace(data=data[: rnd.randrange(len(data) + 1)]))  # short
        odd.append(f._replace(data=data + b"\x55"))  # excess
    odd.append(frames[0]._replace(arbitration_id=0x7AB))  # unknown id
    odd.append(frames[0]._replace(is_error_frame=True, arbitration_id=0x40))  # bus-off error frame
    everything = frames + odd
    rnd.shuffle(everything)
    it = iter(everything)
    return [w for w in iter(lambda: list(itertools.islice(it, 500)), [])]


def test_a_window_gives_the_samples_of_its_frames_one_by_one_with_states_and_supervision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows decoded at once (per id, in rounds) store what the frames decoded one at a time store."""
    monkeypatch.setattr(time, "time_ns", lambda: 1_700_000_000_000_000_000)
    monkeypatch.setattr(time, "monotonic", lambda: 1000.0)
    src = _source()
    plan: RackPlan = src.racks[0].plan
    states = []
    heard: set[int] = set()
    for window in _windows(4):
        src._decode(window)
        batches = src.racks[0].take(99, flush=True)
        got = sorted(repr(s) for b in batches for s in b.samples())
        want = []
        for f in window:
            if f.is_error_frame:
                continue
            samples, reason = plan.decode_frame(f.arbitration_id, f.is_extended_id, f.data, 1_700_000_000_000_000_000)
            want += [repr(s) for s in samples]
            if reason in ("", "out_of_range"):
                heard.add(plan.key(f.arbitration_id, f.is_extended_id))
        assert got == sorted(want)
        assert len([b for b in batches if b.n]) == 1  # the window's rows: one batch
        states += [b.status.state for b in batches if b.status is not None]
    sup = src.racks[0].supervisor
    assert {k for k, t in sup.last_seen.items() if t == 1000.0} == heard & sup.last_seen.keys()
    assert states == [DeviceState.ONLINE, DeviceState.OFFLINE, DeviceState.ONLINE]  # the bus-off frame between


def test_a_window_of_whole_cycles_is_one_batch_whose_key_table_comes_back() -> None:
    """A cyclic bus: a window's rounds are one batch (not a batch per round) whose key table comes back
    with the next window of as many cycles; a window that ends one round into a cycle keeps that round
    for the next window, so the next windows have the same key table whatever the phase."""
    dbc = DBC_DIR / "can-example-rack.dbc"
    plan = project_plan("can-example-rack", dbc)
    frames = example_frames(load_dbc(dbc).db)
    cycle = [Frame(aid, ext, False, False, data, len(data), False, 0.0) for aid, ext, data in frames]
    cfg = CanSourceConfig(name="r1", profile="can-example-rack", interface="virtual", channel="x")
    src = CanBusSource("r1", [cfg], [Rack(cfg, plan, 5.0)])
    rack = src.racks[0]
    one = [s for f in cycle for s in plan.decode_frame(f.arbitration_id, f.is_extended_id, f.data, 7)[0]]
    key = sorted(range(len(one)), key=lambda i: (one[i].quantity, one[i].module or 0, one[i].cell or 0))
    src._decode(cycle * 5)
    [batch] = rack.take(1)
    rows = batch.keys.rows
    assert batch.n == 5 * len(one) and rows == rows[: len(one)] * 5
    assert sorted(batch.samples()[: len(one)], key=lambda s: (s.quantity, s.module or 0, s.cell or 0)) == [
        one[i]._replace(ts=batch.samples()[0].ts) for i in key
    ]
    src._decode(cycle * 2 + cycle[:3])
    [two] = rack.take(2)
    assert two.n == 2 * len(one) and rack.carried  # the third round waits
    src._decode(cycle[3:] + cycle)
    [again] = rack.take(3)
    assert again.keys is two.keys
    src._decode(cycle + cycle[:3])
    assert [b.n for b in rack.take(4)] == [len(one)]
    head = [s for f in cycle[:3] for s in plan.decode_frame(f.arbitration_id, f.is_extended_id, f.data, 7)[0]]
    assert [b.n for b in rack.take(5, flush=True)] == [len(head)] and not rack.carried
