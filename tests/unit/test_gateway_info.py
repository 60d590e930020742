"""The gateway's info and heartbeat records (pure): what they hold, and what each sink makes of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.cli.main import main
from gateway.config.settings import load_config
from gateway.model import BatchKind
from gateway.runtime.core import Runtime
from gateway.runtime.gatewayinfo import (
    GatewayCounters,
    SinkCounters,
    config_digest,
    heartbeat_record,
    info_record,
    metric_by_label,
    metric_total,
    status_batch,
)
from gateway.sinks.influx.lineproto import encode_batch
from gateway.sinks.mqtt.payloads import MqttState, Topics, render_rows
from gateway.store.outbox import Outbox, Row
from tests.runtime_support import run_until

T = 1_700_000_000_123_456_789
CONFIG = """\
site: {name: s1}
sources:
  - {type: simulated, name: rack-01}
  - {type: simulated, name: rack-02, enabled: false}
sinks:
  influx: {type: influxdb, url: "http://127.0.0.1:1", token: secret-one}
  mqtt: {type: mqtt, host: 127.0.0.1, tls: false}
  spare: {type: mqtt, host: 127.0.0.1, enabled: false}
"""


def write(tmp_path: Path, text: str = CONFIG) -> Path:
    p = tmp_path / "gateway.yaml"
    p.write_text(text)
    return p


def test_info_names_version_digest_start_sources_and_sinks(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path))
    rec = info_record(loaded, ts=T, started=T - 5, version="1.2.3", reason="start")
    assert rec["type"] == "info" and rec["component"] == "info" and rec["reason"] == "start"
    assert rec["version"] == "1.2.3" and rec["started"] == T - 5 and rec["ts"] == T
    assert rec["config_digest"] == config_digest(loaded) and len(str(rec["config_digest"])) == 64
    assert rec["sources"] == ["rack-01"]  # what runs: enabled entries only
    assert rec["sinks"] == ["influx", "mqtt"]
    assert isinstance(rec["host"], str) and rec["host"] and isinstance(rec["pid"], int)


def test_config_digest_follows_the_effective_configuration_never_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path)
    digest = config_digest(load_config(path))
    assert config_digest(load_config(path)) == digest  # stable
    path.write_text(CONFIG.replace("secret-one", "secret-two"))
    assert config_digest(load_config(path)) == digest  # a secret's value never shows, not even as a hash
    monkeypatch.setenv("BMS_GATEWAY__SINKS__MQTT__PORT", "1884")
    assert config_digest(load_config(path)) != digest  # an environment override is part of what runs
    monkeypatch.delenv("BMS_GATEWAY__SINKS__MQTT__PORT")
    path.write_text(CONFIG.replace("name: rack-01}", "name: rack-01, interval: 2}"))
    assert config_digest(load_config(path)) != digest


def counters(**kw: object) -> GatewayCounters:
    base: dict[str, object] = {
        "uptime_s": 12.34567,
        "samples_stored": 1000,
        "batches_stored": 10,
        "samples_dropped": 3,
        "queue_samples": 0,
        "store_bytes": 40960,
        "store_pending_samples": 20,
        "store_disk_full": False,
        "alarms_active": 2,
        "racks": {"online": 1, "degraded": 1, "offline": 0},
    }
    return GatewayCounters(**{**base, **kw})  # type: ignore[arg-type]


SINK = SinkCounters(
    connected=True,
    delivered_samples=980,
    pending_samples=20,
    lag_s=0.25,
    retries=1,
    dead_lettered=0,
    dropped_samples=3,
)


def test_heartbeat_record_has_the_gateway_counters_and_one_entry_per_sink() -> None:
    rec = heartbeat_record(T, counters(), {"influx": SINK})
    assert rec == {
        "type": "heartbeat",
        "component": "gateway",
        "ts": T,
        "uptime_s": 12.346,
        "samples_stored": 1000,
        "batches_stored": 10,
        "samples_dropped": 3,
        "queue_samples": 0,
        "store_bytes": 40960,
        "store_pending_samples": 20,
        "store_disk_full": False,
        "alarms_active": 2,
        "racks_online": 1,
        "racks_degraded": 1,
        "racks_offline": 0,
        "sinks": {
            "influx": {
                "connected": True,
                "delivered_samples": 980,
                "pending_samples": 20,
                "lag_s": 0.25,
                "retries": 1,
                "dead_lettered": 0,
                "dropped_samples": 3,
            }
        },
    }
    assert "store_bytes" not in heartbeat_record(T, counters(store_bytes=None), {})


def test_influx_lines_of_info_and_heartbeat(tmp_path: Path) -> None:
    beat = status_batch(heartbeat_record(T, counters(), {"influx": SINK}))
    lines = encode_batch(beat, "s1", "ms")
    ms = T // 1_000_000
    assert lines == [
        "gateway,site=s1,component=gateway alarms_active=2.0,batches_stored=10.0,queue_samples=0.0,"
        "racks_degraded=1.0,racks_offline=0.0,racks_online=1.0,samples_dropped=3.0,samples_stored=1000.0,"
        f"store_bytes=40960.0,store_disk_full=false,store_pending_samples=20.0,uptime_s=12.346 {ms}",
        "gateway,site=s1,component=sink,sink=influx connected=true,dead_lettered=0.0,delivered_samples=980.0,"
        f"dropped_samples=3.0,lag_s=0.25,pending_samples=20.0,retries=1.0 {ms}",
    ]
    loaded = load_config(write(tmp_path))
    info = status_batch(info_record(loaded, ts=T, started=T - 5, version="1.2.3", reason="reload"))
    [line] = encode_batch(info, "s1", "ns")
    assert line.startswith("gateway,site=s1,component=info ")
    assert f'config_digest="{config_digest(loaded)}"' in line
    assert 'sinks="influx,mqtt",sources="rack-01"' in line and 'reason="reload"' in line
    assert f"started={float(T - 5)!r}" in line and 'version="1.2.3"' in line and line.endswith(f" {T}")
    assert "type=" not in line


def test_mqtt_info_is_retained_and_remembered_heartbeat_has_its_own_topic(tmp_path: Path) -> None:
    topics = Topics("bms", "s1")
    state = MqttState()
    loaded = load_config(write(tmp_path))
    info = status_batch(info_record(loaded, ts=T, started=T - 5, version="1.2.3", reason="start"))
    beat = status_batch(heartbeat_record(T + 1, counters(), {"influx": SINK}))
    msgs = render_rows([Row(1, T, info), Row(2, T + 1, beat)], topics, state)
    assert [(m.topic, m.retain, m.qos) for m in msgs] == [
        ("bms/s1/gateway/info", True, 1),
        ("bms/s1/gateway/heartbeat", True, 1),
    ]
    doc = json.loads(msgs[0].payload)
    assert doc["site"] == "s1" and doc["sources"] == ["rack-01"] and doc["version"] == "1.2.3"
    assert state.info == msgs[0].payload  # published again after every reconnect
    assert json.loads(msgs[1].payload)["sinks"]["influx"]["delivered_samples"] == 980


def test_metric_values_summed_over_labels() -> None:
    registry = CollectorRegistry()
    c = Counter("t_dropped", "x", ["consumer", "reason"], registry=registry)
    c.labels("influx", "disk_budget").inc(3)
    c.labels("influx", "retention").inc(2)
    c.labels("mqtt", "disk_budget").inc(1)
    g = Gauge("t_pending", "x", ["sink"], registry=registry)
    g.labels("mqtt").set(7)
    assert metric_by_label(c, "consumer") == {"influx": 5.0, "mqtt": 1.0}
    assert metric_total(c) == 6.0
    assert metric_by_label(g, "sink") == {"mqtt": 7.0}
    assert metric_total(Gauge("t_empty", "x", ["sink"], registry=registry)) == 0.0


def test_validate_prints_the_digest_the_info_carries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    assert main(["validate", "-c", str(path)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"config digest {config_digest(load_config(path))}")


async def test_a_runtime_stores_its_info_then_heartbeats_in_its_store(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "site: {name: s1}\n"
        "sources: [{type: simulated, name: rack-01, interval: 0.05, modules: 1, cells_per_module: 2}]\n"
        f"store: {{path: '{tmp_path / 'store.db'}'}}\n"
        "http: {enabled: false}\n"
        "runtime: {heartbeat_interval: 0.05}\n",
    )
    rt = Runtime(load_config(path))

    def records() -> list[dict[str, object]]:
        return [r for row in rt.outbox.query() if row.batch.kind == BatchKind.STATUS for r in row.batch.records]

    await run_until(rt, lambda: sum(r["type"] == "heartbeat" and r.get("racks_online") == 1 for r in records()) >= 3)
    ob = Outbox(tmp_path / "store.db")
    try:
        recs = [r for row in ob.query() if row.batch.kind == BatchKind.STATUS for r in row.batch.records]
    finally:
        ob.close()
    assert recs[0]["type"] == "info" and recs[0]["reason"] == "start" and recs[0]["sources"] == ["rack-01"]
    beats = [r for r in recs if r["type"] == "heartbeat"]
    assert all(b["sinks"] == {} and b["store_pending_samples"] == 0 for b in beats)  # the store alone
    stored = [int(str(b["samples_stored"])) for b in beats]
    uptimes = [float(str(b["uptime_s"])) for b in beats]
    assert stored == sorted(stored) and stored[-1] > 0
    assert uptimes == sorted(uptimes) and len(set(uptimes)) == len(uptimes)
    assert int(str(beats[-1]["store_bytes"])) > 0
