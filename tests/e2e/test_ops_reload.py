"""SIGHUP reload of a running `bms-gateway run`.

An invalid file (a typo, broken YAML) is rejected with file:line:col and the running configuration
goes on; a valid one that adds a rack and changes another restarts only those two, and every
sample the simulators produced (their truth files) is in the store, in order, across the reload.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.ops_support import NotifyListener, eventually, http_get, log_events, start_gateway, stop, wait_http, wait_log
from tests.servers import free_port
from tests.support.site import rack_lines, write_config
from tests.support.store import samples_by_source


def stored_samples(db: Path) -> dict[str, list[list[object]]]:
    return {source: [list(s) for s in samples] for source, samples in samples_by_source(db).items()}


def truth(tmp: Path, rack: str) -> list[list[object]]:
    return [json.loads(line) for line in (tmp / f"truth-{rack}.jsonl").read_text().splitlines()]


def status(port: int) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(http_get(f"http://127.0.0.1:{port}/api/status?points=0")[2])
    return doc


def samples_seen_grows(port: int, proc: subprocess.Popen[bytes]) -> None:
    before = status(port)["samples_seen"]
    eventually(lambda: status(port)["samples_seen"] > before + 100, proc)


def test_sighup_rejects_invalid_and_applies_valid_changes_without_losing_samples(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ["rack-a", "rack-b"], http_port=port)
    good = cfg.read_text()
    listener = NotifyListener()
    proc = start_gateway(cfg, tmp_path, env={"NOTIFY_SOCKET": listener.env_value})
    try:
        listener.wait_for(lambda m: m.get("READY") == "1", alive=proc)
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)

        # 1. A typo: rejected, named by file:line:col; the running configuration goes on.
        typo = good.replace("    interval: 0.05\n", "    intervall: 0.05\n", 1)
        cfg.write_text(typo)
        line = typo.splitlines().index("    intervall: 0.05") + 1
        n = len(log_events(tmp_path))
        proc.send_signal(signal.SIGHUP)
        rejected = wait_log(
            tmp_path, "reload rejected: the configuration is invalid; the running one stays", proc, after=n
        )
        assert any(p.startswith(f"{cfg}:{line}:5: ") and "intervall" in p for p in rejected["problems"])
        assert rejected["level"] == "error"
        listener.wait_for(lambda m: "reload rejected" in m.get("STATUS", "") and m.get("READY") == "1", alive=proc)
        assert proc.poll() is None
        reload = status(port)["reload"]
        assert isinstance(reload, dict) and reload["ok"] is False and f"{cfg}:{line}:5" in reload["problems"][0]
        samples_seen_grows(port, proc)

        # 2. Broken YAML: the same.
        cfg.write_text(good + "sinks: [\n")
        n = len(log_events(tmp_path))
        proc.send_signal(signal.SIGHUP)
        rejected = wait_log(
            tmp_path, "reload rejected: the configuration is invalid; the running one stays", proc, after=n
        )
        assert any(p.startswith(f"{cfg}:") and "YAML" in p for p in rejected["problems"])
        samples_seen_grows(port, proc)

        # 3. Valid: rack-c added, rack-b's interval changed; rack-a keeps running untouched.
        lines = good.splitlines()
        b_at = lines.index("    name: rack-b")
        lines[b_at + 1] = "    interval: 0.1"
        store_at = lines.index("store:")
        lines[store_at:store_at] = rack_lines("rack-c", tmp_path, 0.05, seed=3)
        cfg.write_text("\n".join(lines) + "\n")
        n = len(log_events(tmp_path))
        listener.poll()
        reloads_before = sum("RELOADING" in m for m in listener.messages)
        proc.send_signal(signal.SIGHUP)
        applied = wait_log(tmp_path, "configuration reloaded", proc, after=n)
        assert applied["restarted_sources"] == ["rack-b", "rack-c"]
        assert applied["changes"] == ["source rack-c added", "source rack-b restarted"]
        listener.wait_for(
            lambda m: m.get("READY") == "1" and "reloaded: source rack-c added" in m.get("STATUS", ""), alive=proc
        )
        assert sum("RELOADING" in m for m in listener.messages) == reloads_before + 1
        eventually(lambda: any(r["rack"] == "rack-c" for r in status(port)["racks"]), proc)
        samples_seen_grows(port, proc)
        assert status(port)["ready"] is True
    finally:
        assert stop(proc) == 0
        listener.close()

    stored = stored_samples(tmp_path / "store.db")
    for rack in ("rack-a", "rack-b", "rack-c"):
        produced = truth(tmp_path, rack)
        assert produced, rack
        # Every produced sample is stored, in order: no gap, no loss, no duplicate across three reloads.
        assert stored[rack] == produced, rack
    starts = [e["source"] for e in log_events(tmp_path) if e.get("event") == "simulated rack started"]
    assert sorted(starts) == ["rack-a", "rack-b", "rack-b", "rack-c"]  # only what changed restarted
    assert "Traceback" not in (tmp_path / "gateway.log").read_text()
