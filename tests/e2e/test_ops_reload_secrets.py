"""A reload with an unquoted numeric token (YAML reads it as an int): rejected, and the token is neither in
the reload log line nor in /api/status (both repeated the validation error with the value)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.ops_support import http_get, log_events, start_gateway, stop, wait_http, wait_log
from tests.servers import free_port
from tests.support.site import write_config

TOKEN = "82736451"
REJECTED = "reload rejected: the configuration is invalid; the running one stays"


def test_a_reload_with_a_numeric_token_is_rejected_without_showing_it(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ["rack-a"], http_port=port)
    good = cfg.read_text()
    proc = start_gateway(cfg, tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        wait_log(tmp_path, "simulated rack started", proc)
        sink = f"sinks:\n  influx: {{type: influxdb, url: 'https://127.0.0.1:8086', token: {TOKEN}, enabled: false}}\n"
        cfg.write_text(good + sink)
        line = (good + sink).splitlines().index(sink.splitlines()[1]) + 1
        n = len(log_events(tmp_path))
        proc.send_signal(signal.SIGHUP)
        rejected = wait_log(tmp_path, REJECTED, proc, after=n)
        assert any(
            p.startswith(f"{cfg}:{line}:") and "sinks.influx.token: a secret must be text" in p
            for p in rejected["problems"]
        ), rejected
        status = json.loads(http_get(f"http://127.0.0.1:{port}/api/status?points=0")[2])
        assert status["reload"]["ok"] is False and "sinks.influx.token" in status["reload"]["problems"][0]
        assert TOKEN not in json.dumps(status)
    finally:
        assert stop(proc) == 0
    assert TOKEN not in (tmp_path / "gateway.log").read_text()
