"""The connection of one Modbus link, on a pymodbus client: connect, read, close.

A link is a Modbus TCP endpoint, a TLS one, an RTU-over-TCP converter or a serial RTU bus
(`transport`). Every client gets a checking framer (replies checked against their request, the
read-only guard). On RTU the link keeps the line's silent interval before each request, gives a
read the frames' time on the wire on top of its timeout, and counts the bytes that answered nothing
(`bms_gateway_modbus_discarded_bytes_total`).
The link's state changes are logged once each: the first failed connect of an outage ("unreachable"),
a connection that breaks after it carried answers ("connection lost"), and the first answer after
either ("reconnected"); a link that drops every few seconds logs two lines per drop, never one per
poll. Which devices a lost connection costs a cycle is the poller's business.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import termios
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, AsyncModbusTlsClient
from pymodbus.exceptions import ConnectionException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest

from gateway.runtime.backoff import Backoff
from gateway.sources.modbus import metrics
from gateway.sources.modbus.deadline import ReadDeadline
from gateway.sources.modbus.framing import CheckedFramer, CheckedRtuFramer
from gateway.sources.modbus.replies import Request
from gateway.sources.modbus.transport import LinkSettings, checked_framer
from gateway.sources.modbus.wire import FAST_RESPONSES

log = structlog.get_logger("source.modbus")


class ConnectionLost(Exception):
    pass


# The request of each read function code (the only requests a link can build).
REQUESTS: dict[int, type[ModbusPDU]] = {
    1: ReadCoilsRequest,
    2: ReadDiscreteInputsRequest,
    3: ReadHoldingRegistersRequest,
    4: ReadInputRegistersRequest,
}


def _fail_read_in_flight(client: Any, framer: CheckedFramer | CheckedRtuFramer) -> None:
    """A connection closed by the peer ends the read in flight at once, as a lost connection (pymodbus
    would wait out the response timeout for an answer that cannot come any more)."""
    future = getattr(client.ctx, "response_future", None)
    if framer.request is not None and isinstance(future, asyncio.Future) and not future.done():
        future.set_exception(ConnectionException("connection closed during the read"))


def make_client(
    settings: LinkSettings,
    timeout: float,
    trace_pdu: Callable[[bool, Any], Any],
    trace_connect: Callable[[bool], None],
) -> Any:
    """The pymodbus client of a link (not connected), without pymodbus's own retries and reconnects
    (the poller's: jittered backoff). Raises OSError or ssl.SSLError when the TLS files cannot be used."""
    common: dict[str, Any] = {
        "timeout": timeout,
        "retries": 0,
        "reconnect_delay": 0,
        "reconnect_delay_max": 0,
        "trace_pdu": trace_pdu,
        "trace_connect": trace_connect,
    }
    if settings.serial:
        line = settings.line
        return AsyncModbusSerialClient(
            settings.device,
            framer=FramerType.RTU,
            baudrate=line.baudrate,
            bytesize=line.bytesize,
            parity=line.parity,
            stopbits=line.stopbits,
            **common,
        )
    if settings.transport == "tls":
        ctx = settings.tls.context(settings.base_dir)
        client = AsyncModbusTlsClient(settings.host, sslctx=ctx, port=settings.port, **common)
        if settings.tls.server_name:  # the name to check when it is not the host's (an address, a tunnel)
            _check_name(client, settings.tls.server_name)
        return client
    framer = FramerType.RTU if settings.transport == "rtu_over_tcp" else FramerType.SOCKET
    return AsyncModbusTcpClient(settings.host, port=settings.port, framer=framer, **common)


def serial_problem(device: str) -> str:
    """Why a serial port may not open, as far as its device file tells (logged when a connect fails)."""
    if not os.path.exists(device):
        return (
            f"serial port {device} does not exist (adapter unplugged? under systemd the unit needs the drop-in "
            "systemd/serial-port.conf.example)"
        )
    if not os.access(device, os.R_OK | os.W_OK):
        return f"serial port {device} cannot be opened: no permission (the group dialout, or uucp on Arch)"
    return f"serial port {device} cannot be opened"


def _check_name(client: Any, name: str) -> None:
    """Make the TLS handshake check `name` instead of the host connected to (pymodbus connects through
    `loop.create_connection`, prepared in `call_create`)."""
    client.ctx.call_create = partial(client.ctx.call_create, server_hostname=name)


class Link:
    """One connection or serial port (opened again after a drop by whoever uses it)."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        pause_after_connect: float,
        backoff: Backoff,
        settings: LinkSettings | None = None,
    ) -> None:
        """Register-read responses are decoded by `wire`. `backoff`: the delays of its user's connect
        attempts, reset here by the first answer after an outage. `settings`: the transport (default
        Modbus TCP to host:port)."""
        self.settings = settings or LinkSettings("tcp", host, port)
        self.serial = self.settings.serial  # a serial line: silent intervals and wire time around each read
        self.host, self.port = host, port
        self.label = self.settings.label
        self.timeout = timeout
        self.pause_after_connect = pause_after_connect
        self.client: Any = None
        self.framer: CheckedFramer | CheckedRtuFramer | None = None
        self.quiet_from = 0.0  # monotonic time since which the serial line is silent
        self.up: bool | None = None  # True once an answer came; False after a drop or failed connect
        self.attempts = 0  # connects since the link went down
        self.backoff = backoff
        self.sent = 0  # requests sent (all read function codes)
        self.deadline = ReadDeadline()  # the timeout of the read in flight
        self._requests = metrics.requests.endpoint(self.label)  # sent by function code, and their latency
        self._discarded = metrics.discarded.labels(self.label)

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    async def connect(self) -> bool:
        """Open the connection (closing any old one). False when refused or unreachable."""
        self.close()
        framer = checked_framer(self.settings, self._discarded.inc)

        def connection(up: bool) -> None:
            if not up:
                _fail_read_in_flight(client, framer)

        if self.up is not True:
            self.attempts += 1
        try:
            client = make_client(self.settings, self.timeout, framer.trace_pdu, connection)
        except (OSError, ssl.SSLError) as exc:  # the TLS files: a failed connect, retried with backoff
            metrics.connects.labels(self.label, "failed").inc()
            self._state(False, f"cannot load the TLS files: {exc}")
            return False
        client.ctx.framer = framer  # replies go through the checks (the decoder is the framer's own)
        for response in FAST_RESPONSES:
            client.register(response)
        what = serial_problem(self.settings.device) if self.settings.serial else "connection refused or unreachable"
        try:
            ok = await client.connect()
        except (OSError, ValueError, termios.error) as exc:  # a port that refuses the line settings
            ok, what = False, f"serial port refused its settings: {exc}"
        metrics.connects.labels(self.label, "ok" if ok else "failed").inc()
        if not ok:
            client.close()
            self._state(False, what)
            return False
        self.client, self.framer = client, framer
        self.quiet_from = time.monotonic()
        if self.pause_after_connect:
            await asyncio.sleep(self.pause_after_connect)
        return True

    def close(self) -> None:
        """Close on purpose (stop, `close_after_cycle`): not a state change."""
        self.deadline.cancel()
        if self.client is not None:
            self.client.close()
            self.client = self.framer = None

    def drop(self, reason: str) -> None:
        """Close a connection that broke."""
        self.close()
        self._state(False, reason)

    async def read(self, unit_id: int, fc: int, address: int, count: int, timeout: float) -> ModbusPDU | None:
        """One read: its response (a `RejectedReply` when the reply did not answer it), or None when
        none came in `timeout` seconds. Raises ConnectionLost when the connection is gone.

        The request goes out through the client's transaction manager (its framer and trace hooks: the
        read-only guard, the reply checks), and the reply's future is awaited here: the task resumes in
        the loop turn after the reply is decoded. (pymodbus's own `execute` awaits it through
        `asyncio.wait_for`, which on Python 3.11 adds a waiter future: two more loop turns a request,
        each as long as everything else ready in the loop.) The timeout is the link's one timer that
        ends the future with None (`deadline.ReadDeadline`), not a timeout scope: no timer handle or
        scope object a request, and no cancellation of the task to undo."""
        client, framer = self.client, self.framer
        if client is None or not client.connected:
            raise ConnectionLost("connection closed")
        ctx = client.ctx
        request = REQUESTS[fc](address=address, count=count, dev_id=unit_id)
        serial = self.serial
        if serial:  # the request and the longest answer take their time on the line
            line = self.settings.line
            timeout += line.wire_time(8 + 5 + Request(unit_id, fc, address, count).data_bytes)
            quiet = self.quiet_from + line.gap - time.monotonic()
            if quiet > 0:
                await asyncio.sleep(quiet)
        self.sent += 1
        counts = self._requests
        counts.sent[fc] += 1
        t0 = time.perf_counter()
        async with ctx._lock:  # one request at a time on the connection (the poller's turn taking)
            request.transaction_id = ctx.getNextTID()
            if ctx.recv_buffer and self.settings.rtu:  # the start of a frame that never ended
                self._discarded.inc(len(ctx.recv_buffer))
            ctx.recv_buffer = b""
            loop = asyncio.get_running_loop()
            future = ctx.response_future = loop.create_future()
            ctx.pdu_send(request)
            self.deadline.arm(loop, future, loop.time() + timeout)
            try:
                rr: ModbusPDU | None = await future
            except ConnectionException as exc:
                raise ConnectionLost(str(exc)) from exc
            except asyncio.CancelledError:  # a stop or a reload: the reply on its way answers nothing now
                if framer is not None:
                    framer.expire()
                raise
            finally:
                self.deadline.disarm()
                if serial:
                    self.quiet_from = time.monotonic()
            if rr is None:
                if not client.connected:
                    raise ConnectionLost("no response; connection closed")
                return None if framer is None else framer.expire()  # a damaged RTU answer, or none
        counts.observe(time.perf_counter() - t0)
        if self.up is not True:
            self._state(True)
        return rr

    def _state(self, up: bool, reason: str = "") -> None:
        if up == self.up:
            return
        was, self.up = self.up, up
        if up:
            if was is False:
                log.info("modbus endpoint reconnected", endpoint=self.label, attempts=self.attempts)
            self.attempts = 0
            self.backoff.reset()
        elif was:
            log.warning("modbus connection lost", endpoint=self.label, reason=reason)
        else:
            log.warning("modbus endpoint unreachable", endpoint=self.label, reason=reason)
