"""The Sparkplug edge node's messages (pure), decoded as a host does; the bdSeq file; the command gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.model import Batch, DeviceState, DeviceStatus, Sample
from gateway.sinks.sparkplug.inbound import CommandGate
from gateway.sinks.sparkplug.node import EdgeNode, device_id
from gateway.sinks.sparkplug.state import BdSeqFile
from gateway.store.outbox import Row
from tests.support.sparkplug import BOOLEAN, DOUBLE, INT64, STRING, Host, Payload, quality_of, value_of

MS = 1_000_000


def row(seq: int, samples: list[Sample], status: DeviceStatus | None = None, source: str = "src") -> Row:
    return Row(seq, seq, Batch.of_samples(source, samples, status=status))


def host_reads(node: EdgeNode, msgs: list[object]) -> Host:
    host = Host()
    for m in msgs:
        host.take(m.topic, m.payload)  # type: ignore[attr-defined]
    return host


def test_nbirth_dbirth_and_ddata_as_a_host_reads_them() -> None:
    node = EdgeNode("g", "site1")
    node.bd_seq = 7
    msgs = node.births(1000)
    msgs += node.render([row(1, [Sample(5 * MS, "soc", 61.5, "%", "good", "r1"),
                                 Sample(5 * MS, "cell_voltage", 3.3, "V", "stale", "r1", 2, 7),
                                 Sample(5 * MS, "contactor", "closed", "", "good", "r1")])], 1001)  # fmt: skip
    msgs += node.render([row(2, [Sample(6 * MS, "soc", 61.4, "%", "good", "r1"),
                                 Sample(6 * MS, "cell_voltage", None, "V", "comm_loss", "r1", 2, 7),
                                 Sample(6 * MS, "contactor", "open", "", "bad", "r1")])], 1002)  # fmt: skip
    host = host_reads(node, msgs)
    assert [m.topic for m in msgs] == [
        "spBv1.0/g/NBIRTH/site1", "spBv1.0/g/DBIRTH/site1/r1", "spBv1.0/g/DDATA/site1/r1"]  # fmt: skip
    nbirth, dbirth, ddata = (s.payload for s in host.seen)
    assert [p.seq for p in (nbirth, dbirth, ddata)] == [0, 1, 2]
    nb = {m.name: m for m in nbirth.metrics}
    assert nb["bdSeq"].datatype == INT64 and nb["bdSeq"].long_value == 7
    assert nb["Node Control/Rebirth"].datatype == BOOLEAN and value_of(nb["Node Control/Rebirth"]) is False
    born = {m.name: m for m in dbirth.metrics}
    assert set(born) == {"soc", "cell_voltage/2/7", "contactor"}
    assert [born[n].datatype for n in ("soc", "cell_voltage/2/7", "contactor")] == [DOUBLE, DOUBLE, STRING]
    assert len({m.alias for m in dbirth.metrics} | {0}) == 4  # unique, and none is the rebirth's alias 0
    assert value_of(born["soc"]) == 61.5 and born["soc"].timestamp == 5 and quality_of(born["cell_voltage/2/7"]) == 500
    # DDATA by alias only, each value with its time and quality
    assert all(not m.HasField("name") for m in ddata.metrics)
    got = {host.aliases[("r1", m.alias)]: (value_of(m), m.timestamp, quality_of(m)) for m in ddata.metrics}
    assert got == {"soc": (61.4, 6, 192), "cell_voltage/2/7": (None, 6, 500), "contactor": ("open", 6, 0)}
    assert host.samples() == {(d, n, t) for d in ("r1",) for n in born for t in (5, 6)}


def test_a_new_metric_rebirths_its_device_before_its_data() -> None:
    node = EdgeNode("g", "n")
    node.births(0)
    node.render([row(1, [Sample(MS, "soc", 1.0, "%", "good", "r1")])], 1)
    msgs = node.render([row(2, [Sample(2 * MS, "soc", 2.0, "%", "good", "r1"),
                                Sample(2 * MS, "soh", 99.0, "%", "good", "r1"),
                                Sample(3 * MS, "soh", 98.0, "%", "good", "r1")])], 2)  # fmt: skip
    assert [m.topic.split("/")[2] for m in msgs] == ["DBIRTH", "DDATA"]
    dbirth, ddata = (Payload.FromString(m.payload) for m in msgs)
    born = {m.name: (value_of(m), m.timestamp) for m in dbirth.metrics}
    assert born == {"soc": (1.0, 1), "soh": (99.0, 2)}  # soc's last sent value, soh's first sample
    assert [(value_of(m), m.timestamp) for m in ddata.metrics] == [(2.0, 2), (98.0, 3)]


def test_a_metric_changing_datatype_is_reborn_after_the_data_before_it() -> None:
    node = EdgeNode("g", "n")
    node.births(0)
    msgs = node.render([row(1, [Sample(MS, "state", None, "", "missing", "r1"),
                                Sample(2 * MS, "state", None, "", "missing", "r1"),
                                Sample(3 * MS, "state", "run", "", "good", "r1")])], 1)  # fmt: skip
    kinds = [m.topic.split("/")[2] for m in msgs]
    assert kinds == ["DBIRTH", "DDATA", "DBIRTH"]
    last = Payload.FromString(msgs[-1].payload).metrics[0]
    assert last.datatype == STRING and value_of(last) == "run" and last.timestamp == 3


def test_seq_wraps_at_255_across_node_messages_and_restarts_at_nbirth() -> None:
    node = EdgeNode("g", "n")
    seqs = [Payload.FromString(m.payload).seq for m in node.births(0)]
    for i in range(300):
        seqs += [Payload.FromString(m.payload).seq for m in node.render([row(i, [Sample(i, "soc", i, "%")])], i)]
    assert seqs == [k % 256 for k in range(len(seqs))]  # NBIRTH 0, DBIRTH 1, DDATA 2.., 255, 0, 1, ...
    assert len(seqs) == 301  # the first sample is the DBIRTH's value: no DDATA then
    assert [Payload.FromString(m.payload).seq for m in node.births(1)] == [0, 1]  # a rebirth starts again


def test_a_device_going_offline_dies_and_is_reborn_with_its_next_sample() -> None:
    node = EdgeNode("g", "n")
    node.births(0)
    node.render([row(1, [Sample(MS, "soc", 1.0, "%", "good", "r/1")], source="dev")], 1)
    offline = DeviceStatus("dev", DeviceState.OFFLINE, "timeout", 2)
    msgs = node.render([row(2, [Sample(2 * MS, "soc", None, "%", "comm_loss", "r/1")], offline, "dev")], 2)
    assert [m.topic for m in msgs] == ["spBv1.0/g/DDATA/n/r_1", "spBv1.0/g/DDEATH/n/r_1"]
    assert node.births(3)[1:] == []  # a dead device is not reborn by a rebirth
    again = node.render([row(3, [Sample(3 * MS, "soc", 2.0, "%", "good", "r/1")], source="dev")], 3)
    assert [m.topic.split("/")[2] for m in again] == ["DBIRTH", "DDATA"]


def test_device_ids_are_one_topic_level() -> None:
    assert [device_id(r) for r in ("rack-01", "a/b+c#d e", "")] == ["rack-01", "a_b_c_d_e", "gateway"]


def test_births_after_a_reconnect_carry_every_metric_with_its_last_value() -> None:
    node = EdgeNode("g", "n")
    node.births(0)
    node.render([row(1, [Sample(MS, "soc", 1.0, "%", "good", "r1"), Sample(MS, "soc", 1.0, "%", "good", "r2")])], 1)
    node.render([row(2, [Sample(2 * MS, "soc", 5.0, "%", "good", "r1")])], 2)
    node.bd_seq = 1
    msgs = node.births(9)
    assert [m.topic.split("/")[-1] for m in msgs] == ["n", "r1", "r2"]
    assert Payload.FromString(msgs[0].payload).metrics[0].long_value == 1
    assert value_of(Payload.FromString(msgs[1].payload).metrics[0]) == 5.0


# -- the bdSeq file ---------------------------------------------------------------------------------


def test_bdseq_goes_on_across_restarts_and_wraps(tmp_path: Path) -> None:
    path = tmp_path / "store.db.sparkplug-sp.json"
    first = BdSeqFile(path)
    assert [first.next(), first.next()] == [0, 1]
    assert BdSeqFile(path).next() == 2  # a restart: the last one plus one
    path.write_text('{"bdSeq": 255}\n')
    assert BdSeqFile(path).next() == 0
    assert not path.with_name(path.name + ".tmp").exists()


@pytest.mark.parametrize("text", ["not json", '{"bdSeq": 300}', "[1]", '{"bdSeq": "3"}'])
def test_a_damaged_bdseq_file_starts_at_zero(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bd.json"
    path.write_text(text)
    assert BdSeqFile(path).next() == 0
    assert BdSeqFile(path).next() == 1  # and is whole again


def test_a_bdseq_file_that_cannot_be_written_goes_on_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    bd = BdSeqFile(blocker / "sub" / "bd.json")  # its directory cannot be made: a file is in the way
    assert [bd.next(), bd.next(), bd.next()] == [0, 1, 2]


# -- the command gate -------------------------------------------------------------------------------


def _ncmd(**metric: object) -> bytes:
    p = Payload(timestamp=1)
    p.metrics.add(**metric)
    return bytes(p.SerializeToString())


def test_the_command_gate() -> None:
    topic = "spBv1.0/g/NCMD/n"
    gate = CommandGate(topic, max_bytes=100, per_minute=60)
    rebirth = _ncmd(name="Node Control/Rebirth", datatype=BOOLEAN, boolean_value=True)
    assert gate.judge(topic, rebirth, 0.0).rebirth
    assert gate.judge(topic, _ncmd(alias=0, datatype=BOOLEAN, boolean_value=True), 0.0).rebirth
    assert gate.judge(topic, _ncmd(name="Node Control/Rebirth", datatype=BOOLEAN, boolean_value=False),
                      0.0).result == "ignored"  # fmt: skip
    assert gate.judge(topic, _ncmd(name="Node Control/Reboot", datatype=BOOLEAN, boolean_value=True),
                      0.0).result == "ignored"  # fmt: skip
    assert gate.judge("spBv1.0/g/DCMD/n/r1", rebirth, 0.0).result == "ignored"
    assert gate.judge(topic, b"\x12\xff", 0.0).result == "malformed"
    assert gate.judge(topic, rebirth + b"\x00" * 200, 0.0).result == "too_large"
    results = [gate.judge(topic, rebirth, 0.0).result for _ in range(100)]
    assert results.count("rate_limited") == 100 - (60 - 7)  # 60 a minute: 7 taken above
    assert gate.judge(topic, rebirth, 1.0).rebirth  # one more a second


# -- configuration ----------------------------------------------------------------------------------


def test_the_sink_configuration(tmp_path: Path) -> None:
    from gateway.config.settings import GatewayConfig, LoadedConfig
    from gateway.sinks.sparkplug.sink import build
    from gateway.sinks.transport import exposures

    data = {"site": {"name": "s1"}, "store": {"path": str(tmp_path / "store.db")}, "sinks": {"sp": {
        "type": "sparkplug", "host": "broker.example", "tls": False, "password": "x",
        "report_by_exception": {"deadbands": {"cell_voltage": 0.005}}}}}  # fmt: skip
    loaded = LoadedConfig(GatewayConfig.model_validate(data), tmp_path / "gateway.yaml")
    cfg = loaded.config.sinks["sp"]
    sink = build("sp", cfg, loaded)  # type: ignore[arg-type]
    assert sink.node.topics.node_topic("NBIRTH") == "spBv1.0/bms/NBIRTH/s1"  # the node id defaults to the site
    assert sink.bd_file.path == tmp_path / "store.db.sparkplug-sp.json"
    assert [e.key for e in exposures(cfg)] == ["password"]  # no password over plain MQTT, as for the MQTT sink
