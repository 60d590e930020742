"""`bms-gateway run` end to end: simulated faults → alarms on a real Mosquitto (events, retained active set)
and in VictoriaMetrics; acknowledge over MQTT with who and why; restart keeps a latched alarm; the journal
verifies, and fails naming the entry after a row is edited in the database file."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.alarms_support import Subscriber, operator_key, publish
from tests.servers import Mosquitto, VictoriaMetrics
from tests.support.waits import await_for

OV = "rack-01:cell_over_voltage:m1c5"
KP = "rack-02:contactor_positive_open"
CL = "rack-02:comm_loss"
T = "bms/s1/{rack}/alarms/{what}"


def config(tmp_path: Path, mqtt_port: int, vm_url: str, *, faults: bool = True, users: str = "{}") -> Path:
    weak = "[{kind: weak_cell, at: 0, cell: 5, severity: 3}]" if faults else "[]"
    rack2 = "[{kind: contactor_open, at: 50, duration: 100}, {kind: dropout, at: 200, duration: 100}]"
    text = f"""\
site: {{name: s1}}
sources:
  - {{type: simulated, name: rack-01, interval: 0.05, speed: 100, faults: {weak}}}
  - {{type: simulated, name: rack-02, interval: 0.05, speed: 100, faults: {rack2 if faults else "[]"}}}
sinks:
  mqtt: {{type: mqtt, host: 127.0.0.1, port: {mqtt_port}, tls: false, batch_max_age: 0.05, backoff_initial: 0.1}}
  influx: {{type: influxdb, url: "{vm_url}", bucket: bms, batch_max_age: 0.1, backoff_initial: 0.1}}
store: {{path: {tmp_path / "store.db"}, commit_interval: 0.02}}
http: {{enabled: false}}
runtime: {{grace_period: 5}}
alarms:
  tick_interval: 0.05
  commands: {{enabled: true, users: {users}}}
  overrides:
    cell_over_voltage: {{high: 3.45, deadband: 0.05, on_delay: 0.1}}
    contactor_positive_open: {{on_delay: 0.1, latch: true}}
