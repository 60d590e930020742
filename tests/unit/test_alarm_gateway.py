"""The gateway's own alarms (rack `gateway`) through `GatewayAlarms` and the alarm engine: states, journal,
acknowledgement, restart; a full disk reported without writing to it; the event rows when no engine runs."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.gatewayalarm import STORE_DISK_FULL, Condition, GatewayAlarms, orphaned, sink_auth_failed
from gateway.model import BatchKind
from gateway.store.outbox import Outbox
from tests.alarms_support import S, batch, engine, events, rule, sample, states

DF = "gateway:store_disk_full"
UA, AA, RTN, N = "active_unack", "active_ack", "rtn_unack", "normal"


def fill(ob: Outbox) -> None:
    """The store's disk has no room left (a full file system, as SQLite sees it)."""
    pages = int(ob.db.execute("PRAGMA page_count").fetchone()[0])
    ob.db.execute(f"PRAGMA max_page_count={pages}")


def room(ob: Outbox) -> None:
    ob.db.execute("PRAGMA max_page_count=1073741823")


def alarm_rows(ob: Outbox) -> list[dict[str, object]]:
    return [r for row in ob.query() if row.batch.kind == BatchKind.ALARM for r in row.batch.records]


def test_a_full_disk_is_reported_without_a_write_and_the_engine_makes_it_an_alarm(tmp_path: Path) -> None:
    gw = GatewayAlarms(engine=True)
    ob = Outbox(tmp_path / "o.db", consumers=["influx"], alarms=gw)
    ob.disk_full_clear_after = 3600.0  # while the disk is full, it stays so
    ob.append([batch(sample(k, "soc", 50.0)) for k in range(1, 20)])
    fill(ob)
    for k in range(20, 60):
        ob.append([batch(sample(k, "soc", 50.0))])  # fails for want of room: counted, never raised
    assert ob.disk_full and STORE_DISK_FULL in gw.active
    assert alarm_rows(ob) == []  # nothing was written for the alarm: the engine takes it from `gw`

    eng = engine(rule(id="st", kind="stale", max_age=5))
    raised = eng.gateway(gw.take_changes())
    (event,) = events(raised)
    assert (event["alarm_id"], event["rack"], event["rule"], event["severity"], event["state"]) == (
        DF, "gateway", "store_disk_full", "critical", UA)  # fmt: skip
    assert "disk is full" in str(event["message"]) and str(ob.path) in str(event["message"])
    assert raised[0].device == "gateway" and raised[0].records[-1]["active"][0]["alarm_id"] == DF  # type: ignore[index]
    assert eng.counts()["critical"] == 1 and eng.ids_of_rack("gateway") == [DF]
    assert [e["alarm_id"] for e in eng.take_journal()] == [DF]

    errors, acked = eng.command("ack", [DF], "alice", "freeing space", 70 * S)
    assert errors == [] and states(acked) == [(UA, AA)]
    room(ob)
    ob._set_disk_full(False)  # the store's own recovery ends in this call
    assert STORE_DISK_FULL not in gw.active
    assert states(eng.gateway(gw.take_changes())) == [(AA, N)]
    assert eng.counts()["critical"] == 0
    assert states(eng.tick(10_000 * S)) == []  # `gateway` is no rack: never stale
    ob.close()


def test_a_report_is_news_once_and_wakes_the_engine_from_any_thread() -> None:
    gw = GatewayAlarms(engine=True)
    woken: list[str] = []
    gw.attach([], lambda: woken.append(threading.current_thread().name))
    name = sink_auth_failed("influx")
    assert gw.set(name, True, "refused (401)") is True
    assert gw.set(name, True, "refused (401)") is False  # already so: nothing new
    assert gw.set(sink_auth_failed("mqtt"), False, "fine") is False  # never raised: nothing to clear
    t = threading.Thread(target=gw.set, args=(name, False, "accepted"), name="writer")
    t.start()
    t.join()
    assert [(c.alarm_id, c.active) for c in gw.take_changes()] == [
        ("gateway:sink_auth_failed:influx", True), ("gateway:sink_auth_failed:influx", False)]  # fmt: skip
    assert woken == ["MainThread", "writer"] and gw.take_changes() == []
    assert gw.take_events() == []  # the engine takes them: no event rows


def test_a_restart_keeps_a_gateway_alarm_until_its_component_reports() -> None:
    first = AlarmEngine([], {})
    first.gateway(_changes(STORE_DISK_FULL, True))
    first.gateway(_changes(sink_auth_failed("influx"), True))
    journal = first.take_journal()

    # The restart: the engine restores both; still full, so the store confirms it (no flap), and the
    # sink that writes again clears its own.
    eng = AlarmEngine([rule(id="st", kind="stale", max_age=5)], {})
    eng.restore(journal, 100 * S)
    gw = GatewayAlarms(engine=True)
    gw.attach(eng.gateway_conditions(), lambda: None)
    assert gw.restored == {STORE_DISK_FULL, sink_auth_failed("influx")}
    assert gw.set(STORE_DISK_FULL, True, "the store's disk is full") is True  # news to this process (log, metric)
    assert gw.set(sink_auth_failed("influx"), False, "accepted") is True
    assert gw.restored == set()
    assert states(eng.gateway(gw.take_changes())) == [(UA, RTN)]  # only the sink's: the disk stayed active
    assert eng.active("gateway")[0]["alarm_id"] == DF and eng.racks == set()
    assert states(eng.tick(200 * S)) == []


def test_without_an_engine_a_report_is_an_event_row(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", consumers=["influx"])  # on its own: no alarm engine
    ob.disk_full_clear_after = 3600.0
    ob.append([batch(sample(k, "soc", 50.0)) for k in range(1, 20)])
    fill(ob)
    for k in range(20, 60):
        ob.append([batch(sample(k, "soc", 50.0))])
    assert ob.disk_full
    room(ob)
    ob._set_disk_full(False)  # the store's own recovery ends in this call
    # Event rows as before (the raise only if the full disk took it), with the engine's alarm id.
    rows = [(r["alarm_id"], r["state"], r["rack"]) for r in alarm_rows(ob)]
    assert rows[-1] == (DF, RTN, "gateway") and set(rows[:-1]) <= {(DF, UA, "gateway")}
    ob.close()


def test_alarms_of_sinks_no_longer_configured_are_orphaned() -> None:
    names = [STORE_DISK_FULL, sink_auth_failed("influx"), sink_auth_failed("old")]
    assert orphaned(names, ["influx", "mqtt"]) == [sink_auth_failed("old")]


def _changes(name: str, active: bool) -> list[Condition]:
    gw = GatewayAlarms(engine=True)
    gw.set(name, active, f"{name} {'raised' if active else 'cleared'}")
    return gw.take_changes()
