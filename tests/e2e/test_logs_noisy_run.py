"""One log stream under the faults of a remote site (issue 12, item 5): `bms-gateway run` with
`logging.format: json` at level info, polling a Modbus unit id that does not answer, a device that
answers random bytes, and an MQTT sink whose broker goes away and comes back. Every stderr line is
one JSON object and the log stays under 1 MB a minute (the issue's check: 1 MB for a 60 s run).
BMS_TEST_LOG_SECONDS sets the run (default 20 s: every fault and the broker's outage and return are
in it, the bound scales with the run, so the rate it allows is the same; 60 runs the issue's own)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.modbus_support import TINY, site, source, write
from tests.ops_support import eventually, start_gateway, stop
from tests.servers import Mosquitto, free_port, wait_port

RUN_SECONDS = float(os.environ.get("BMS_TEST_LOG_SECONDS", "20"))
LOG_BOUND = 1_000_000 * RUN_SECONDS / 60  # bytes of stderr for the whole run: 1 MB a minute


class GarbageDevice:
    """A TCP server that streams random bytes to every client (8 KiB every 20 ms) and answers each
    request with one of: 64 KiB of random bytes, an MBAP header announcing the largest frame with
    random bytes after it, or a read reply whose byte count is larger than its data."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.requests = 0
        self.sent = 0
        self._stop = threading.Event()
        self._rng = random.Random(12)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _reply(self, request: bytes) -> bytes:
        tid, pick = request[:2].ljust(2, b"\0"), self._rng.random()
        if pick < 0.3:
            return tid + b"\x00\x00\xff\xff" + self._rng.randbytes(0xFFFF)
        if pick < 0.6:  # function 4, byte count 250, 4 bytes of data
            return tid + b"\x00\x00\x00\x07\x01\x04\xfa" + self._rng.randbytes(4)
        return self._rng.randbytes(65536)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.02)
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                    if not data:
                        return
                    self.requests += 1
                    reply = self._reply(data)
                except TimeoutError:
                    reply = self._rng.randbytes(8192)
                except OSError:
                    return
                try:
                    conn.sendall(reply)
                except OSError:
                    return
                self.sent += len(reply)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def garbage() -> Iterator[GarbageDevice]:
    dev = GarbageDevice()
    yield dev
    dev.close()


@pytest.fixture
def modbus_sim(tmp_path: Path) -> Iterator[int]:
    """`bms-gateway modbus simulate` serving unit 1 only (another unit id gets no answer)."""
    profile = write(tmp_path / "sim" / "tiny.yaml", TINY)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "modbus", "simulate", "-p", str(profile), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "sim.log").open("ab"),
    )
    try:
        wait_port(port, timeout=60)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def config(tmp_path: Path, sim_port: int, garbage_port: int, broker: Mosquitto) -> Path:
    fast = {"timeout": 0.3, "interval": 0.5}
    sources = (
        source("alive", sim_port, unit=1, **fast)
        + source("dead-unit", sim_port, unit=7, **fast)
        + source("garbage", garbage_port, unit=1, **fast)
    )
    path = site(tmp_path, sources)
    fast_mqtt = "batch_max_age: 0.05, backoff_initial: 0.1, backoff_max: 1.0"
    path.write_text(
        path.read_text()
        + "logging: {level: info, format: json}\n"
        + f"sinks:\n  mqtt: {{type: mqtt, host: 127.0.0.1, port: {broker.port}, tls: false, {fast_mqtt}}}\n"
    )
    return path


def lines(tmp_path: Path) -> list[str]:
    return (tmp_path / "gateway.log").read_text(encoding="utf-8", errors="replace").splitlines()


def events(tmp_path: Path) -> list[dict[str, Any]]:
    out = []
    for line in lines(tmp_path):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def has(tmp_path: Path, **fields: object) -> bool:
    return any(all(e.get(k) == v for k, v in fields.items()) for e in events(tmp_path))


def test_every_line_is_json_and_the_log_stays_small(
    tmp_path: Path, mosquitto: Mosquitto, garbage: GarbageDevice, modbus_sim: int
) -> None:
    cfg = config(tmp_path, modbus_sim, garbage.port, mosquitto)
    started = time.monotonic()
    proc = start_gateway(cfg, tmp_path)
    try:
        eventually(lambda: has(tmp_path, event="mqtt connected"), proc, timeout=60)
        eventually(lambda: has(tmp_path, event="modbus device offline", device="dead-unit"), proc, timeout=60)
        eventually(lambda: garbage.requests >= 3, proc, timeout=60)
        eventually(lambda: time.monotonic() - started >= RUN_SECONDS / 3, proc, timeout=RUN_SECONDS + 60)
        mosquitto.stop()
        eventually(lambda: has(tmp_path, event="sink write failed; data kept, retrying", sink="mqtt"), proc, 60)
        eventually(lambda: time.monotonic() - started >= 2 * RUN_SECONDS / 3, proc, timeout=RUN_SECONDS + 60)
        mosquitto.start()
        eventually(lambda: has(tmp_path, event="sink delivering again", sink="mqtt"), proc, timeout=60)
        eventually(lambda: time.monotonic() - started >= RUN_SECONDS, proc, timeout=RUN_SECONDS + 60)
    finally:
        code = stop(proc)
    size = (tmp_path / "gateway.log").stat().st_size
    text = lines(tmp_path)
    bad = [line for line in text if not _is_json_object(line)]
    print(f"{time.monotonic() - started:.0f} s: {len(text)} lines, {size} bytes, {len(bad)} not JSON")
    print(f"garbage device: {garbage.requests} requests answered with {garbage.sent} bytes")
    assert code == 0
    assert not bad, "\n".join(line[:300] for line in bad[:20])
    assert size < LOG_BOUND
    for e in events(tmp_path):
        assert {"event", "level", "timestamp", "logger"} <= set(e), e
    assert has(tmp_path, device="garbage", level="warning")  # the gateway noticed the garbage device


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
