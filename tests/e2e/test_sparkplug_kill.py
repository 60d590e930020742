"""The Sparkplug demonstration: `bms-gateway run` with simulated racks and a Sparkplug sink, read by a host
subscriber that decodes with protobuf. After a `kill -9` the host sees NDEATH (the will) with the bdSeq of
the last NBIRTH; after the restart a new NBIRTH with the bdSeq incremented; and no stored sample is
missing on the Sparkplug side."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from gateway.model import BatchKind
from tests.delivery_support import Collector
from tests.servers import Mosquitto
from tests.support.site import PLAIN_RACK, write_config
from tests.support.sparkplug import Host, bd_seq, expected_name, host_of
from tests.support.store import batches
from tests.support.waits import await_for


def config(tmp_path: Path, broker: Mosquitto) -> Path:
    sink = (
        f"  sp: {{type: sparkplug, host: 127.0.0.1, port: {broker.port}, tls: false, group_id: plant, "
        "batch_max_age: 0.05, backoff_initial: 0.1, backoff_max: 1.0}"
    )
    rack = {**PLAIN_RACK, "seed": None}
    return write_config(tmp_path, ["rack-0", "rack-1"], interval=0.05, grace=10, rack=rack, extra=f"sinks:\n{sink}\n")


def stored(db: Path) -> dict[tuple[str, str, int], object]:
    """(device, metric, ms) → value of every sample in the store."""
    out: dict[tuple[str, str, int], object] = {}
    for b in batches(db, kind=BatchKind.SAMPLES, check=False):
        for s in b.samples():
            out[(s.rack or "gateway", expected_name(s.quantity, s.module, s.cell), s.ts // 1_000_000)] = s.value
    return out


def ddata(host: Host) -> int:
    return len(host.of("DDATA"))


async def test_kill_9_ndeath_then_a_new_nbirth_with_the_next_bdseq_and_nothing_missing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    cfg = config(tmp_path, mosquitto)
    db = tmp_path / "store.db"
    log_path = tmp_path / "gateway.log"
    log = log_path.open("ab")

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "-c", str(cfg), stdout=log, stderr=log
        )

    async with Collector(mosquitto.port, topic="spBv1.0/#") as sub:
        proc = await start()
        await await_for(lambda: ddata(host_of(sub)) >= 20, 90, "the first DDATA messages", log=log_path)
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        await await_for(lambda: host_of(sub).of("NDEATH"), 60, "NDEATH, the will of the killed gateway")
        host = host_of(sub)
        (first_birth,) = host.of("NBIRTH")
        (death,) = host.of("NDEATH")
        assert bd_seq(death) == bd_seq(first_birth) == 0

        proc = await start()
        await await_for(lambda: len(host_of(sub).of("NBIRTH")) == 2, 90, "the restarted gateway's NBIRTH", log=log_path)
        seen = ddata(host_of(sub))
        await await_for(lambda: ddata(host_of(sub)) >= seen + 20, 90, "DDATA after the restart", log=log_path)
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0, log_path.read_text()[-3000:]
        await await_for(lambda: len(host_of(sub).of("NDEATH")) == 2, 60, "NDEATH of the clean stop")

        want = await asyncio.to_thread(stored, db)
        await await_for(lambda: host_of(sub).samples() >= set(want), 60, "every stored sample on the Sparkplug side")
    host = host_of(sub)
    births = host.of("NBIRTH")
    assert [bd_seq(b) for b in births] == [0, 1]
    assert [bd_seq(d) for d in host.of("NDEATH")] == [0, 1]
    got = host.values()
    missing = set(want) - set(got)
    wrong = {k for k in want if k in got and got[k][0] != want[k]}
    print(f"stored samples {len(want)}, received {len(got)}, missing {len(missing)}, values differing {len(wrong)}")
    assert not missing and not wrong
    assert {d for d, _n, _t in want} >= {"rack-0", "rack-1"}
