"""Sparkplug B sink against a real Mosquitto, read by a host subscriber that decodes with protobuf: births,
data, values equal to the store's, rebirth on NCMD, junk commands, a broker restart, the clean stop."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import aiomqtt

from gateway.model import Batch, BatchKind, Sample
from gateway.sinks.runner import SinkRunner
from gateway.sinks.sparkplug.config import SparkplugSinkConfig
from gateway.sinks.sparkplug.sink import SparkplugSink
from gateway.store.outbox import Outbox
from tests.delivery_support import Collector, metric, running
from tests.servers import Mosquitto
from tests.support.sparkplug import BOOLEAN, Payload, bd_seq, expected_name, host_of
from tests.support.waits import await_for

FAST = {"batch_max_age": 0.05, "backoff_initial": 0.05, "backoff_max": 0.5, "tls": False, "timeout": 3}
NODE = "spBv1.0/g/{}/s1"


def make(tmp_path: Path, port: int) -> tuple[Outbox, SinkRunner]:
    ob = Outbox(tmp_path / "store.db")
    cfg = SparkplugSinkConfig.model_validate({"host": "127.0.0.1", "port": port, "group_id": "g", **FAST})
    return ob, SinkRunner("sp", SparkplugSink("sp", cfg, "s1", tmp_path / "bd.json"), ob, cfg)


def rack_batch(i: int, rack: str) -> Batch:
    ts = time.time_ns() + i * 1_000_000
    return Batch.of_samples(rack, [
        Sample(ts, "soc", 50.0 + i, "%", "good", rack),
        Sample(ts, "cell_voltage", 3.3 + i / 1000, "V", "stale" if i % 3 else "good", rack, 1, 2),
        Sample(ts, "module_temperature", None, "°C", "comm_loss", rack, 1),
        Sample(ts, "contactor", "closed" if i % 2 else "open", "", "good", rack),
    ])  # fmt: skip


def stored(ob: Outbox) -> dict[tuple[str, str, int], tuple[object, int]]:
    """(device, metric, ms) → (value, Sparkplug quality) of every stored sample."""
    code = {"good": 192, "stale": 500, "comm_loss": 500, "bad": 0, "out_of_range": 0, "missing": 0}
    out: dict[tuple[str, str, int], tuple[object, int]] = {}
    for row in ob.query():
        if row.batch.kind == BatchKind.SAMPLES:
            for s in row.batch.samples():
                key = (s.rack, expected_name(s.quantity, s.module, s.cell), s.ts // 1_000_000)
                out[key] = (s.value, code[s.quality])
    return out


def ncmd(**metric: object) -> bytes:
    p = Payload(timestamp=int(time.time() * 1000))
    p.metrics.add(**metric)
    return bytes(p.SerializeToString())


async def send(port: int, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="test-host") as host:
        await host.publish(topic, payload, qos=1)


async def test_births_data_rebirth_and_clean_stop(tmp_path: Path, mosquitto: Mosquitto) -> None:
    ob, runner = make(tmp_path, mosquitto.port)
    async with Collector(mosquitto.port, topic="spBv1.0/#") as sub:
        async with running(runner):
            await await_for(lambda: len(host_of(sub).of("NBIRTH")) == 1, what="NBIRTH")
            for i in range(30):
                ob.append([rack_batch(i, "r1"), rack_batch(i, "r2")])
                runner.notify()
            await await_for(runner.caught_up)
            want = stored(ob)
            await await_for(lambda: host_of(sub).samples() >= set(want), what="every stored sample")
            # A host asks for a rebirth: NBIRTH and every DBIRTH again, with the next write.
            rebirth = ncmd(name="Node Control/Rebirth", datatype=BOOLEAN, boolean_value=True)
            await send(mosquitto.port, NODE.format("NCMD"), rebirth)
            await await_for(lambda: metric("bms_gateway_sparkplug_commands_total", sink="sp", result="rebirth") == 1)
            ob.append([rack_batch(30, "r1")])
            runner.notify()
            await await_for(lambda: len(host_of(sub).of("NBIRTH")) == 2, what="the rebirth's NBIRTH")
            await await_for(lambda: len(host_of(sub).of("DBIRTH")) >= 4, what="the rebirth's DBIRTHs")
            # Junk is ignored and counted; it changes nothing.
            await send(mosquitto.port, NODE.format("NCMD"), b"\x12\xff\x00")
            await send(mosquitto.port, NODE.format("DCMD") + "/r1", rebirth)
            await await_for(lambda: metric("bms_gateway_sparkplug_commands_total", sink="sp", result="malformed") == 1)
            await await_for(lambda: metric("bms_gateway_sparkplug_commands_total", sink="sp", result="ignored") == 1)
            want = stored(ob)
            await await_for(lambda: host_of(sub).samples() >= set(want), what="every stored sample")
        await await_for(lambda: len(host_of(sub).of("NDEATH")) == 1, what="NDEATH on the clean stop")
    host = host_of(sub)
    nbirths = host.of("NBIRTH")
    assert [bd_seq(b) for b in nbirths] == [0, 0]  # a rebirth keeps the connection's bdSeq
    assert bd_seq(host.of("NDEATH")[0]) == 0
    assert [b.payload.seq for b in nbirths] == [0, 0]
    # seq: +1 per message after each NBIRTH, mod 256
    seqs = [s.payload.seq for s in host.seen if s.kind != "NDEATH"]
    for a, b in itertools.pairwise(seqs):
        assert b == (a + 1) % 256 or b == 0
    dbirth = host.of("DBIRTH")[0]
    assert {m.name for m in dbirth.payload.metrics} == {"soc", "cell_voltage/1/2", "module_temperature/1", "contactor"}
    assert len({(s.device, m.alias) for s in host.of("DBIRTH") for m in s.payload.metrics}) == 8
    assert len({m.alias for s in host.of("DBIRTH") for m in s.payload.metrics}) == 8  # unique in the node
    got = host.values()
    assert {k: got[k] for k in want} == want  # every value and quality as stored
    print(f"stored samples {len(want)}, received {len(got)}, messages {len(host.seen)}")
    ob.close()


async def test_broker_restart_loses_nothing_and_the_new_birth_has_the_next_bdseq(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    ob, runner = make(tmp_path, mosquitto.port)
    async with Collector(mosquitto.port, topic="spBv1.0/#") as sub:
        async with running(runner):
            retries = metric("bms_gateway_sink_retries_total", sink="sp")
            for i in range(60):
                ob.append([rack_batch(i, "r1")])
                runner.notify()
                if i == 20:
                    await await_for(runner.caught_up)
                    mosquitto.stop()
                if i == 40:  # the rows since 20 wait in the store while the sink fails
                    await await_for(lambda: metric("bms_gateway_sink_retries_total", sink="sp") > retries)
                    assert not runner.caught_up()
                    mosquitto.start()
            await await_for(runner.caught_up, timeout=60)
            want = stored(ob)
            await await_for(lambda: host_of(sub).samples() >= set(want), what="every stored sample", timeout=60)
    host = host_of(sub)
    got = host.values()
    assert {k: got[k] for k in want} == want
    bds = [bd_seq(b) for b in host.of("NBIRTH")]
    assert bds[0] == 0 and bds[-1] >= 1 and bds == sorted(bds)  # each connect takes the next bdSeq
    assert (tmp_path / "bd.json").read_text().strip() == f'{{"bdSeq": {bds[-1]}}}'
    ob.close()
