"""Replies that do not answer their request, from a real misbehaving Modbus TCP server on loopback:
the block's points are `bad` with no value, the error is counted by device and kind and logged once,
the connection and the source live on, and good answers are taken again when they return."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from gateway.config.settings import load_config
from gateway.metrics import REGISTRY
from gateway.model import Batch, DeviceState, Quality
from gateway.runtime.core import Runtime
from tests.modbus_faulty import FAULTS, KIND, PROFILE, WORD, FaultyServer
from tests.modbus_support import of, site, source
from tests.runtime_support import run_until


def errors(device: str, kind: str) -> float:
    return REGISTRY.get_sample_value("bms_gateway_modbus_errors_total", {"device": device, "kind": kind}) or 0.0


def voltage(b: Batch) -> tuple[str, object] | None:
    s = next((s for s in b.samples() if s.quantity == "rack_voltage"), None)
    return None if s is None else (s.quality, s.value)


GOOD = (Quality.GOOD, WORD * 0.1)
BAD = (Quality.BAD, None)


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_reply_that_does_not_answer_its_request_is_bad_counted_and_survived(
    tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = FaultyServer()
    await server.start()
    name, kind = f"rack-{fault}", KIND[fault]
    rt = Runtime(load_config(site(tmp_path, source(name, server.port, timeout=5), PROFILE)))
    phase: dict[str, int] = {}

    def progress() -> bool:
        seen = [voltage(b) for b in of(rt, name)]
        if "fault" not in phase and seen.count(GOOD) >= 2:
            server.fault, phase["fault"] = fault, len(seen)
        if "fault" in phase and "healed" not in phase and errors(name, kind) >= 3 and BAD in seen:
            server.fault, phase["healed"] = "", len(seen)
        return "healed" in phase and seen[phase["healed"] :].count(GOOD) >= 2

    with structlog.testing.capture_logs() as logs:
        await run_until(rt, progress, limit=60)
        await server.stop()
    batches = of(rt, name)
    seen = [voltage(b) for b in batches]
    # no value was taken from a reply that did not answer (the old code stored 1.0 from a function 6)
    assert set(seen) == {GOOD, BAD}, set(seen)
    assert seen.index(BAD) >= phase["fault"] and seen[-1] == GOOD
    # only the fc-4 block's points went bad; the other reads kept flowing
    others = {
        (s.quantity, s.quality) for b in batches for s in b.samples() if s.quantity not in ("rack_voltage", "soc")
    }
    assert others == {("raw.fan_speed", Quality.GOOD), ("interlock_door", Quality.GOOD)}
    states = [b.status.state for b in batches if b.status is not None]
    assert states == [DeviceState.ONLINE, DeviceState.DEGRADED, DeviceState.ONLINE]
    assert errors(name, kind) >= 3
    assert server.connections == 1  # the connection outlived every bad reply
    # logged once when it started and once when it ended, naming the place
    mine = [e for e in logs if e.get("device") == name]
    wrong = [e for e in mine if e["event"] == "modbus reply does not answer its request"]
    assert len(wrong) == 1, mine
    assert {k: wrong[0][k] for k in ("kind", "unit_id", "function", "address", "count")} == {
        "kind": kind,
        "unit_id": 1,
        "function": 4,
        "address": 0,
        "count": 2,
    }
    assert wrong[0]["log_level"] == "warning" and wrong[0]["received"]
    assert [e["event"] for e in mine].count("modbus block readable again") == 1
    # no traceback, no "Fatal error: protocol.data_received() call failed" from asyncio or pymodbus
    assert not [r for r in caplog.records if r.exc_info or "Fatal error" in r.getMessage()]