"""
    p = tmp_path / "gateway.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(cfg)], cwd=cfg.parent, stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )  # fmt: skip


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "alarms", *args], capture_output=True, text=True, timeout=60
    )


def active_ids(payload: Any) -> dict[str, str]:
    return {a["alarm_id"]: a["state"] for a in payload} if isinstance(payload, list) else {}


async def test_alarms_end_to_end(tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics) -> None:
    alice, bob = operator_key(tmp_path, "alice"), operator_key(tmp_path, "bob")
    users = f'{{alice: {{public_key: "{alice.public}"}}, bob: {{public_key: "{bob.public}", all_alarms: true}}}}'
    cfg = config(tmp_path, mosquitto.port, victoria.url, users=users)
    log = tmp_path / "gateway.log"
    ev1, _act1, ev2, act2 = (T.format(rack=r, what=w) for r in ("rack-01", "rack-02") for w in ("events", "active"))
    async with Subscriber(mosquitto.port, "bms/s1/+/alarms/#") as sub:
        proc = start(cfg, log)
        try:
            # A weak cell over its limit: critical over-voltage, then back below the deadband; a contactor that
            # opens (latched here); a rack that stops answering: comm loss, then back.
            await await_for(lambda: sub.events(ev1, OV)[:2] == ["active_unack", "rtn_unack"], what="over-voltage")
            await await_for(lambda: sub.events(ev2, KP)[:1] == ["active_unack"], what="contactor alarm")
            await await_for(lambda: sub.events(ev2, CL)[:2] == ["active_unack", "rtn_unack"], what="comm loss")
            raised = next(p for p in sub.payloads(ev1) if p["alarm_id"] == OV)
            assert raised["severity"] == "critical" and raised["value"] > 3.45 and "m1c5" in raised["message"]
            assert active_ids(sub.payloads(act2)[-1]["active"]).get(KP) == "active_unack"

            # Acknowledge over MQTT: the state changes and records who and why; a bad command is refused.
            result = T.format(rack="rack-01", what="command/result")
            await publish(
                mosquitto.port,
                T.format(rack="rack-01", what="command"),
                alice.sign("alice", "s1", "rack-01", action="ack", alarm_id=OV, reason="cell checked", id="c1"),
            )
            await publish(mosquitto.port, T.format(rack="rack-01", what="command"), {"action": "ack", "alarm_id": OV})
            await await_for(lambda: len(sub.payloads(result)) == 2, what="command results")
            ok, refused = sub.payloads(result)
            assert ok["ok"] is True and ok["id"] == "c1" and ok["alarm_ids"] == [OV]
            assert refused["ok"] is False and "user is required" in refused["errors"][0]
            await await_for(lambda: "normal" in sub.events(ev1, OV), what="acknowledged event")
            acked = next(p for p in sub.payloads(ev1) if p.get("alarm_id") == OV and p["state"] == "normal")
            assert (acked["previous"], acked["user"], acked["reason"]) == ("rtn_unack", "alice", "cell checked")
            # The contactor closed again (fault over), but its latched alarm is still in the retained set.
            await await_for(lambda: sub.events(ev2, CL)[:2] == ["active_unack", "rtn_unack"])
            assert KP in active_ids(sub.payloads(act2)[-1]["active"])
        finally:
            stop(proc, log)

    # VictoriaMetrics has the alarm events (the numeric value field) and the active counts.
    def vm_has() -> bool:
        names = {
            (s["metric"]["__name__"], s["metric"].get("alarm_id")) for s in victoria.export('{__name__=~"alarm.*"}')
        }
        return ("alarm_value", OV) in names and any(n == "alarms_active_count" for n, _ in names)

    await await_for(lambda: vm_has(), timeout=60, what="alarm series in VictoriaMetrics")

    verified = cli("verify", "-c", str(cfg))
    assert verified.returncode == 0 and "hash chain intact" in verified.stdout

    # Restart on a healthy rack: the latched contactor alarm is still active and re-published as retained.
    cfg2 = config(tmp_path, mosquitto.port, victoria.url, faults=False, users=users)
    async with Subscriber(mosquitto.port, "bms/s1/rack-02/alarms/#", client_id="after-restart") as sub2:
        proc = start(cfg2, log)
        try:
            await await_for(lambda: any(not r and t == act2 for t, _, r in sub2.messages), what="live active set")
            live = active_ids(next(p for t, p, r in sub2.messages if t == act2 and not r)["active"])
            assert live.pop(KP) == "active_unack"  # latched, though the contactor is closed
            assert set(live.values()) <= {"rtn_unack"}  # the others came back and wait for an acknowledgement
            await publish(
                mosquitto.port,
                T.format(rack="rack-02", what="command"),
                bob.sign("bob", "s1", "rack-02", action="ack", alarm_id="*", reason="contactor inspected"),
            )
            await await_for(lambda: sub2.events(T.format(rack="rack-02", what="events"), KP) == ["normal"])
            await await_for(lambda: active_ids(sub2.payloads(act2)[-1]["active"]) == {}, what="empty active set")
        finally:
            stop(proc, log)
    listed = cli("list", "-c", str(cfg2))
    assert listed.returncode == 0 and "no alarms in view" in listed.stdout
    exported = [json.loads(x) for x in cli("export", "-c", str(cfg2)).stdout.splitlines()]
    commands = [(e["user"], e["reason"]) for e in exported if e["type"] == "command" and not e["errors"]]
    assert commands == [("alice", "cell checked"), ("bob", "contactor inspected")]

    # Tampering: edit one row of the journal in the database file; verify fails naming that entry.
    db = sqlite3.connect(tmp_path / "store.db")
    seq = db.execute("SELECT seq FROM alarm_journal WHERE kind = 'command' ORDER BY seq LIMIT 1").fetchone()[0]
    db.execute("UPDATE alarm_journal SET body = replace(body, 'alice', 'mallory') WHERE seq = ?", (seq,))
    db.commit()
    db.close()
    tampered = cli("verify", "-c", str(cfg2))
    assert tampered.returncode == 1
    assert f"FAIL: entry {seq}: content does not match its hash (edited)" in tampered.stdout
