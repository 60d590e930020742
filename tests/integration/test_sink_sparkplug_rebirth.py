"""Sparkplug B sink against a real Mosquitto: a rebirth request answered at once with no data flowing,
rebirths in the middle of a stream of writes (seq in order, each NBIRTH followed by its DBIRTHs), and an
alarm rule that raises and clears arriving as the rack device's DDATA values in order."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from gateway.model import Batch
from gateway.sinks.runner import SinkRunner
from gateway.sinks.sparkplug.config import SparkplugSinkConfig
from gateway.sinks.sparkplug.sink import SparkplugSink
from gateway.store.outbox import Outbox
from tests.alarms_support import batch, engine, rule, sample
from tests.delivery_support import Collector, metric, running
from tests.integration.test_sink_sparkplug import FAST, NODE, ncmd, rack_batch, send
from tests.servers import Mosquitto
from tests.support.sparkplug import BOOLEAN, Host, host_of
from tests.support.waits import await_for

REBIRTH = {"name": "Node Control/Rebirth", "datatype": BOOLEAN, "boolean_value": True}


def make(tmp_path: Path, port: int, name: str) -> tuple[Outbox, SinkRunner, SparkplugSink]:
    """A runner of a sink with a name of its own (the command counters are per process and sink)."""
    ob = Outbox(tmp_path / "store.db")
    cfg = SparkplugSinkConfig.model_validate({"host": "127.0.0.1", "port": port, "group_id": "g", **FAST})
    sink = SparkplugSink(name, cfg, "s1", tmp_path / "bd.json")
    return ob, SinkRunner(name, sink, ob, cfg), sink


def births_complete(host: Host, nbirths: int, devices: set[str]) -> bool:
    """The host saw `nbirths` NBIRTHs and, after the last one, a DBIRTH of each device."""
    kinds = [(s.kind, s.device) for s in host.seen]
    starts = [i for i, (k, _d) in enumerate(kinds) if k == "NBIRTH"]
    if len(starts) < nbirths:
        return False
    return {d for k, d in kinds[starts[-1] :] if k == "DBIRTH"} >= devices


async def test_a_rebirth_is_answered_at_once_with_no_data_flowing(tmp_path: Path, mosquitto: Mosquitto) -> None:
    ob, runner, sink = make(tmp_path, mosquitto.port, "sp-idle")
    async with Collector(mosquitto.port, topic="spBv1.0/#") as sub:
        async with running(runner):
            ob.append([rack_batch(0, "r1"), rack_batch(0, "r2")])  # the only data: then nothing arrives
            runner.notify()
            await await_for(runner.caught_up)
            await await_for(lambda: births_complete(host_of(sub), 1, {"r1", "r2"}), what="the first births")
            stored = ob.last_seq()

            async def rebirth(n: int) -> None:
                await send(mosquitto.port, NODE.format("NCMD"), ncmd(**REBIRTH))
                await await_for(lambda: births_complete(host_of(sub), n, {"r1", "r2"}), timeout=60,
                                what=f"rebirth {n - 1}: NBIRTH and both DBIRTHs with no data written")  # fmt: skip

            await rebirth(2)
            await rebirth(3)
            await await_for(lambda: sink.rebirths == 2, what="both rebirths counted")
            assert metric("bms_gateway_sparkplug_commands_total", sink="sp-idle", result="rebirth") == 2
    host = host_of(sub)
    births = [s for s in host.seen if s.kind in ("NBIRTH", "DBIRTH")]
    assert [(s.kind, s.payload.seq) for s in births[3:]] == [("NBIRTH", 0), ("DBIRTH", 1), ("DBIRTH", 2),
                                                              ("NBIRTH", 0), ("DBIRTH", 1), ("DBIRTH", 2)]  # fmt: skip
    # each DBIRTH of a rebirth carries the device's metrics with their last values
    assert host.born("DBIRTH", "r1")["soc"] == 50.0
    assert ob.last_seq() == stored  # nothing more was stored: the births came from the sink's own task
    ob.close()


async def test_rebirths_amid_writes_keep_seq_in_order(tmp_path: Path, mosquitto: Mosquitto) -> None:
    ob, runner, sink = make(tmp_path, mosquitto.port, "sp-busy")
    async with Collector(mosquitto.port, topic="spBv1.0/#") as sub:
        async with running(runner):
            for i in range(120):
                ob.append([rack_batch(i, "r1"), rack_batch(i, "r2")])
                runner.notify()
                if i % 20 == 10:
                    await send(mosquitto.port, NODE.format("NCMD"), ncmd(**REBIRTH))
                if i % 10 == 0:
                    await await_for(runner.caught_up)
            await await_for(runner.caught_up)
            await await_for(lambda: sink.rebirths == 6, timeout=60, what="six rebirths")
            await await_for(lambda: births_complete(host_of(sub), 7, {"r1", "r2"}), timeout=60, what="their births")
    host = host_of(sub)
    seqs = [s.payload.seq for s in host.seen if s.kind != "NDEATH"]
    for a, b in itertools.pairwise(seqs):
        assert b == (a + 1) % 256 or b == 0, seqs
    kinds = [s.kind for s in host.seen]
    for i, k in enumerate(kinds):
        if k == "NBIRTH" and i + 2 < len(kinds):  # the births go out together: no data between them
            assert kinds[i + 1 : i + 3] == ["DBIRTH", "DBIRTH"], kinds[i : i + 4]
    ob.close()


async def test_an_alarm_that_raises_and_clears_arrives_as_two_ddata_values_in_order(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    ob, runner, _sink = make(tmp_path, mosquitto.port, "sp-alarms")
    eng = engine(rule(id="soc_high", kind="threshold", quantity="soc", high=90.0))
    t0 = int(time.time())
    alarm = "rack-01:soc_high"
    async with Collector(mosquitto.port, topic="spBv1.0/#") as sub:
        async with running(runner):
            for k, v in enumerate((50.0, 95.0, 96.0, 50.0, 51.0)):
                b: Batch = batch(sample(t0 + k, "soc", v))
                ob.append([b, *eng.process([b])])  # the batch and the alarm events it made, as the runtime stores
                runner.notify()
            await await_for(runner.caught_up)
            await await_for(lambda: len(host_of(sub).series("rack-01", "Alarms/")) >= 6, what="the alarm's values")
    ms = [(t0 + k) * 1000 for k in range(5)]
    assert host_of(sub).series("rack-01", "Alarms/") == [
        ("DBIRTH", f"Alarms/{alarm}/Active", False, ms[1]), ("DBIRTH", f"Alarms/{alarm}/State", "normal", ms[1]),
        ("DDATA", f"Alarms/{alarm}/Active", True, ms[1]), ("DDATA", f"Alarms/{alarm}/State", "active_unack", ms[1]),
        ("DDATA", f"Alarms/{alarm}/Active", False, ms[3]), ("DDATA", f"Alarms/{alarm}/State", "rtn_unack", ms[3]),
    ]  # fmt: skip
    ob.close()
