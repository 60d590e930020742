"""`bms-gateway run` whose store another process holds locked while it runs (the `sqlite3` shell in
`BEGIN EXCLUSIVE`, a backup tool): the daemon keeps running, new batches wait in memory, the gateway alarm
`gateway:store_locked` is raised (one warning naming the file and the process holding it) and cleared
once the lock is gone, and every sample produced meanwhile is stored afterwards; the MQTT sink catches up.

The busy timeout (how long a lock lasts before it is announced) is shortened to 1 s in the gateway's own
process (5 s in the daemon)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.model import BatchKind
from tests.e2e.test_store_locked_start import events, start
from tests.servers import Mosquitto
from tests.support.site import write_config
from tests.support.store import batches, last_seq, opened
from tests.support.waits import wait_for

LOCKED = "store locked by another process: new batches wait in memory, the write is retried"
RELEASED = "store lock released: what waited in memory is stored"
ALARM = "gateway:store_locked"


def alarm_states(log: Path) -> list[str]:
    return [e["state"] for e in events(log, "alarm") if e.get("alarm_id") == ALARM]


def truth_times(tmp: Path, rack: str) -> list[int]:
    """The time of every sample the simulated rack produced (its truth file)."""
    return [json.loads(line)[0] for line in (tmp / f"truth-{rack}.jsonl").read_text().splitlines()]


def acked(db: Path, sink: str) -> int:
    with opened(db, check=False, readonly=True) as box:
        return box.acked(sink)


@pytest.mark.parametrize("how", ["IMMEDIATE", "EXCLUSIVE"])
def test_a_store_locked_while_running_raises_an_alarm_and_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, how: str
) -> None:
    db = tmp_path / "store.db"
    sink = f"sinks:\n  mqtt: {{type: mqtt, host: 127.0.0.1, port: {mosquitto.port}, tls: false, batch_max_age: 0.05}}\n"
    cfg = write_config(tmp_path, ["rack-0", "rack-1"], db=db, extra=sink)
    log = tmp_path / "gateway.log"
    proc = start(cfg, log, "import gateway.store.lockwait as w", "w.BUSY_TIMEOUT = 1.0")
    try:
        wait_for(lambda: last_seq(db) > 5 and acked(db, "mqtt") > 0, 60, "samples stored and delivered", proc,
                 log=log)  # fmt: skip
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute(f"BEGIN {how}")
        holder.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('backup', 'running')")  # the write lock
        locked_at = time.time_ns()
        try:
            warned = wait_for(lambda: events(log, LOCKED), 60, "the gateway saying the store is locked", proc, log=log)
            wait_for(lambda: "active_unack" in alarm_states(log), 60, "the store_locked alarm", proc, log=log)
            stalled = last_seq(db)
        finally:
            released_at = time.time_ns()
            holder.execute("COMMIT")
            holder.close()
        wait_for(lambda: events(log, RELEASED), 60, "the gateway saying the lock is gone", proc, log=log)
        wait_for(lambda: "rtn_unack" in alarm_states(log), 60, "the alarm back to normal", proc, log=log)
        wait_for(lambda: acked(db, "mqtt") > stalled, 60, "the sink delivering what waited", proc, log=log)
        assert proc.poll() is None  # still running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text
    lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    journal = "alarm journal write failed; entries kept in memory and retried"  # (its own line, once)
    assert [e for e in lines if e["level"] in ("error", "critical") and e["event"] != journal] == []
    assert len(warned) == 1 and warned[0]["level"] == "warning" and warned[0]["path"] == str(db)
    assert f"pid {os.getpid()} " in warned[0]["held_by"]  # this test's process is what holds it
    assert alarm_states(log) == ["active_unack", "rtn_unack"]
    stored = batches(db)
    for rack in ("rack-0", "rack-1"):  # nothing lost: every produced sample stored, the locked spell's too
        times = sorted(s.ts for b in stored if b.source == rack for s in b.samples())
        produced = sorted(truth_times(tmp_path, rack))
        assert times == produced
        during = [t for t in produced if locked_at < t < released_at]
        assert during, f"{rack} produced nothing while the store was locked"
    alarm_rows = [r for b in stored if b.kind == BatchKind.ALARM for r in b.records if r.get("alarm_id") == ALARM
                  and r.get("type") == "event"]  # fmt: skip
    assert [r["state"] for r in alarm_rows] == ["active_unack", "rtn_unack"]
    print(f"store held {how} for {(released_at - locked_at) / 1e9:.1f} s: the gateway ran on, "
          f"{len(during)} samples of rack-1 produced meanwhile, all stored afterwards")  # fmt: skip
