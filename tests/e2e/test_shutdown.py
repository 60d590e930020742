"""SIGTERM and SIGINT during a run: everything the simulator produced is stored; exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.alarms.journal import Journal
from gateway.cli import main
from gateway.model import BatchKind
from gateway.outbox import Outbox
from tests.servers import free_port


def config(tmp_path: Path, racks: int = 3) -> Path:
    lines = ["site: {name: t}", "sources:"]
    for i in range(racks):
        lines += [
            "  - type: simulated",
            f"    name: rack-{i}",
            "    interval: 0.02",
            "    modules: 2",
            "    cells_per_module: 8",
            f"    truth_file: {tmp_path / f'truth-{i}.jsonl'}",
        ]
    lines += ["store:", f"  path: {tmp_path / 'store.db'}", "runtime: {grace_period: 5}", "http: {enabled: false}"]
    p = tmp_path / "gateway.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def wait_for_rows(
    db: Path, n: int, proc: subprocess.Popen[str] | subprocess.Popen[bytes], timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        if db.exists():
            ob = Outbox(db)
            try:
                if ob.last_seq() >= n:
                    return
            finally:
                ob.close()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} rows stored")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stores_everything_produced_and_exits_0(tmp_path: Path, sig: signal.Signals) -> None:
    cfg = config(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for_rows(tmp_path / "store.db", 60, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    ob = Outbox(tmp_path / "store.db")
    stored: dict[str, int] = {}
    for row in ob.query():
        if row.batch.kind == BatchKind.SAMPLES:
            stored[row.batch.source] = stored.get(row.batch.source, 0) + len(row.batch.samples)
    for i in range(3):
        produced = len((tmp_path / f"truth-{i}.jsonl").read_text().splitlines())
        assert produced > 0
        assert stored[f"rack-{i}"] == produced
    # Logs (stderr) are JSON lines when not on a terminal, with the source bound on source lines.
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    names = {e.get("event") for e in events}
    assert {"starting", "ready", "stopping", "stopped"} <= names
    stops = [e for e in events if e.get("event") == "simulated rack stopped"]
    assert {e["source"] for e in stops} == {"rack-0", "rack-1", "rack-2"}
    assert sum(e["produced_samples"] for e in stops) == sum(stored.values())


def test_second_sigint_closes_the_store_and_the_journal_then_exits_130(tmp_path: Path) -> None:
    # An InfluxDB sink nobody answers and a long grace period: after the first SIGINT the gateway
    # waits to deliver; the second one forces the exit, which still closes the store and the journal.
    cfg = config(tmp_path, racks=2)
    dead = free_port()
    cfg.write_text(
        cfg.read_text().replace("runtime: {grace_period: 5}", "runtime: {grace_period: 300}")
        + f"sinks:\n  influx: {{type: influxdb, url: 'http://127.0.0.1:{dead}', backoff_max: 0.5}}\n"
    )
    log_file = tmp_path / "gateway.log"
    with log_file.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(cfg)], stdout=log, stderr=log)
    db = tmp_path / "store.db"
    try:
        wait_for_rows(db, 40, proc)
        proc.send_signal(signal.SIGINT)
        wait_for_log(log_file, "stopping", proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    events = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    names = [e.get("event") for e in events]
    assert "stopped (forced): store closed" in names, names[-10:]
    assert "forced exit: the store was not closed in time" not in names
    assert "Traceback" not in log_file.read_text()
    # Closed like any stop: the last connection checkpointed and removed the WAL, and the journal's
    # last entry is a stop (the next start knows what the store holds).
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    journal = Journal(db, readonly=True)
    try:
        kinds = [e.kind for e in journal.entries()]
        assert journal.verify()[1] == []
    finally:
        journal.close()
    assert kinds[0] == "start" and kinds[-1] in ("stop", "stop_incomplete"), kinds
    assert main(["alarms", "verify", "--store", str(db)]) == 0
    ob = Outbox(db)
    try:
        assert ob.stored_samples() > 0
    finally:
        ob.close()
    assert not list(tmp_path.glob("store.db.damaged-*"))


def wait_for_log(path: Path, event: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, path.read_text()[-3000:]
        if any(f'"event": "{event}"' in line for line in path.read_text().splitlines()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {event!r} in the log")
