"""How the Modbus simulator is served (`Serving`), and serving it on a pseudo-terminal: a serial line
without hardware.

`open_pty()` makes a pty pair; the simulator's pymodbus serial server reads and writes its master side
through `FdTransport` (an asyncio transport on a file descriptor), and a client (the gateway with
`transport: rtu`) opens the other side by its name, e.g. /dev/pts/7, exactly as it opens
/dev/ttyUSB0. The simulator keeps the other side open too, so the master never reads a hang-up while
no client has the port open, and sets it raw (no echo, no line editing) for the first client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import ssl
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.sources.modbus.transport import SerialLine


@dataclass(frozen=True)
class Serving:
    """How a simulator is served: `transport` tcp, rtu_over_tcp or tls on a TCP port (tls with the
    server's `sslctx`), or rtu on `device` (None: a new pseudo-terminal) with the `line` settings."""

    transport: str = "tcp"
    device: str | None = None
    line: SerialLine = field(default_factory=SerialLine)
    sslctx: ssl.SSLContext | None = None


@dataclass
class Pty:
    """A pseudo-terminal pair: `name` is the path a client opens."""

    master: int
    slave: int
    name: str

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def open_pty() -> Pty:
    master, slave = pty.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return Pty(master, slave, os.ttyname(slave))


class FdTransport(asyncio.Transport):
    """An asyncio transport on a file descriptor it does not own (the pty master)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, fd: int) -> None:
        super().__init__()
        self._loop, self._protocol, self._fd = loop, protocol, fd
        self._out = b""
        self._closed = False

    def setup(self) -> None:
        self._loop.add_reader(self._fd, self._read_ready)
        self._loop.call_soon(self._protocol.connection_made, self)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # the pty went away
            self.close(exc)
            return
        if data:
            self._protocol.data_received(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            return
        self._out += bytes(data)
        self._write_ready()

    def _write_ready(self) -> None:
        try:
            n = os.write(self._fd, self._out)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self.close(exc)
            return
        self._out = self._out[n:]
        if self._out:
            self._loop.add_writer(self._fd, self._write_ready)
        else:
            self._loop.remove_writer(self._fd)

    def close(self, exc: Exception | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._loop.call_soon(self._protocol.connection_lost, exc)

    def is_closing(self) -> bool:
        return self._closed

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return len(self._out)


def fd_connection(loop: asyncio.AbstractEventLoop, factory: Callable[[], Any], fd: int) -> Callable[[], Any]:
    """A replacement for a pymodbus serial server's `call_create`: its connection on `fd`."""

    async def create() -> tuple[FdTransport, Any]:
        protocol = factory()
        transport = FdTransport(loop, protocol, fd)
        transport.setup()
        return transport, protocol

    return create
