"""The watchdog schedule on a made-up clock, sending real datagrams: WATCHDOG=1 at half of
WATCHDOG_USEC, STATUS= only when the summary changed, READY/RELOADING/STOPPING messages."""

from __future__ import annotations

import itertools
import os
import socket
import tempfile
from collections.abc import Iterator

import pytest

from gateway.ops.watchdog import STATUS_EVERY, SystemdNotifier


@pytest.fixture
def receiver() -> Iterator[tuple[socket.socket, str]]:
    d = tempfile.mkdtemp(dir="/tmp")
    path = os.path.join(d, "n")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.setblocking(False)
    yield s, path
    s.close()
    os.unlink(path)
    os.rmdir(d)


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_pings_at_half_of_watchdog_usec_and_status_on_change(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    lines = itertools.chain(["a"] * 3, itertools.repeat("b"))
    sd = SystemdNotifier(lambda: next(lines), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000"})
    assert sd.interval == 10.0
    now, end = 0.0, 60.0
    while now <= end:
        now += sd.tick(now)
    msgs = received(sock)
    pings = [m for m in msgs if m == "WATCHDOG=1"]
    assert len(pings) == 7  # t = 0, 10, ..., 60
    assert [m for m in msgs if m.startswith("STATUS=")] == ["STATUS=a", "STATUS=b"]
    assert sd.pings == 7
    sd.close()


def test_no_watchdog_only_status(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    sd = SystemdNotifier(lambda: "same", env={"NOTIFY_SOCKET": path})
    assert sd.interval is None
    assert sd.tick(0.0) == STATUS_EVERY
    assert sd.tick(STATUS_EVERY) == STATUS_EVERY
    assert received(sock) == ["STATUS=same"]
    sd.close()


def test_lifecycle_messages(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    sd = SystemdNotifier(lambda: "ready, 2/2 racks online", env={"NOTIFY_SOCKET": path})
    sd.ready()
    sd.reloading()
    sd.reloaded("reloaded: source rack-c added")
    sd.stopping()
    msgs = [dict(line.split("=", 1) for line in m.split("\n")) for m in received(sock)]
    assert msgs[0] == {"READY": "1", "STATUS": "ready, 2/2 racks online"}
    assert msgs[1]["RELOADING"] == "1" and int(msgs[1]["MONOTONIC_USEC"]) > 0
    assert msgs[2] == {"READY": "1", "STATUS": "ready, 2/2 racks online (reloaded: source rack-c added)"}
    assert msgs[3]["STOPPING"] == "1"
    sd.close()


def test_a_failing_status_view_never_stops_the_pings(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver

    def broken() -> str:
        raise RuntimeError("bug")

    sd = SystemdNotifier(broken, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    sd.tick(0.0)
    assert received(sock) == ["WATCHDOG=1", "STATUS=running"]
    sd.close()
