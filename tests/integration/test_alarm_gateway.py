"""The gateway's own alarms in the real runtime: a broker refusing the MQTT sink's password raises
`gateway:sink_auth_failed:mqtt` through the alarm engine (status page, metric, journal, `alarms list`,
acknowledgement, InfluxDB, the retained MQTT topic once the broker lets it in); a full disk raises
`gateway:store_disk_full` while neither the store nor the journal can be written, and the journal
takes its entries once there is room."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway import metrics
from gateway.alarms.commands import Command
from gateway.alarms.journal import Journal
from gateway.alarms.service import AlarmService, service_of
from gateway.cli.main import main
from gateway.config.settings import load_config
from gateway.ops.service import operations
from gateway.runtime.core import Runtime
from tests.delivery_support import vm_series
from tests.servers import Mosquitto, VictoriaMetrics
from tests.support.waits import await_for

AUTH = "gateway:sink_auth_failed:mqtt"
DISK = "gateway:store_disk_full"


def config(tmp_path: Path, *, mqtt_port: int | None = None, vm_url: str | None = None, journal: str = "") -> Path:
    sinks = ""
    if mqtt_port is not None and vm_url is not None:
        sinks = f"""\
sinks:
  mqtt: {{type: mqtt, host: 127.0.0.1, port: {mqtt_port}, tls: false, username: gw, password: wrong,
          batch_max_age: 0.05, backoff_initial: 0.1, backoff_max: 0.5}}
  influx: {{type: influxdb, url: "{vm_url}", bucket: bms, batch_max_age: 0.1, backoff_initial: 0.1}}
"""
    p = tmp_path / "gateway.yaml"
    p.write_text(f"""\
site: {{name: s1}}
sources:
  - {{type: simulated, name: rack-01, interval: 0.05, speed: 100, faults: []}}
{sinks}store: {{path: {tmp_path / "store.db"}, commit_interval: 0.02}}
http: {{enabled: {str(mqtt_port is not None).lower()}, host: 127.0.0.1, port: 0}}
alarms: {{tick_interval: 0.05{journal}}}
""", encoding="utf-8")  # fmt: skip
    return p


def state_of(svc: AlarmService, alarm_id: str) -> str:
    inst = svc.engine.by_id.get(alarm_id)
    return "normal" if inst is None else str(inst.alarm.state)


def journal_states(path: Path, alarm_id: str) -> list[tuple[str, str | None]]:
    j = Journal(path, readonly=True)
    try:
        return [(e.body["state"], e.body.get("user")) for e in j.entries()
                if e.kind == "event" and e.body.get("alarm_id") == alarm_id]  # fmt: skip
    finally:
        j.close()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


async def retained(port: int, topic: str, user: str, password: str) -> Any:
    """The retained message of a topic, read with the broker's credentials."""
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, username=user, password=password, identifier="gw-test") as c:
        await c.subscribe(topic, qos=1)
        async with asyncio.timeout(30):
            async for msg in c.messages:
                raw = msg.payload
                return json.loads(raw.decode() if isinstance(raw, bytes | bytearray) else str(raw))
    return None


