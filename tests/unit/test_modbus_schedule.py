"""Drift-free schedule of the Modbus poller (its backoff: tests/unit/test_backoff.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.sources.modbus.poller import ModbusEndpoint
from gateway.sources.modbus.schedule import first_due, next_due
from tests.support.waits import await_for


def test_on_time_cycle() -> None:
    assert next_due(10.0, 1.0, 10.3) == (11.0, 0)


def test_late_cycle_does_not_shift_later_ones() -> None:
    due, skipped = next_due(10.0, 1.0, 12.5)
    assert (due, skipped) == (13.0, 2)


@given(st.floats(0, 1e6), st.floats(0.01, 100), st.floats(0, 1e4))
def test_next_due_stays_on_the_grid(due: float, interval: float, late: float) -> None:
    now = due + late
    nxt, skipped = next_due(due, interval, now)
    assert nxt > now - 1e-6
    assert abs((nxt - due) / interval - round((nxt - due) / interval)) < 1e-6
    assert round((nxt - due) / interval) == skipped + 1


def test_devices_start_spread_over_the_interval() -> None:
    assert [first_due(100.0, 1.0, k, 4) for k in range(4)] == [100.0, 100.25, 100.5, 100.75]
    # endpoint 1 of 2 interleaves its devices' slots with endpoint 0's
    assert [first_due(100.0, 1.0, k + 0.5, 2) for k in range(2)] == [100.25, 100.75]
    assert first_due(7.0, 2.0, 0, 0) == 7.0 and first_due(7.0, 2.0, 3, 1) == 7.0


@given(st.floats(0, 1e6), st.floats(0.01, 100), st.integers(1, 200), st.floats(0, 1000))
def test_first_due_lies_within_one_interval(now: float, interval: float, slots: int, slot: float) -> None:
    assert now <= first_due(now, interval, slot, slots) < now + interval + 1e-6


async def test_endpoints_poll_their_devices_in_interleaved_slots_on_a_fixed_grid(tmp_path: Path) -> None:
    from gateway.model import Batch
    from gateway.sources.base import SourceContext
    from gateway.sources.modbus.config import ModbusSourceConfig
    from gateway.sources.modbus.source import endpoints
    from tests.modbus_support import TINY, profile_from
    from tests.unit.test_modbus_wire import SwallowingClient

    profile = profile_from(tmp_path, TINY)
    cfgs = [
        ModbusSourceConfig(name=f"r{e}{u}", profile="p", host="h", port=600 + e, unit_id=u, interval=0.2)
        for e in range(2)
        for u in (1, 2)
    ]
    eps = endpoints(cfgs, {"p": profile})
    polled: list[str] = []

    async def emit(batch: Batch) -> None:
        polled.append(batch.source)

    for ep in eps:

        async def connect(ep: ModbusEndpoint = ep) -> bool:
            ep.link.client = SwallowingClient()  # type: ignore[assignment]
            return True

        ep.link.connect = connect  # type: ignore[method-assign]
    tasks = [asyncio.create_task(ep.run(SourceContext(emit, lambda: None, "t"))) for ep in eps]
    await await_for(lambda: len(polled) >= 8, 60, "8 polls", step=0.001)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # each device's cycles lie on its own grid, slot k/n of the interval after the endpoint's first;
    # the second endpoint's slots fall half a slot later (its phase)
    for ep in eps:
        first, second = (d.due[0.2] for d in ep.devices)
        assert round(((second - first) / 0.2) % 1.0, 6) == 0.5
    assert [ep.phase for ep in eps] == [0.0, 0.5]
    assert set(polled) == {c.name for c in cfgs}
