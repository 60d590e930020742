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

from gateway.model import BatchKind
from gateway.outbox import Outbox


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


def wait_for_rows(db: Path, n: int, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
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
