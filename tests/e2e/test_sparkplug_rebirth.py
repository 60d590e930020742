"""`bms-gateway run` with racks polled once an hour and a Sparkplug sink: after the first poll no data
flows, and a host's rebirth request (NCMD) is still answered with NBIRTH and every DBIRTH; the births
carry the node's and the racks' properties from the configuration; the gateway's `stale` alarm of each
rack (no sample for 10 s) arrives as the rack device's alarm metrics."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from tests.delivery_support import Collector
from tests.integration.test_sink_sparkplug import ncmd, send
from tests.servers import Mosquitto
from tests.support.site import write_config
from tests.support.sparkplug import BOOLEAN, Host, host_of
from tests.support.waits import await_for

RACKS = ["rack-0", "rack-1"]


def born(host: Host, nbirths: int) -> bool:
    """`nbirths` NBIRTHs seen, the last one followed at once by a DBIRTH of every rack."""
    starts = [i for i, s in enumerate(host.seen) if s.kind == "NBIRTH"]
    if len(starts) < nbirths:
        return False
    after = host.seen[starts[-1] + 1 : starts[-1] + 1 + len(RACKS)]
    return all(s.kind == "DBIRTH" for s in after) and {s.device for s in after} == set(RACKS)


def stale_raised(host: Host, rack: str) -> bool:
    return ("DDATA", f"Alarms/{rack}:stale/State", "active_unack") in {k[:3] for k in host.series(rack, "Alarms/")}


async def test_a_rebirth_with_an_hour_between_polls(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sink = (
        f"  sp: {{type: sparkplug, host: 127.0.0.1, port: {mosquitto.port}, tls: false, group_id: plant, "
        "batch_max_age: 0.05, backoff_initial: 0.1, backoff_max: 1.0}"
    )
    cfg = write_config(tmp_path, RACKS, interval=3600, extra=f"sinks:\n{sink}\n")
    log_path = tmp_path / "gateway.log"
    with log_path.open("ab") as log:
        async with Collector(mosquitto.port, topic="spBv1.0/#") as sub:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "run", "-c", str(cfg), stdout=log, stderr=log
            )
            try:
                await await_for(lambda: born(host_of(sub), 1), 90, "the first births", log=log_path)
                rebirth = ncmd(name="Node Control/Rebirth", datatype=BOOLEAN, boolean_value=True)
                t0 = time.monotonic()
                await send(mosquitto.port, "spBv1.0/plant/NCMD/t", rebirth)
                await await_for(lambda: born(host_of(sub), 2), 60, "NBIRTH and both DBIRTHs again", log=log_path)
                answered = time.monotonic() - t0
                await await_for(lambda: all(stale_raised(host_of(sub), r) for r in RACKS), 90,
                                "each rack's stale alarm", log=log_path)  # fmt: skip
            finally:
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0, log_path.read_text()[-3000:]
    host = host_of(sub)
    nbirth = host.born("NBIRTH")
    assert nbirth["Properties/Site"] == "t" and nbirth["Properties/Software"] == "bms-gateway"
    assert isinstance(nbirth["Properties/Software Version"], str) and nbirth["Properties/Software Version"]
    assert nbirth["Node Control/Rebirth"] is False
    for rack in RACKS:
        props = {k: v for k, v in host.born("DBIRTH", rack).items() if k.startswith("Properties/")}
        assert props == {"Properties/Source": rack, "Properties/Source Type": "simulated"}
    print(f"rebirth answered in {answered:.3f} s (request sent to the last DBIRTH seen), messages {len(host.seen)}")
