"""SIGTERM and SIGINT during a run: everything the simulator produced is stored; exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.alarms.journal import Journal
from gateway.cli.main import main
from tests.servers import free_port
from tests.support.site import PLAIN_RACK, write_config
from tests.support.store import last_seq, sample_counts, stored_sample_total
from tests.support.waits import wait_for


def config(tmp_path: Path, racks: int = 3, grace: float = 5) -> Path:
    rack = {**PLAIN_RACK, "seed": None}
    return write_config(tmp_path, [f"rack-{i}" for i in range(racks)], interval=0.02, grace=grace, rack=rack)


def wait_for_rows(
    db: Path, n: int, proc: subprocess.Popen[str] | subprocess.Popen[bytes], log: Path | None = None
) -> None:
    wait_for(lambda: last_seq(db) >= n, 60.0, f"{n} rows stored", proc, log=log)


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
    stored = sample_counts(tmp_path / "store.db")
    for i in range(3):
        produced = len((tmp_path / f"truth-rack-{i}.jsonl").read_text().splitlines())
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
    cfg = config(tmp_path, racks=2, grace=300)
    dead = free_port()
    cfg.write_text(
        cfg.read_text()
        + f"sinks:\n  influx: {{type: influxdb, url: 'http://127.0.0.1:{dead}', backoff_max: 0.5}}\n"
    )
    log_file = tmp_path / "gateway.log"
    with log_file.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(cfg)], stdout=log, stderr=log)
    db = tmp_path / "store.db"
    try:
        wait_for_rows(db, 40, proc, log_file)
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
    assert stored_sample_total(db) > 0
    assert not list(tmp_path.glob("store.db.damaged-*"))


def wait_for_log(path: Path, event: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    def logged() -> bool:
        return any(f'"event": "{event}"' in line for line in path.read_text().splitlines())

    wait_for(logged, timeout, f"{event!r} in the log", proc, log=path)
