"""A YAML alias bomb ("billion laughs") given to `bms-gateway validate` and to a running gateway's reload.

It used to hang `validate` while its memory grew; a reload was rejected after 60 s, but its loader
thread went on (1.39 GB at 70 s). The loader now stops at the first alias past its limit: `validate`
exits 2 naming the alias, a reload is rejected as invalid, the gateway goes on with a bounded
memory and takes the next valid file.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops_support import eventually, http_get, log_events, start_gateway, stop, wait_http, wait_log
from tests.servers import free_port
from tests.support.site import write_config
from tests.unit.test_yaml_limits import alias_bomb

MAX_RSS_KB = 300 * 1024
INVALID = "reload rejected: the configuration is invalid; the running one stays"


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


@pytest.mark.timeout(300)
def test_validate_refuses_an_alias_bomb_with_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(alias_bomb())
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "validate", "-c", str(cfg)], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 2, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert f"{cfg}:8:12: YAML limit: this alias makes the document larger than 100,000 nodes" in out
    assert "Traceback" not in out


@pytest.mark.timeout(300)
def test_validate_refuses_a_bomb_in_a_profile(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "bomb-rack.yaml").write_text(alias_bomb().replace("site: {name: bomb}\n", "kind: modbus\n"))
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        "site: {name: s, profiles_dir: profiles}\n"
        "sources:\n  - {type: modbus, name: rack-01, profile: bomb-rack, host: 127.0.0.1}\n"
        f"store: {{path: {tmp_path / 'store.db'}}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "validate", "-c", str(cfg)], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{profiles / 'bomb-rack.yaml'}:8:12: YAML limit" in result.stdout + result.stderr


@pytest.mark.timeout(300)
def test_reload_rejects_an_alias_bomb_and_the_gateway_goes_on_with_bounded_memory(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ["rack-a"], http_port=port)
    good = cfg.read_text()
    proc = start_gateway(cfg, tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        wait_log(tmp_path, "simulated rack started", proc)

        # The bomb's aliases under a key of the running file: rejected as invalid, naming the alias.
        cfg.write_text(good + alias_bomb().replace("site: {name: bomb}\n", ""))
        bomb_line = good.count("\n") + 7
        n = len(log_events(tmp_path))
        proc.send_signal(signal.SIGHUP)
        rejected = wait_log(tmp_path, INVALID, proc, timeout=120, after=n)
        assert rejected["problems"] == [
            f"{cfg}:{bomb_line}:12: YAML limit: this alias makes the document larger than 100,000 nodes once "
            "every alias is expanded (aliases of aliases: a 'billion laughs' document?)"
        ]
        assert proc.poll() is None
        memory = memory_kb(proc.pid)
        print(f"gateway memory after the rejected alias bomb: {memory}")
        assert memory["VmRSS"] < MAX_RSS_KB and memory["VmHWM"] < MAX_RSS_KB, memory

        # Still serving, and the next valid file is applied (no loader left running in the way).
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        cfg.write_text(good.replace("interval: 0.05", "interval: 0.1", 1))
        n = len(log_events(tmp_path))
        proc.send_signal(signal.SIGHUP)
        applied = wait_log(tmp_path, "configuration reloaded", proc, timeout=120, after=n)
        assert applied["changes"] == ["source rack-a restarted"]
        eventually(lambda: memory_kb(proc.pid)["VmRSS"] < MAX_RSS_KB, proc)
    finally:
        assert stop(proc) == 0
    assert "Traceback" not in (tmp_path / "gateway.log").read_text()
