"""sd_notify in pure Python: datagrams to the service manager over `$NOTIFY_SOCKET`.

The protocol (sd_notify(3)): newline-separated `KEY=VALUE` assignments in one datagram sent to the
unix socket named by `$NOTIFY_SOCKET`; a name starting with `@` is in the abstract namespace (its
first byte is NUL). No native library is needed. Without `$NOTIFY_SOCKET` (not started by systemd)
every call is a no-op, so the daemon behaves the same on a laptop.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("sdnotify")


def socket_address(value: str) -> str | bytes | None:
    """The address to send to for a `$NOTIFY_SOCKET` value: a path, or bytes for the abstract namespace."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock (vsock:CID:PORT) and relative names are not supported


def format_message(fields: Mapping[str, str | int]) -> bytes:
    """`{"READY": 1, "STATUS": "ok"}` → b"READY=1\\nSTATUS=ok"; newlines inside values become spaces."""
    lines = []
    for key, value in fields.items():
        text = str(value).replace("\n", " ")
        lines.append(f"{key}={text}")
    return "\n".join(lines).encode()


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of `$WATCHDOG_USEC`, or None when no watchdog is asked for.

    `$WATCHDOG_PID`, when set, must be this process (the variables may leak into a child)."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    wpid = env.get("WATCHDOG_PID", "")
    if wpid and (not wpid.isdigit() or int(wpid) != pid):
        return None
    return int(usec) / 2e6


class Notifier:
    """Sends notifications to the service manager; never raises (a lost notification is logged once)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = socket_address(env.get("NOTIFY_SOCKET", ""))
        self.sent = 0
        self._sock: socket.socket | None = None
        self._warned = False
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram (`notify(READY=1, STATUS="...")`); True when it was handed to the socket."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto(format_message(fields), self.address)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify the service manager", error=exc.strerror or str(exc))
                self._warned = True
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
