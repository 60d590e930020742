"""2,000 idle half-requests against a running `bms-gateway run` with few file descriptors.

At `ulimit -n 512`, 597 idle half-requests made /healthz fail and asyncio logged 9,245 accept()
tracebacks in 10 s. Now the endpoint holds at most `http.max_connections` (a new connection closes
the oldest one still waiting for its head), so a probe on a new connection is answered; and when
accept() does run out of descriptors (a limit above the process's), it pauses with one log line
instead of a traceback per try.
"""

from __future__ import annotations

import resource
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops_support import eventually, http_get, log_events, start_gateway, stop, wait_http
from tests.servers import free_port
from tests.support.site import write_config

IDLE = 2000


@pytest.fixture
def many_fds() -> Iterator[None]:
    """This test process opens IDLE sockets: raise its own soft limit for the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE + 512
    assert hard == resource.RLIM_INFINITY or hard >= want, f"the hard limit {hard} is below {want}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def site(tmp: Path, port: int, http_extra: str = "") -> Path:
    return write_config(tmp, ["rack-a"], http_port=port, interval=0.2, grace=10, http_options=http_extra)


def run_with_nofile(cfg: Path, tmp: Path, nofile: int) -> list[str]:
    """`bms-gateway run` under `ulimit -n nofile` (soft and hard), as the observation was made."""
    return ["prlimit", f"--nofile={nofile}:{nofile}", sys.executable, "-m", "gateway", "run", "-c", str(cfg)]


def open_idle(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each send half a request head and then nothing."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    return socks


def timed_healthz(port: int) -> tuple[int, float]:
    started = time.monotonic()
    status, _ctype, _body = http_get(f"http://127.0.0.1:{port}/healthz", timeout=60)
    return status, time.monotonic() - started


def log_text(tmp: Path) -> str:
    return (tmp / "gateway.log").read_text(errors="replace")


@pytest.mark.timeout(600)
def test_healthz_answers_with_2000_idle_connections_open_at_ulimit_512(tmp_path: Path, many_fds: None) -> None:
    port = free_port()
    cfg = site(tmp_path, port)
    proc = start_gateway(cfg, tmp_path, argv=run_with_nofile(cfg, tmp_path, 512))
    idle: list[socket.socket] = []
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        lines_before = len(log_text(tmp_path).splitlines())
        idle = open_idle(port, IDLE)
        status, seconds = timed_healthz(port)
        print(f"/healthz with {IDLE} idle connections open: {status} in {seconds * 1000:.0f} ms")
        assert status == 200
        metrics = http_get(f"http://127.0.0.1:{port}/metrics", timeout=60)[2]
        evicted = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith('bms_gateway_http_connections_dropped_total{reason="evicted"}')
        )
        assert evicted >= IDLE - 64 - 1  # every idle one past the limit closed the oldest waiting one
        assert proc.poll() is None
    finally:
        for s in idle:
            s.close()
        assert stop(proc) == 0
    text = log_text(tmp_path)
    new_lines = text.splitlines()[lines_before:]
    assert "Traceback" not in text
    assert len(new_lines) < 20, new_lines[:20]  # state changes only: no line per connection
    assert [e["event"] for e in log_events(tmp_path)].count(
        "http connection limit reached: new connections close the oldest waiting ones"
    ) == 1


@pytest.mark.timeout(600)
def test_accept_out_of_descriptors_pauses_with_one_line_and_recovers(tmp_path: Path, many_fds: None) -> None:
    """A connection limit above the process's descriptors: accept() fails with EMFILE."""
    port = free_port()
    cfg = site(tmp_path, port, ", max_connections: 5000, read_timeout: 120, header_timeout: 120")
    proc = start_gateway(cfg, tmp_path, argv=run_with_nofile(cfg, tmp_path, 256))
    idle: list[socket.socket] = []
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        idle = open_idle(port, IDLE)
        status, seconds = timed_healthz(port)
        print(f"/healthz with {IDLE} idle connections and accept() out of descriptors: {status} in {seconds:.2f} s")
        assert status == 200

        def emfile_counted() -> bool:
            body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=60)[2]
            return 'bms_gateway_http_accept_errors_total{error="EMFILE"}' in body

        eventually(emfile_counted, proc)
        assert proc.poll() is None
    finally:
        for s in idle:
            s.close()
        assert stop(proc) == 0
    text = log_text(tmp_path)
    assert "Traceback" not in text and "socket.accept() out of system resource" not in text
    events = [e["event"] for e in log_events(tmp_path)]
    paused = events.count("http accept out of resources: closing waiting connections, pausing")
    assert 1 <= paused <= 3, events  # one line per state change, not one per failed accept()
    assert len(text.splitlines()) < 40, text[-3000:]
