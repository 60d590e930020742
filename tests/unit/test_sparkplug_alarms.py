"""Alarms and properties on Sparkplug (pure): the alarm engine's events as the rack device's
`Alarms/<id>/Active` and `State` metrics, the gateway's own on the node, a dead device's kept for its
next birth, the active set after a restart; `Properties/...` in NBIRTH and DBIRTH. Decoded as a host does."""

from __future__ import annotations

from gateway.alarms.gatewayalarm import Condition, event_batch
from gateway.alarms.instances import rack_batch
from gateway.model import Batch, DeviceState, DeviceStatus, Sample
from gateway.sinks.mqtt.payloads import Message
from gateway.sinks.sparkplug.node import EdgeNode
from gateway.sinks.sparkplug.properties import DeviceInfo, NodeInfo
from gateway.store.outbox import Row
from tests.alarms_support import RACK, S, batch, engine, rule, sample
from tests.support.sparkplug import BOOLEAN, STRING, Host

MS = 1_000_000
ID = f"{RACK}:soc_high"
ACTIVE, STATE = f"Alarms/{ID}/Active", f"Alarms/{ID}/State"


def rows(batches: list[Batch]) -> list[Row]:
    return [Row(i, i, b) for i, b in enumerate(batches)]


def read(msgs: list[Message], host: Host | None = None) -> Host:
    host = host or Host()
    for m in msgs:
        host.take(m.topic, m.payload)
    return host


def test_a_rule_that_raises_and_clears_arrives_as_two_ddata_values_in_order() -> None:
    eng = engine(rule(id="soc_high", kind="threshold", quantity="soc", high=90.0))
    stored: list[Batch] = []
    for t, v in ((1, 50.0), (2, 95.0), (3, 96.0), (4, 50.0)):
        b = batch(sample(t, "soc", v))
        stored += [b, *eng.process([b])]  # each batch, then the alarm batches it made (as the store has them)
    node = EdgeNode("g", "n")
    host = read(node.births(0) + node.render(rows(stored), 9))
    got = host.series(RACK, "Alarms/")
    assert got == [
        ("DBIRTH", ACTIVE, False, 2000), ("DBIRTH", STATE, "normal", 2000),  # born as before its first event
        ("DDATA", ACTIVE, True, 2000), ("DDATA", STATE, "active_unack", 2000),
        ("DDATA", ACTIVE, False, 4000), ("DDATA", STATE, "rtn_unack", 4000),
    ]  # fmt: skip
    dbirth = [s for s in host.seen if s.kind == "DBIRTH"][-1].payload
    types = {m.name: m.datatype for m in dbirth.metrics}
    assert types[ACTIVE] == BOOLEAN and types[STATE] == STRING
    assert {m.name for m in dbirth.metrics} == {"soc", ACTIVE, STATE}
    # the samples around the alarm are all there (the DBIRTH repeats the latest)
    assert {(v, t) for _k, _n, v, t in host.series(RACK, "soc")} == {(50.0, 1000), (95.0, 2000), (96.0, 3000),
                                                                      (50.0, 4000)}  # fmt: skip
    # an acknowledgement is a third value; seq runs on across every message
    errors, acked = eng.command("ack", [ID], "alice", "seen", 5 * S)
    assert not errors
    host = read(node.render(rows(acked), 10), host)
    assert host.series(RACK, "Alarms/")[-1] == ("DDATA", STATE, "normal", 5000)
    seqs = [s.payload.seq for s in host.seen]
    assert seqs == list(range(len(seqs)))


