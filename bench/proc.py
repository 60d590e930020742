"""A process under measurement: its own CPU seconds and peak RSS from /proc, and the gateway subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def stat_cpu_seconds(stat: str, clk_tck: int = CLK_TCK) -> float:
    """utime + stime of a /proc/<pid>/stat line, in seconds. The command name (field 2, in
    parentheses) may hold spaces and parentheses, so the fields are counted after its last ')'."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / clk_tck  # fields 14 and 15: utime, stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process itself (all its threads, not its children), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return stat_cpu_seconds(f.read().decode())


def status_mb(pid: int, key: str) -> float:
    """A memory line of /proc/<pid>/status (VmHWM: peak RSS, VmRSS: current) in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


@dataclass
class Measured:
    """A subprocess whose CPU and memory we read; `mark()` snapshots CPU for a measured interval."""

    proc: subprocess.Popen[bytes]
    name: str
    marks: dict[str, float] = field(default_factory=dict)
    last_cpu: float = 0.0
    last_hwm: float = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu(self) -> float:
        if self.alive():
            try:
                self.last_cpu = cpu_seconds(self.pid)
            except OSError:
                pass
        return self.last_cpu

    def peak_rss_mb(self) -> float:
        if self.alive():
            try:
                self.last_hwm = status_mb(self.pid, "VmHWM")
            except OSError:
                pass
        return self.last_hwm

    def rss_mb(self) -> float:
        try:
            return status_mb(self.pid, "VmRSS")
        except OSError:
            return float("nan")

    def mark(self, label: str) -> float:
        self.peak_rss_mb()
        self.marks[label] = self.cpu()
        return self.marks[label]

    def wait(self, timeout: float) -> int:
        """Wait for the process to end by itself; its CPU is read before it is reaped (a zombie's
        /proc/<pid>/stat still holds it), so a short-lived peer's CPU is counted whole."""
        deadline = time.monotonic() + timeout
        while self.proc.returncode is None:
            try:
                ended = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: its pid may be another process's now
                break
            if ended is not None:
                with contextlib.suppress(OSError, ValueError):
                    self.last_cpu = cpu_seconds(self.pid)
                break
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.proc.args, timeout)
            time.sleep(0.01)
        return self.proc.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait (the gateway drains and flushes), then SIGKILL if it must."""
        if self.alive():
            self.cpu()
            self.peak_rss_mb()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode or 0)


def spawn(args: list[str], name: str, log: Path, env: dict[str, str] | None = None) -> Measured:
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("ab")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=log.parent)
    out.close()
    return Measured(proc, name)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


class NotifySocket:
    """A unix datagram socket passed as $NOTIFY_SOCKET; records when READY=1 arrives (monotonic)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists():
            path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.ready_at: float | None = None
        self.messages: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            text = data.decode(errors="replace")
            self.messages.append(text)
            if self.ready_at is None and "READY=1" in text.split("\n"):
                self.ready_at = now

    def wait_ready(self, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while self.ready_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.ready_at

    def close(self) -> None:
        self._stop = True
        self._thread.join(1)
        self.sock.close()
        self.path.unlink(missing_ok=True)


def scrape(port: int, timeout: float = 3.0) -> dict[str, float]:
    """Prometheus text from the gateway's /metrics: {'name{labels}': value}; empty when unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def metric_sum(metrics: dict[str, float], name: str) -> float:
    """Sum of every series of a metric (any labels); NaN if none."""
    vals = [v for k, v in metrics.items() if k == name or k.startswith(name + "{")]
    return sum(vals) if vals else float("nan")


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped (receive buffer full) on the UDP sockets bound to `port`."""
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) >= 13 and int(parts[1].rsplit(":", 1)[1], 16) == port:
                total += int(parts[-1])
    return total
