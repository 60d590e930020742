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

from tests.support.waits import wait_for

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

        def found() -> int | None:
            self.poll()  # waits up to 0.2 s for a datagram: the poll step
            return next((i + 1 for i, m in enumerate(self.messages) if pred(m)), None)

        got = lambda: f"got {self.messages[-10:]}"  # noqa: E731
        return wait_for(found, timeout, "a matching notification", alive, step=0, detail=got) - 1

    def close(self) -> None:
        self.sock.close()
        if self._dir is not None:
            with_path = os.path.join(self._dir, "notify")
            if os.path.exists(with_path):
                os.unlink(with_path)
            os.rmdir(self._dir)


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
    def found() -> dict[str, Any] | None:
        return next((e for e in log_events(tmp)[after:] if e.get("event") == event), None)

    return wait_for(found, timeout, f"log event {event!r}", proc, log=tmp / "gateway.log")


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
    return wait_for(check, timeout, "condition", proc)  # type: ignore[return-value]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    wait_for(lambda: http_get(url, timeout=1), timeout, f"{url} to answer", proc, retry_on=(OSError,))


def truth_counts(tmp: Path) -> dict[str, int]:
    return {p.stem.removeprefix("truth-"): len(p.read_text().splitlines()) for p in tmp.glob("truth-*.jsonl")}