def test_gateway_alarms_are_node_metrics_a_new_one_a_rebirth() -> None:
    node = EdgeNode("g", "n")
    msgs = node.births(0) + node.render(rows([batch(sample(1, "soc", 50.0))]), 1)
    raised = event_batch(Condition("store_disk_full", True, "disk full", "critical", 2 * S))
    cleared = event_batch(Condition("store_disk_full", False, "disk ok", "critical", 3 * S))
    host = read(msgs + node.render(rows([raised, cleared]), 2))
    assert [s.kind for s in host.seen] == ["NBIRTH", "DBIRTH", "NBIRTH", "DBIRTH", "NDATA", "NDATA"]
    assert [s.payload.seq for s in host.seen] == [0, 1, 0, 1, 2, 3]  # the rebirth starts at 0 again
    name = "Alarms/gateway:store_disk_full"
    assert host.series(None, "Alarms/") == [
        ("NBIRTH", f"{name}/Active", False, 2000), ("NBIRTH", f"{name}/State", "normal", 2000),
        ("NDATA", f"{name}/Active", True, 2000), ("NDATA", f"{name}/State", "active_unack", 2000),
        ("NDATA", f"{name}/Active", False, 3000), ("NDATA", f"{name}/State", "rtn_unack", 3000),
    ]  # fmt: skip
    assert host.series(RACK, "Alarms/") == []
    # the node's alarms stay in its births (a reconnect)
    read(node.births(4), host)
    assert host.born("NBIRTH")[f"{name}/State"] == "rtn_unack"


def test_a_dead_devices_alarms_wait_for_its_next_birth() -> None:
    eng = engine(rule(id="soc_high", kind="threshold", quantity="soc", high=90.0))
    node = EdgeNode("g", "n")
    msgs = node.births(0) + node.render(rows([batch(sample(1, "soc", 50.0))]), 1)
    offline = Batch.of_samples(RACK, [Sample(2 * S, "soc", 95.0, "%", "good", RACK)], device=RACK,
                               status=DeviceStatus(RACK, DeviceState.OFFLINE, "timeout", 2 * S))  # fmt: skip
    stored = [offline, *eng.process([offline])]
    msgs += node.render(rows(stored), 2)
    host = read(msgs)
    assert [s.kind for s in host.seen][-2:] == ["DDATA", "DDEATH"]  # nothing after its death
    back = batch(sample(3, "soc", 95.5))
    host = read(node.render(rows([back]), 3), host)
    assert [s.kind for s in host.seen][-2:] == ["DBIRTH", "DDATA"]
    assert host.born("DBIRTH", RACK)[STATE] == "active_unack" and host.born("DBIRTH", RACK)[ACTIVE] is True


def test_the_active_set_after_a_restart_is_born_with_its_state() -> None:
    node = EdgeNode("g", "n")
    node.births(0)
    active = [{"alarm_id": ID, "severity": "warning", "state": "active_ack", "since": 7 * S, "message": "x"}]
    host = read(node.render(rows([rack_batch(RACK, 9 * S, [], active)]), 9))
    assert host.series(RACK, "Alarms/") == [("DBIRTH", ACTIVE, True, 7000), ("DBIRTH", STATE, "active_ack", 7000)]
    assert node.render(rows([rack_batch(RACK, 10 * S, [], active)]), 10) == []  # known as that: nothing


def test_node_and_device_properties_in_their_births() -> None:
    info = NodeInfo("site-1", "1.2.3", {RACK: DeviceInfo("bmu-1", "modbus", "byd_battery_box")})
    node = EdgeNode("g", "n", info=info)
    host = read(node.births(0) + node.render(rows([batch(sample(1, "soc", 50.0)), batch(sample(1, "soc", 1.0,
                                                                                        rack="r9"))]), 1))  # fmt: skip
    nb = host.born("NBIRTH")
    assert {k: v for k, v in nb.items() if k.startswith("Properties/")} == {
        "Properties/Software": "bms-gateway",
        "Properties/Software Version": "1.2.3",
        "Properties/Site": "site-1",
    }
    assert nb["Node Control/Rebirth"] is False
    assert host.born("DBIRTH", RACK) == {"Properties/Source": "bmu-1", "Properties/Source Type": "modbus",
                                        "Properties/Profile": "byd_battery_box", "soc": 50.0}  # fmt: skip
    assert host.born("DBIRTH", "r9") == {"soc": 1.0}  # a rack no source tags: no properties
    assert host.series(RACK, "Properties/")[0][0] == "DBIRTH" and all(
        k == "DBIRTH" for k, *_ in host.series(RACK, "Properties/"))  # fmt: skip
