"""sd_notify without systemd's library: addresses, messages, watchdog interval, and real datagrams."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator

import pytest

from gateway.ops.sdnotify import Notifier, format_message, socket_address, watchdog_interval


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@abstract/name", b"\0abstract/name"),
        ("", None),
        ("relative/path", None),
        ("vsock:2:1234", None),
    ],
)
def test_socket_address(value: str, expected: str | bytes | None) -> None:
    assert socket_address(value) == expected


def test_format_message_joins_fields_and_keeps_one_line_values() -> None:
    assert format_message({"READY": 1, "STATUS": "a\nb"}) == b"READY=1\nSTATUS=a b"


@pytest.mark.parametrize(
    ("env", "pid", "expected"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 7, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "7"}, 7, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "8"}, 7, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, 7, None),
        ({"WATCHDOG_USEC": "abc"}, 7, None),
        ({}, 7, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str], pid: int, expected: float | None) -> None:
    assert watchdog_interval(env, pid) == expected


@pytest.fixture
def receiver() -> Iterator[tuple[socket.socket, str]]:
    d = tempfile.mkdtemp(dir="/tmp")
    path = os.path.join(d, "n")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    yield s, path
    s.close()
    os.unlink(path)
    os.rmdir(d)


def test_notifier_sends_datagrams_to_a_path(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.notify(READY=1, STATUS="ok")
    assert n.notify(WATCHDOG=1)
    assert sock.recv(100) == b"READY=1\nSTATUS=ok"
    assert sock.recv(100) == b"WATCHDOG=1"
    assert n.sent == 2
    n.close()


def test_notifier_reaches_the_abstract_namespace() -> None:
    name = f"bms-gw-unit-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.notify(STOPPING=1)
        assert s.recv(100) == b"STOPPING=1"
        n.close()


def test_notifier_without_socket_is_a_no_op() -> None:
    n = Notifier({})
    assert not n.enabled
    assert not n.notify(READY=1)


def test_notifier_never_raises_when_nobody_listens() -> None:
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent/dir/notify"})
    assert n.enabled
    assert not n.notify(READY=1)
    assert not n.notify(WATCHDOG=1)
    n.close()
