"""The running daemon's store locked by another process (gateway.store.lockfault): writes wait in memory
exactly as on a full disk, with a state and an alarm of their own (`gateway:store_locked`, never the
disk-full one), and everything is stored in order once the lock goes. No event loop: the outbox is
called as the daemon calls it, and another connection of this process holds the lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import structlog

from gateway import metrics
from gateway.alarms.gatewayalarm import STORE_DISK_FULL, STORE_LOCKED, Condition, GatewayAlarms
from gateway.model import Batch, BatchKind, Quality, Sample
from gateway.store import lockwait
from gateway.store.diskfault import LOCKED, store_fault
from gateway.store.outbox import Outbox
from tests.support.manual import manual_text
from tests.support.store import lock_held
from tests.support.waits import wait_for

T0 = 1_700_000_000_000_000_000
LOCK_AFTER = 0.3  # the busy timeout, shortened: how long a lock lasts before it is announced


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockwait, "BUSY_TIMEOUT", LOCK_AFTER)
    monkeypatch.setattr(lockwait, "LIVE_BUSY_TIMEOUT", 0.05)


def batch(i: int, n: int = 10) -> Batch:
    samples = [Sample(T0 + i * 1000 + k, "soc", float(i), "%", Quality.GOOD, "r1") for k in range(n)]
    return Batch.of_samples("sim", samples, created=T0 + i)


def daemon_store(path: Path, alarms: GatewayAlarms | None = None, memory: int = 500_000) -> Outbox:
    """The store as the daemon opens it (its writer, with a sink)."""
    ob = Outbox(path, consumers=["influx"], site="t", mark_open=True, alarms=alarms, memory_buffer_samples=memory)
    ob.disk_full_clear_after = 0.0
    return ob


def values(ob: Outbox) -> list[float]:
    return [float(r.batch.samples()[0].value) for r in ob.query() if r.batch.kind == BatchKind.SAMPLES]  # type: ignore[arg-type]


def gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("bms_gateway_store_locked")


def outages() -> float:
    return metrics.REGISTRY.get_sample_value("bms_gateway_store_lock_outages_total") or 0.0


def dropped(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("bms_gateway_samples_dropped_total",
                                             {"consumer": "influx", "reason": reason}) or 0.0  # fmt: skip


def announced(ob: Outbox) -> bool:
    ob.retry(force=True)  # (the daemon's next commit, or an idle sink, a second later)
    return ob._lock_announced


def test_a_lock_is_a_store_fault_of_its_own() -> None:
    assert store_fault(sqlite3.OperationalError("database is locked")) == LOCKED
    assert store_fault(sqlite3.OperationalError("database or disk is full")) == "disk_full"
    assert store_fault(sqlite3.OperationalError("no such table: x")) is None


def test_writes_wait_in_memory_under_another_process_lock_then_are_stored_in_order(tmp_path: Path) -> None:
    gw = GatewayAlarms(engine=True)
    ob = daemon_store(tmp_path / "s.db", gw)
    for i in range(3):
        ob.append([batch(i)])
    ob.ack("influx", 2)
    before, n_outages = ob.last_seq(), outages()
    with lock_held(ob.path, "EXCLUSIVE", write=True), structlog.testing.capture_logs() as logs:
        for i in range(3, 8):
            ob.append([batch(i)])  # no exception: waits in memory
        ob.ack("influx", 3)  # a sink's acknowledgement waits as its latest value
        ob.add_dead_letters("influx", 3, 400, "bad", ["x"])
        assert ob.enforce_budget() == 0
        assert ob.locked and ob.fault == LOCKED and ob.unstored.samples == 50
        assert ob.read(before) == []  # nothing new stored; what was stored is still readable
        assert ob.acked("influx") == 3
        wait_for(lambda: announced(ob), 30, "the lock announced once it lasted the busy timeout")
        ob.append([batch(8)])
        assert STORE_LOCKED in gw.active and gw.active[STORE_LOCKED].severity == "major"
        assert STORE_DISK_FULL not in gw.active and not ob.disk_full  # not the disk-full alarm
        assert gauge() == 1 and outages() == n_outages + 1
    warned = [e for e in logs if e["event"].startswith("store locked by another process")]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning" and warned[0]["path"] == str(ob.path)
    assert warned[0]["held_by"] and warned[0]["write"] in ("append", "retry")  # (the holders: see the e2e test)
    with structlog.testing.capture_logs() as logs:
        ob.append([batch(9)])
        wait_for(ob.retry, 30, "what waited stored by the next retry (at most a second later)")
    assert values(ob) == [float(i) for i in range(10)]  # none lost, in order
    assert not ob.locked and not ob.fault and gauge() == 0 and STORE_LOCKED not in gw.active
    assert ob.acked("influx") == 3 and len(ob.dead_letters("influx")) == 1  # the small writes stored too
    assert [c.active for c in gw.take_changes() if c.name == STORE_LOCKED] == [True, False]
    assert [e["event"] for e in logs] == ["store lock released: what waited in memory is stored"]
    ob.close()


def test_a_short_lock_passes_without_an_alarm(tmp_path: Path) -> None:
    gw = GatewayAlarms(engine=True)
    ob = daemon_store(tmp_path / "s.db", gw)
    with lock_held(ob.path, write=True), structlog.testing.capture_logs() as logs:
        ob.append([batch(0)])
        assert ob.locked and not ob._lock_announced
    ob.append([batch(1)])
    wait_for(ob.retry, 30, "what waited stored")
    assert values(ob) == [0.0, 1.0] and not ob.locked
    assert not gw.take_changes() and not [e for e in logs if e["log_level"] != "debug"]
    ob.close()


def test_past_the_memory_buffer_the_oldest_go_counted_as_store_locked(tmp_path: Path) -> None:
    ob = daemon_store(tmp_path / "s.db", memory=50)
    lost = dropped("store_locked"), dropped("disk_full")
    with lock_held(ob.path, write=True):
        for i in range(10):
            ob.append([batch(i)])
    wait_for(ob.retry, 30, "what waited stored")
    assert values(ob) == [float(i) for i in range(5, 10)]  # the newest kept, in order
    assert dropped("store_locked") - lost[0] == 50 and dropped("disk_full") == lost[1]
    ob.close()


def test_without_an_alarm_engine_the_alarm_events_are_stored_in_order_after_the_lock(tmp_path: Path) -> None:
    ob = daemon_store(tmp_path / "s.db")
    ob.append([batch(0)])
    with lock_held(ob.path, write=True):
        ob.append([batch(1)])
        wait_for(lambda: announced(ob), 30, "the lock announced")
        ob.append([batch(2)])
    ob.append([batch(3)])
    wait_for(ob.retry, 30, "what waited stored")
    ob.append([batch(4)])  # (the alarm's return, stored with the next commit)
    rows = [(str(r.batch.kind), r.batch.records[0]["alarm_id"] if r.batch.kind == BatchKind.ALARM else r.batch.n)
            for r in ob.query()]  # fmt: skip
    states = [r.batch.records[0]["state"] for r in ob.query() if r.batch.kind == BatchKind.ALARM]
    assert [k for k, _ in rows].count("samples") == 5
    assert {a for k, a in rows if k == "alarm"} == {"gateway:store_locked"} and states == ["active_unack", "rtn_unack"]
    ob.close()


def test_a_lock_alarm_restored_after_a_restart_clears_with_the_first_commit(tmp_path: Path) -> None:
    gw = GatewayAlarms(engine=True)
    ob = daemon_store(tmp_path / "s.db", gw)
    gw.attach([Condition(STORE_LOCKED, True, "locked", "major", T0)], lambda: None)
    ob.append([batch(0)])
    assert STORE_LOCKED not in gw.active and [c.active for c in gw.take_changes()] == [False]
    ob.close()


def test_the_store_alarms_are_in_the_gateway_alarms_table() -> None:
    text = manual_text()
    table = text[text.index("## Gateway alarms") :].split("\n\n")[2]  # (the heading, its text, the table)
    for name in (STORE_DISK_FULL, STORE_LOCKED):
        assert f"| `gateway:{name}` |" in table
    assert "| `gateway:store_locked` | major |" in table