async def test_a_refused_sink_is_a_gateway_alarm_with_every_output(
    tmp_path: Path, victoria: VictoriaMetrics, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", users={"gw": "right"}).start()  # the gateway's password is wrong
    request.addfinalizer(broker.stop)  # also when the test fails (stopping twice is harmless)
    cfg = config(tmp_path, mqtt_port=broker.port, vm_url=victoria.url)
    store = tmp_path / "store.db"
    rt = Runtime(load_config(cfg))
    svc = service_of(rt)
    assert svc is not None
    task = asyncio.create_task(rt.run())
    try:
        await await_for(lambda: state_of(svc, AUTH) == "active_unack", timeout=60, what="the alarm raised")
        ops = operations(rt)
        assert ops is not None
        await await_for(lambda: ops.http is not None, what="the status page")
        assert ops.http is not None
        url = ops.http.url.rstrip("/")

        async def listed() -> list[dict[str, Any]]:
            doc = json.loads(await asyncio.to_thread(get, f"{url}/api/status?points=0"))
            assert "gateway" not in [r["rack"] for r in doc["racks"]]  # its own alarms make no rack
            return [a for a in doc["alarms"] if a.get("alarm_id") == AUTH]

        async def page_shows(states: list[str]) -> None:
            async def shown() -> bool:
                return [a["state"] for a in await listed()] == states

            await await_for(shown, 60, f"the status page showing {states}")

        await page_shows(["active_unack"])
        (on_page,) = await listed()
        assert (on_page["rack"], on_page["severity"]) == ("gateway", "critical")
        assert "refused" in on_page["message"] and "wrong" not in on_page["message"]
        assert 'bms_gateway_alarms_active{severity="critical"} 1.0' in await asyncio.to_thread(get, f"{url}/metrics")
        # The journal (read while the gateway runs): `alarms list` shows it, the chain verifies.
        assert main(["alarms", "list", "--store", str(store)]) == 0
        assert AUTH in capsys.readouterr().out
        assert main(["alarms", "verify", "--store", str(store)]) == 0

        reply = await svc.command(Command("ack", "gateway", (AUTH,), "alice", "password on its way", None, "7"))
        assert reply["ok"] is True and state_of(svc, AUTH) == "active_ack"
        await page_shows(["active_ack"])

        broker.users = {"gw": "wrong"}  # the broker now takes the gateway's password
        broker.restart()
        await await_for(lambda: state_of(svc, AUTH) == "normal", timeout=60, what="the alarm cleared")
        await page_shows([])
        assert metrics.REGISTRY.get_sample_value("bms_gateway_alarms_active", {"severity": "critical"}) == 0

        def counts() -> list[float]:  # InfluxDB's `alarms_active` measurement of rack `gateway`
            series = vm_series(victoria, '{__name__="alarms_active_count",rack="gateway"}')
            return [v for _, v in series.get("alarms_active_count", [])]

        await await_for(lambda: 1.0 in counts() and 0.0 in counts(), timeout=60, what="the alarm in InfluxDB")
        await await_for(lambda: rt.runners[0].caught_up(), timeout=60, what="the MQTT sink caught up")
    finally:
        rt.request_stop("test")
        await task
    active = await retained(broker.port, "bms/s1/gateway/alarms/active", "gw", "wrong")
    broker.stop()
    assert (active["rack"], active["active"]) == ("gateway", [])  # the retained active set: nothing in view now
    assert journal_states(store, AUTH) == [("active_unack", None), ("active_ack", "alice"), ("normal", None)]
    assert main(["alarms", "verify", "--store", str(store)]) == 0


def _fill(db: sqlite3.Connection) -> None:
    """The disk is full, as SQLite sees it: no page more."""
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    db.execute(f"PRAGMA max_page_count={pages}")


async def test_a_full_disk_is_an_alarm_journaled_once_there_is_room(tmp_path: Path) -> None:
    store = tmp_path / "journal.db"
    rt = Runtime(load_config(config(tmp_path, journal=f", journal: {{path: {store}}}")))
    svc = service_of(rt)
    assert svc is not None
    failures = metrics.REGISTRY.get_sample_value("bms_gateway_alarm_journal_failures_total") or 0.0
    task = asyncio.create_task(rt.run())
    try:
        await await_for(lambda: rt.outbox.last_seq() > 20, what="samples stored")
        rt.outbox.disk_full_clear_after = 3600.0
        _fill(rt.outbox.db)  # the disk is full: for the store ...
        svc.journal.db.close()  # ... and the journal cannot be written either
        await await_for(lambda: state_of(svc, DISK) == "active_unack", what="the alarm raised")
        await await_for(lambda: bool(svc._unjournaled), what="journal entries kept in memory")
        assert (metrics.REGISTRY.get_sample_value("bms_gateway_alarm_journal_failures_total") or 0.0) > failures
        assert DISK not in [a for a, _ in _journal_ids(store)]  # not in the journal yet
        assert svc.engine.counts()["critical"] == 1

        rt.outbox.db.execute("PRAGMA max_page_count=1073741823")  # room again
        svc.journal = Journal(store)
        await await_for(lambda: (DISK, "active_unack") in _journal_ids(store), what="the kept entries journaled")
        assert svc._unjournaled == []
        rt.outbox.disk_full_clear_after = 0.0
        await await_for(lambda: state_of(svc, DISK) == "rtn_unack", what="the alarm returned to normal")
        await await_for(lambda: (DISK, "rtn_unack") in _journal_ids(store), what="the return journaled")
    finally:
        rt.request_stop("test")
        await task
    j = Journal(store, readonly=True)
    assert j.verify()[1] == []  # the chain in order, the kept entries included
    j.close()


def _journal_ids(path: Path) -> list[tuple[str, str]]:
    j = Journal(path, readonly=True)
    try:
        return [(e.body["alarm_id"], e.body["state"]) for e in j.entries() if e.kind == "event"]
    finally:
        j.close()
