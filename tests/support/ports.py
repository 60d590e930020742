"""Free loopback ports for the servers and buses the tests start, safe with parallel test processes.

A port asked of the kernel (bind to port 0) comes from its ephemeral range, the one every outgoing
connection draws its own port from, and is free only until the socket closes: a server started a
second later can find it taken, and two pytest-xdist workers can be handed the same one. So a port
here comes from below the ephemeral range (never an outgoing connection's), from a slice of it that
belongs to this worker alone (gw0, gw1, ...: PYTEST_XDIST_WORKER), starting at a random place, and
only if it can be bound right now on TCP and UDP both (python-can's udp_multicast buses bind with
SO_REUSEADDR: two buses on one port would silently share their frames). A process never hands the
same port out twice. When the machine leaves no room below its ephemeral range, the kernel picks.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Sequence
from pathlib import Path

LOWEST = 20000  # above the well-known defaults a test may meet (502, 1883, 8086, 9108, 15020)
_handed: set[int] = set()  # bounded: a test run asks for a few thousand ports at most


def ephemeral_low(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    """The lowest port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def worker_slice(low: int, high: int, worker: str | None, workers: str | None) -> range:
    """The ports of [low, high) that belong to this test process: the whole span for a run without
    workers, else the n-th of `workers` equal parts for worker "gw<n>"."""
    if not worker or not workers or not worker.startswith("gw"):
        return range(low, high)
    index, count = int(worker[2:]), max(int(workers), 1)
    size = (high - low) // count
    return range(low + (index % count) * size, low + (index % count + 1) * size)


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _kernel_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick(candidates: Sequence[int]) -> int:
    """The first of `candidates`, from a random place on, that can be bound now and was not handed out."""
    start = random.randrange(len(candidates))
    for i in range(len(candidates)):
        port = candidates[(start + i) % len(candidates)]
        if port not in _handed and _bindable(port):
            _handed.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {candidates[0]}..{candidates[-1]}")


def free_port() -> int:
    """A loopback port free on TCP and UDP, this process's alone (see the module's docstring)."""
    ports = worker_slice(
        LOWEST, ephemeral_low(), os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    )
    return pick(ports) if len(ports) >= 100 else _kernel_port(socket.SOCK_STREAM)


def free_udp_port() -> int:
    """A port for a udp_multicast bus: the same rule (free on UDP too, nobody else's)."""
    return free_port()
