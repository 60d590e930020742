"""Helpers for the operations tests: a real NOTIFY_SOCKET listener, gateway configs, a daemon subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent


class NotifyListener:
    """A unix datagram socket, as systemd listens on for sd_notify; keeps every message in order."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir: str | None = None
        if abstract:
            name = f"bms-gateway-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            self._dir = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # short: sun_path holds 108 bytes
            path = os.path.join(self._dir, "notify")
            self.sock.bind(path)
            self.env_value = path
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []

    def poll(self) -> None:
        try:
            while True:
                data = self.sock.recv(4096)
                fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
                self.messages.append(fields)
                self.sock.settimeout(0.01)
        except (TimeoutError, BlockingIOError):
            pass
        finally:
            self.sock.settimeout(0.2)

    def wait_for(self, pred: Callable[[dict[str, str]], bool], timeout: float = 60.0, alive: Any = None) -> int:
        """Index of the first message matching `pred` (waiting for it up to `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.messages):
                if pred(m):
                    return i
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching notification; got {self.messages[-10:]}")
            if alive is not None and alive.poll() is not None:
                self.poll()
                for i, m in enumerate(self.messages):
                    if pred(m):
                        return i
                raise AssertionError(f"the daemon exited ({alive.returncode}); got {self.messages[-10:]}")
            self.poll()

    def close(self) -> None:
        self.sock.close()
        if self._dir is not None:
            with_path = os.path.join(self._dir, "notify")
            if os.path.exists(with_path):
                os.unlink(with_path)
            os.rmdir(self._dir)


def rack_lines(name: str, tmp: Path, interval: float = 0.05, seed: int = 1, **extra: object) -> list[str]:
    lines = [
        "  - type: simulated",
        f"    name: {name}",
        f"    interval: {interval}",
        "    modules: 2",
        "    cells_per_module: 4",
        "    sensors_per_module: 2",
        "    speed: 30",
        f"    seed: {seed}",
        f"    truth_file: {tmp / f'truth-{name}.jsonl'}",
    ]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return lines


def write_config(
    tmp: Path,
    racks: list[str],
    *,
    http_port: int | None = None,
    interval: float = 0.05,
    extra: str = "",
    name: str = "gateway.yaml",
    grace: float = 5.0,
) -> Path:
    lines = ["site: {name: t}", "sources:"]
    for i, rack in enumerate(racks):
        lines += rack_lines(rack, tmp, interval, seed=i + 1)
    lines += ["store:", f"  path: {tmp / 'store.db'}", f"runtime: {{grace_period: {grace}}}"]
    if http_port is None:
        lines.append("http: {enabled: false}")
    else:
        lines.append(f"http: {{port: {http_port}}}")  # the host is the default: loopback
    p = tmp / name
    p.write_text("\n".join(lines) + "\n" + extra)
    return p


def start_gateway(
    cfg: Path, tmp: Path, env: dict[str, str] | None = None, argv: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """`bms-gateway run -c cfg` as a subprocess; its log (stderr, JSON lines) goes to tmp/gateway.log."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        if env is None or key not in env:
            full_env.pop(key, None)
    cmd = argv or [sys.executable, "-m", "gateway", "run", "-c", str(cfg)]
    log = (tmp / "gateway.log").open("ab")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=full_env, cwd=tmp)


def log_events(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "gateway.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def wait_log(
    tmp: Path, event: str, proc: subprocess.Popen[bytes], timeout: float = 60.0, after: int = 0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = log_events(tmp)[after:]
        for e in events:
            if e.get("event") == event:
                return e
        assert proc.poll() is None, (tmp / "gateway.log").read_text()
        time.sleep(0.05)
    raise AssertionError(f"no log event {event!r}: {(tmp / 'gateway.log').read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def eventually(check: Callable[[], T | bool | None], proc: subprocess.Popen[bytes] | None, timeout: float = 60.0) -> T:
    """Poll `check` until it returns something true (and return it); fail if the daemon exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None:
            assert proc.poll() is None, "the gateway exited"
        result = check()
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            assert proc.poll() is None, "the gateway exited"
        try:
            http_get(url, timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} does not answer")


def truth_counts(tmp: Path) -> dict[str, int]:
    return {p.stem.removeprefix("truth-"): len(p.read_text().splitlines()) for p in tmp.glob("truth-*.jsonl")}


def stored_counts(db: Path) -> dict[str, int]:
    from gateway.model import BatchKind
    from gateway.outbox import Outbox

    ob = Outbox(db)
    try:
        out: dict[str, int] = {}
        for row in ob.query():
            if row.batch.kind == BatchKind.SAMPLES:
                out[row.batch.source] = out.get(row.batch.source, 0) + len(row.batch.samples)
        return out
    finally:
        ob.close()
