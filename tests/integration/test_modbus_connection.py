"""A lost Modbus TCP connection goes through the same on-delay as a silent device (`offline_after`):
a link that drops every few polls but reconnects raises no `comm_loss` alarm and logs each drop once;
an endpoint down for longer raises one. Real peers: a Modbus TCP server on loopback that drops its
connections, the whole runtime with its alarm engine and store."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.config.settings import load_config
from gateway.metrics import REGISTRY
from gateway.model import Batch, BatchKind, DeviceState, Quality
from gateway.runtime.core import Runtime
from tests.modbus_faulty import PROFILE, FaultyServer
from tests.modbus_support import of, site, source
from tests.runtime_support import run_until
from tests.support.store import runtime_batches as stored


def alarm_site(tmp_path: Path, sources: str) -> Path:
    path = site(tmp_path, sources, PROFILE)
    text = path.read_text()
    path.write_text(text.replace("alarms:\n  enabled: false\n", "alarms:\n  tick_interval: 0.05\n"))
    return path


def comm_loss_events(rt: Runtime) -> list[str]:
    records = [r for b in stored(rt) if b.kind == BatchKind.ALARM for r in b.records]
    return [str(r["state"]) for r in records if r.get("type") == "event" and r.get("rule") == "comm_loss"]


def states(batches: list[Batch]) -> list[DeviceState]:
    return [b.status.state for b in batches if b.status is not None]


def connects(port: int, result: str) -> float:
    labels = {"endpoint": f"127.0.0.1:{port}", "result": result}
    return REGISTRY.get_sample_value("bms_gateway_modbus_connects_total", labels) or 0.0


def events(logs: Sequence[MutableMapping[str, Any]], event: str, **fields: object) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event and all(e.get(k) == v for k, v in fields.items())]


@pytest.mark.parametrize("instead", [False, True], ids=["after-an-answer", "instead-of-an-answer"])
async def test_a_link_that_drops_every_few_polls_raises_no_comm_loss(tmp_path: Path, instead: bool) -> None:
    """The server closes each connection after 4 answers (or on the 4th request, unanswered): the
    gateway reconnects before its next request, or at once for the read's retry, and no cycle is lost.
    Defaults otherwise: `offline_after: 1`, `retries: 1`."""
    server = FaultyServer()
    server.drop_every, server.drop_instead = 4, instead
    await server.start()
    name = f"rack-drop-{int(instead)}"
    rt = Runtime(load_config(alarm_site(tmp_path, source(name, server.port, timeout=5))))
    with structlog.testing.capture_logs() as logs:
        await run_until(rt, lambda: server.drops >= 5 and len(of(rt, name)) >= 20, limit=90)
    await server.stop()
    batches = of(rt, name)
    assert server.connections >= 5 and connects(server.port, "ok") >= 5
    # every cycle was read in full: no stale, no comm_loss, never offline
    assert {s.quality for b in batches for s in b.samples()} == {Quality.GOOD}
    assert states(batches) == [DeviceState.ONLINE]
    assert comm_loss_events(rt) == []
    # each drop logged once (the last may not have been noticed yet), nothing per poll
    lost = events(logs, "modbus connection lost", endpoint=f"127.0.0.1:{server.port}")
    assert server.drops - 1 <= len(lost) <= server.drops
    assert len(events(logs, "modbus endpoint reconnected")) <= len(lost)
    assert not events(logs, "modbus device offline")


async def test_an_endpoint_down_longer_than_offline_after_raises_one_comm_loss(tmp_path: Path) -> None:
    server = FaultyServer()
    await server.start()
    port, name = server.port, "rack-down"
    # the deprecated old names of reconnect_initial/reconnect_max: they still work, with a warning
    sources = source(name, port, timeout=5, offline_after=3, backoff_initial=0.05, backoff_max=0.2)
    loaded = load_config(alarm_site(tmp_path, sources))
    assert [w.message.split(": ")[-1] for w in loaded.warnings] == [
        "use reconnect_initial (same meaning)",
        "use reconnect_max (same meaning)",
    ]
    rt = Runtime(loaded)
    tasks: dict[str, asyncio.Future[None]] = {}
    failed: list[float] = []

    def progress() -> bool:
        batches = of(rt, name)
        seen = states(batches)
        if "stop" not in tasks and len(batches) >= 3:
            tasks["stop"] = asyncio.ensure_future(server.stop())
        if DeviceState.OFFLINE in seen and not failed:
            failed.append(connects(port, "failed"))
        if failed and "start" not in tasks and connects(port, "failed") >= failed[0] + 3:
            tasks["start"] = asyncio.ensure_future(server.start(port))  # down a while past going offline
        return seen[-1:] == [DeviceState.ONLINE] and DeviceState.OFFLINE in seen and "rtn_unack" in comm_loss_events(rt)

    with structlog.testing.capture_logs() as logs:
        await run_until(rt, progress, limit=90)
    await server.stop()
    batches = of(rt, name)
    assert states(batches) == [DeviceState.ONLINE, DeviceState.OFFLINE, DeviceState.ONLINE]
    # the cycles missed within the on-delay: every point `stale`, no state change; then comm_loss once
    k = next(i for i, b in enumerate(batches) if b.status is not None and b.status.state == DeviceState.OFFLINE)
    for missed in batches[k - 2 : k]:
        assert missed.status is None and {s.quality for s in missed.samples()} == {Quality.STALE}
        assert all(s.value is None for s in missed.samples())
    assert {s.quality for s in batches[k].samples()} == {Quality.COMM_LOSS}
    assert all(s.quality == Quality.GOOD for s in batches[-1].samples())
    # one alarm for the whole outage, and it returned
    events_ = comm_loss_events(rt)
    assert events_.count("active_unack") == 1, events_
    assert events_[-1] == "rtn_unack"
    # the link's and the device's state changes logged once each
    endpoint = f"127.0.0.1:{port}"
    assert len(events(logs, "modbus connection lost", endpoint=endpoint)) == 1
    assert len(events(logs, "modbus endpoint reconnected", endpoint=endpoint)) == 1
    assert len(events(logs, "modbus device offline", device=name)) == 1
    assert len(events(logs, "modbus device back online", device=name)) == 1
