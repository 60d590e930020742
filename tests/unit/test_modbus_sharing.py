"""Devices of one profile share compiled points, read plans and decoders, and nothing they change."""

from __future__ import annotations

from pathlib import Path

from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.device import Outcome
from gateway.sources.modbus.source import endpoints
from tests.modbus_support import TINY, profile_from
from tests.unit.test_modbus_cycle import run_cycle


def test_racks_of_one_profile_share_their_plan_but_not_their_repairs(tmp_path: Path) -> None:
    profile, other = profile_from(tmp_path, TINY), profile_from(tmp_path, TINY, "q")
    cfgs = [
        ModbusSourceConfig(name=f"rack-{u}", profile="p", host="h", port=502 + u // 3, unit_id=u) for u in range(1, 5)
    ]
    cfgs.append(ModbusSourceConfig(name="slow", profile="p", host="h", port=600, unit_id=1, interval=5.0))
    cfgs.append(ModbusSourceConfig(name="other", profile="q", host="h", port=601, unit_id=1))
    devices = [d for ep in endpoints(cfgs, {"p": profile, "q": other}) for d in ep.devices]
    a, b, slow, elsewhere = devices[0], devices[3], devices[4], devices[5]
    assert a.points is b.points and a.points is not slow.points and a.points is not elsewhere.points
    blocks_a, blocks_b = a.blocks_for(list(a.blocks)), b.blocks_for(list(b.blocks))
    assert all(x is y for x, y in zip(blocks_a, blocks_b, strict=True))
    assert all(a.decoder(x) is b.decoder(x) for x in blocks_a)
    assert a.blocks is not b.blocks and all(a.blocks[iv] is not b.blocks[iv] for iv in a.blocks)
    # the same samples as a device of its own, in each rack's name
    first_a, first_b = run_cycle(a), run_cycle(b)
    assert [s[:5] + s[6:] for s in first_a.samples()] == [s[:5] + s[6:] for s in first_b.samples()]
    assert {s.rack for s in first_b.samples()} == {"rack-4"}
    assert first_a.keys is not first_b.keys
    # a block split in one rack's plan stays whole in the other's
    block = next(x for x in blocks_a if len(x.points) > 1)
    a.split(block)
    assert len(a.blocks_for(list(a.blocks))) == len(blocks_a) + 1
    assert b.blocks_for(list(b.blocks)) == blocks_b
    i = blocks_b.index(block)
    assert run_cycle(b, {i: Outcome(3, code=4)}).keys is first_b.keys
