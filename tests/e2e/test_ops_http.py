"""The HTTP endpoint of a running `bms-gateway run`: health, readiness, Prometheus metrics, status JSON.

Real parts: the daemon as a subprocess, VictoriaMetrics as the InfluxDB server, urllib as the client,
prometheus_client's own text parser for /metrics.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.ops_support import eventually, http_get, start_gateway, stop, wait_http, wait_log
from tests.servers import VictoriaMetrics, free_port
from tests.support.site import write_config

SECRET = "tok-S3CRET-do-not-show-4711"


def influx_sink(url: str) -> str:
    return (
        "sinks:\n"
        "  influx:\n"
        "    type: influxdb\n"
        f"    url: {url}\n"
        "    org: o\n"
        "    bucket: b\n"
        f"    token: {SECRET}\n"
        "    backoff_initial: 0.1\n"
        "    backoff_max: 0.2\n"
    )


def test_endpoints_of_a_running_gateway(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    port = free_port()
    cfg = write_config(tmp_path, ["rack-a", "rack-b"], http_port=port, extra=influx_sink(victoria.url))
    proc = start_gateway(cfg, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        listening = wait_log(tmp_path, "http listening", proc)
        assert listening["url"] == f"{base}/"  # loopback by default
        wait_http(f"{base}/healthz", proc)
        assert http_get(f"{base}/healthz")[::2] == (200, "ok\n")
        eventually(lambda: http_get(f"{base}/readyz")[0] == 200, proc)
        assert http_get(f"{base}/readyz")[2] == "ready\n"

        doc = eventually(lambda: (d := json.loads(http_get(f"{base}/api/status")[2]))["samples_seen"] > 100 and d, proc)
        assert doc["site"] == "t" and doc["ready"] is True
        assert doc["version"] and doc["uptime_s"] >= 0
        assert {r["rack"] for r in doc["racks"]} == {"rack-a", "rack-b"}
        assert all(r["state"] == "online" and isinstance(r["soc"], float) for r in doc["racks"])
        assert [s["name"] for s in doc["sinks"]] == ["influx"]
        points = doc["points"]
        cells = [p for p in points if p[0] == "rack-a" and p[1] == "cell_voltage"]
        assert len(cells) == 8  # 2 modules x 4 cells, one row each with its latest value
        assert all(p[5] == "V" and p[6] == "good" and isinstance(p[4], float) and p[7] >= 0 for p in cells)
        only_b = json.loads(http_get(f"{base}/api/status?rack=rack-b")[2])["points"]
        assert only_b and {p[0] for p in only_b} == {"rack-b"}
        assert "points" not in json.loads(http_get(f"{base}/api/status?points=0")[2])

        def metrics() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
            status, ctype, text = http_get(f"{base}/metrics")
            assert status == 200 and ctype.startswith("text/plain")
            out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
            return out

        delivered = (("sink", "influx"),)
        value = eventually(
            lambda: (m := metrics()).get("bms_gateway_sink_delivered_samples_total", {}).get(delivered) and m, proc
        )
        assert value["bms_gateway_ready"][()] == 1.0
        assert value["bms_gateway_samples_stored_total"][()] > 0
        assert value["bms_gateway_samples_produced_total"][(("source", "rack-a"),)] > 0
        assert value["bms_gateway_sink_pending_samples"][delivered] >= 0
        assert value["bms_gateway_sink_lag_seconds"][delivered] >= 0
        assert value["bms_gateway_sink_connected"][delivered] == 1
        assert value["bms_gateway_watchdog_pings_total"][()] == 0  # not under systemd here
        assert "bms_gateway_store_bytes" in value
        assert list(value["bms_gateway_build_info"].values()) == [1.0]
        assert value["bms_gateway_start_time_seconds"][()] > 1.6e9

        assert http_get(f"{base}/nope")[0] == 404
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"NONSENSE\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400")
        # No secret in any view of the gateway.
        for path in ("/api/status", "/metrics", "/", "/static/app.js", "/readyz"):
            assert SECRET not in http_get(base + path)[2]
    finally:
        assert stop(proc) == 0
    assert SECRET not in (tmp_path / "gateway.log").read_text()


def test_readyz_names_a_sink_that_cannot_connect(tmp_path: Path) -> None:
    port, dead = free_port(), free_port()
    cfg = write_config(tmp_path, ["rack-a"], http_port=port, extra=influx_sink(f"http://127.0.0.1:{dead}"), grace=0.5)
    proc = start_gateway(cfg, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", proc)
        status, _, _body = eventually(
            lambda: (r := http_get(f"{base}/readyz"))[2].startswith("sink influx not connected") and r, proc
        )
        assert status == 503
        assert http_get(f"{base}/healthz")[0] == 200  # alive, and storing: the sink catches up later
        # Between two failed writes the runner opens the sink again (it counts as connected until the
        # write fails): the status is read until it shows the failure, as /readyz did.
        doc = eventually(
            lambda: (
                (d := json.loads(http_get(f"{base}/api/status?points=0")[2]))["sinks"][0]["connected"] is False and d
            ),
            proc,
        )
        assert doc["ready"] is False and doc["sinks"][0]["failures"] > 0
        assert SECRET not in json.dumps(doc)
    finally:
        assert stop(proc) == 0


def test_demo_prints_a_working_status_page_url(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BMS_GATEWAY__HTTP__PORT": "0"}
    cmd = [sys.executable, "-m", "gateway", "demo", "--store", str(tmp_path / "demo.db")]
    out = (tmp_path / "demo.out").open("w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
    try:

        def url_printed() -> str | None:
            for line in (tmp_path / "demo.out").read_text().splitlines():
                if line.startswith("status page: "):
                    return line.removeprefix("status page: ").strip()
            return None

        url = eventually(url_printed, proc)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert http_get(url + "healthz")[0] == 200
        assert "bms-gateway status" in http_get(url)[2]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        out.close()
    assert proc.returncode == 0


def get_with(url: str, user: str | None = None, password: str | None = None) -> tuple[int, str]:
    """(status, WWW-Authenticate header) of a GET, optionally with Basic credentials."""
    req = urllib.request.Request(url)
    if user is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("WWW-Authenticate", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("WWW-Authenticate", "")


def test_basic_authentication_with_a_password_file(tmp_path: Path) -> None:
    """A password from a file (relative to the config) guards every route but the probes; it never
    reaches the log. An unreadable password file keeps HTTP closed rather than open."""
    port = free_port()
    cfg = write_config(tmp_path, ["rack-a"], http_port=port)
    password = "pw-S3CRET-not-in-logs-0815"
    (tmp_path / "http-password").write_text(password + "\n")
    cfg.write_text(
        cfg.read_text().replace(
            f"http: {{port: {port}}}", f"http: {{port: {port}, username: ops, password_file: http-password}}"
        )
    )
    proc = start_gateway(cfg, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", proc)
        assert get_with(f"{base}/healthz")[0] == 200
        status, challenge = get_with(f"{base}/metrics")
        assert status == 401 and challenge.startswith("Basic ")
        assert get_with(f"{base}/api/status", "ops", "wrong")[0] == 401
        assert get_with(f"{base}/api/status", "ops", password)[0] == 200
        assert get_with(f"{base}/metrics", "ops", password)[0] == 200
        assert get_with(f"{base}/", "ops", password)[0] == 200
    finally:
        assert stop(proc) == 0
    assert password not in (tmp_path / "gateway.log").read_text()

    (tmp_path / "http-password").unlink()
    proc = start_gateway(cfg, tmp_path)
    try:
        wait_log(tmp_path, "cannot read the HTTP password; not serving HTTP until it can be read", proc)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens: closed, not open
    finally:
        assert stop(proc) == 0
