"""Cyclic supervision and replay timing: pure functions, no event loop."""

from __future__ import annotations

from gateway.sources.can.supervision import Supervisor
from gateway.tools.canreplay import loop_gap, schedule


def test_message_goes_stale_after_its_limit_and_fresh_with_the_next_frame() -> None:
    sup = Supervisor({1: 0.3, 2: 3.0}, comm_loss_timeout=5.0, now=0.0)
    for t in (0.1, 0.2, 0.3):
        sup.seen(1, t)
        sup.seen(2, t)
    assert sup.check(0.55).stale == []  # 0.25 s since the last frame: within 0.3
    v = sup.check(0.65)
    assert v.stale == [1] and v.comm_loss is None  # key 2 still fresh: no comm_loss
    assert sup.check(0.7).stale == []  # reported once
    sup.seen(1, 0.8)
    assert 1 not in sup.stale
    assert sup.check(1.0).stale == []


def test_comm_loss_when_every_cyclic_message_stopped_and_back() -> None:
    sup = Supervisor({1: 0.3, 2: 0.5}, comm_loss_timeout=5.0, now=0.0)
    sup.seen(1, 0.1)
    sup.seen(2, 0.1)
    assert sup.check(0.45).stale == [1]
    v = sup.check(0.65)
    assert v.stale == [2] and v.comm_loss is True
    assert sup.check(0.7).comm_loss is None  # a change is reported once
    sup.seen(2, 0.8)
    assert sup.check(0.81).comm_loss is False


def test_messages_that_never_arrive_go_stale_from_start() -> None:
    sup = Supervisor({7: 1.0}, comm_loss_timeout=5.0, now=10.0)
    assert sup.check(10.9).stale == []
    v = sup.check(11.1)
    assert v.stale == [7] and v.comm_loss is True


def test_rack_without_cyclic_messages_uses_the_timeout() -> None:
    sup = Supervisor({}, comm_loss_timeout=2.0, now=0.0)
    sup.seen(99, 1.0)  # an event-driven message
    assert sup.check(2.9).comm_loss is None
    assert sup.check(3.1).comm_loss is True
    sup.seen(99, 4.0)
    assert sup.check(4.0).comm_loss is False
    assert 0.05 <= sup.next_check_in() <= 1.0


def test_replay_schedule_is_drift_free_and_scales_with_rate() -> None:
    stamps = [100.0 + 0.1 * k for k in range(100_000)]  # 10,000 s of 10 Hz traffic
    due = schedule(stamps, 1.0)
    assert due[0] == 0.0 and abs(due[-1] - 9999.9) < 1e-6  # each offset from the start, no accumulation
    assert abs(schedule(stamps, 10.0)[-1] - 999.99) < 1e-6
    assert schedule(stamps[:3], None) == [0.0, 0.0, 0.0]
    assert schedule([5.0, 4.0, 6.0], 1.0) == [0.0, 0.0, 1.0]  # never back in time
    assert abs(loop_gap(stamps[:10], 2.0) - 0.05) < 1e-9


async def test_replay_loops_filters_and_stops() -> None:
    import asyncio

    import can

    from gateway.tools.canreplay import replay
    frames = [can.Message(timestamp=t, arbitration_id=i, data=b"\x01") for t, i in ((0.0, 1), (0.01, 2), (0.02, 3))]
    sent: list[int] = []
    stop = asyncio.Event()

    def send(m: can.Message) -> None:
        sent.append(m.arbitration_id)
        if len(sent) == 8:
            stop.set()

    stats = await replay(frames, send, rate=None, loop=True, ids={1, 3}, stop=stop)
    assert sent == [1, 3, 1, 3, 1, 3, 1, 3]
    assert stats.sent == 8 and stats.skipped == 1 and stats.loops == 4  # four full passes
    sent.clear()
    stats = await replay(frames, send, rate=50.0)  # recorded timing, 50 times faster: order kept
    assert sent == [1, 2, 3] and stats.loops == 1


def test_rack_hands_on_every_status_change_in_order() -> None:
    from gateway.model import DeviceState, Sample
    from gateway.sources.can.config import CanSourceConfig
    from gateway.sources.can.rack import Rack
    from tests.can_support import DBC_DIR, project_plan

    rack = Rack(
        CanSourceConfig(name="r", profile="p"), project_plan("can-example-rack", DBC_DIR / "can-example-rack.dbc"), 5.0
    )
    rack.set_state(DeviceState.ONLINE, "", 1)
    rack.set_state(DeviceState.OFFLINE, "bus-off", 2)
    rack.set_state(DeviceState.OFFLINE, "again", 3)  # no change: not repeated
    rack.set_state(DeviceState.ONLINE, "", 4)
    rack.samples.append(Sample(5, "soc", 50.0, "%"))
    batches = rack.take(6)
    assert [(b.status.state, b.status.reason) for b in batches if b.status] == [
        ("online", ""),
        ("offline", "bus-off"),
        ("online", ""),
    ]
    assert [len(b.samples) for b in batches] == [0, 0, 1]  # the samples ride on the last batch
    assert rack.take(7) == []
