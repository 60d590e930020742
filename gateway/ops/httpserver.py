"""The HTTP endpoint's sockets: accepting, bounded connections, timeouts, and what happens when fds run out.

Every connection is bounded: at most `max_connections` are open; a request head must come within
`header_timeout` seconds, with no silence longer than `read_timeout`, and be at most MAX_HEAD bytes;
the answer must be taken within `write_timeout`. A new connection at the limit closes the oldest one
still waiting for its head (a flood of idle half-requests cannot lock out a health probe); when every
connection is busy answering, the new one is closed at once.

The server accepts in its own loop rather than asyncio's: when accept() fails for want of file
descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), asyncio 3.11 logs a traceback for each of up to
100 tries per wake-up; here the oldest waiting connection is closed to free a descriptor, accepting
pauses briefly, and one log line marks the pause and one the recovery (after RECOVERED_AFTER
seconds without such an error). Each dropped connection and
accept error is counted.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from contextlib import suppress
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter, Gauge

from gateway import metrics
from gateway.ops.config import HttpConfig
from gateway.ops.http import MAX_HEAD, App, BadRequest, Response, parse_request_head, render_response, text

log = structlog.get_logger("http")

BACKLOG = 1024  # kernel queue of connections not yet accepted (capped by net.core.somaxconn)
ACCEPT_PAUSE = 0.5  # seconds accepting waits when it is out of resources and no connection can be closed
RECOVERED_AFTER = 10.0  # seconds without a resource error before accepting counts as recovered (logged once)
RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

http_connections = Gauge("bms_gateway_http_connections", "Open HTTP connections", registry=metrics.REGISTRY)
http_dropped = Counter(
    "bms_gateway_http_connections_dropped",
    "HTTP connections closed without an answer, by reason (timeout, evicted, busy, write_timeout)",
    ["reason"],
    registry=metrics.REGISTRY,
)
http_accept_errors = Counter(
    "bms_gateway_http_accept_errors",
    "Failed accept() calls of the HTTP endpoint, by error (EMFILE: out of file descriptors)",
    ["error"],
    registry=metrics.REGISTRY,
)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int = 64
    header_timeout: float = 5.0
    read_timeout: float = 2.0
    write_timeout: float = 10.0

    @classmethod
    def of(cls, cfg: HttpConfig) -> HttpLimits:
        return cls(cfg.max_connections, cfg.header_timeout, cfg.read_timeout, cfg.write_timeout)


class HeadTimeout(Exception):
    """The request head did not come in time."""


async def read_head(reader: asyncio.StreamReader, limits: HttpLimits) -> bytes:
    """The request head up to its blank line, within the header and read timeouts and MAX_HEAD bytes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.header_timeout
    head = bytearray()
    while (end := head.find(b"\r\n\r\n")) < 0:
        if len(head) > MAX_HEAD:
            raise BadRequest("request head too large")
        wait = min(limits.read_timeout, deadline - loop.time())
        try:
            async with asyncio.timeout(max(wait, 0.0)):
                chunk = await reader.read(MAX_HEAD + 1 - len(head))
        except TimeoutError:
            raise HeadTimeout from None
        if not chunk:
            raise BadRequest("connection closed before the request head ended")
        head += chunk
    if end + 4 > MAX_HEAD:
        raise BadRequest("request head too large")
    return bytes(head[: end + 4])


@dataclass(slots=True)
class Connection:
    waiting: bool = True  # still reading the request head (may be closed for a newer connection)
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def _listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address of `host` (as asyncio.start_server binds)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen: set[tuple[int, object]] = set()
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _name, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class HttpServer:
    """Serves an App on host:port (start, then stop), with the connection bounds of `limits`."""

    def __init__(self, app: App, host: str, port: int, limits: HttpLimits | None = None) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits or HttpLimits()
        self.requests = 0
        self.bound = asyncio.Event()
        self._socks: list[socket.socket] = []
        self._conns: dict[int, Connection] = {}  # by id, oldest first
        self._serving: asyncio.Task[None] | None = None
        self._paused = False  # accepting is out of resources (logged once, until RECOVERED_AFTER without)
        self._last_resource_error = 0.0
        self._other_errors: set[str] = set()  # other accept() errors seen (each logged once)
        self._at_limit = False  # new connections close waiting ones (logged once)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    async def start(self) -> None:
        self._socks = _listening_sockets(self.host, self.port)
        self.port = int(self._socks[0].getsockname()[1])
        # One task owns the accept loops and every connection (a TaskGroup); stop() cancels it.
        self._serving = asyncio.get_running_loop().create_task(self._serve(), name="http:serve")
        self.bound.set()
        log.info("http listening", url=self.url, max_connections=self.limits.max_connections)

    async def stop(self) -> None:
        """Stop listening and drop open connections (a slow client never delays a shutdown)."""
        if self._serving is not None:
            self._serving.cancel()
            with suppress(asyncio.CancelledError, Exception):  # a failure was logged when it happened
                await self._serving
            self._serving = None
        for sock in self._socks:
            sock.close()
        self._socks = []
        self.bound.clear()

    async def serve(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def _serve(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for sock in self._socks:
                    tg.create_task(self._accept_loop(sock, tg), name="http:accept")
        except Exception:
            log.exception("http server failed; not serving until the next reload or restart")
            raise
        finally:
            self._conns.clear()
            http_connections.set(0)

    async def _accept_loop(self, sock: socket.socket, tg: asyncio.TaskGroup) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _addr = await loop.sock_accept(sock)
            except OSError as exc:
                await self._accept_failed(exc)
                continue
            self._accepted()
            if len(self._conns) >= self.limits.max_connections and not self._make_room():
                http_dropped.labels("busy").inc()
                conn.close()
                continue
            entry = Connection()
            self._conns[id(entry)] = entry
            http_connections.set(len(self._conns))
            entry.task = tg.create_task(self._client(conn, entry), name="http:client")
            # An accept that is ready does not suspend: yield, so that a flood never holds the loop
            # and a closed connection's descriptor is freed before the next one is taken.
            await asyncio.sleep(0)

    async def _accept_failed(self, exc: OSError) -> None:
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        http_accept_errors.labels(name).inc()
        if exc.errno not in RESOURCE_ERRORS:  # the one connection failed (ECONNABORTED, EPROTO): go on
            if name not in self._other_errors:
                self._other_errors.add(name)
                log.warning("http accept failed; accepting goes on", error=f"{name}: {exc.strerror or exc}")
            await asyncio.sleep(0.01)  # never a busy loop, should the error repeat
            return
        self._last_resource_error = time.monotonic()
        if not self._paused:
            self._paused = True
            log.warning(
                "http accept out of resources: closing waiting connections, pausing",
                error=f"{name}: {os.strerror(exc.errno or 0)}",
                open_connections=len(self._conns),
            )
        waiting = sum(1 for c in self._conns.values() if c.waiting)
        freed = sum(self._evict_oldest_waiting() for _ in range(max(1, waiting // 2)))
        await asyncio.sleep(0.02 if freed else ACCEPT_PAUSE)  # evicted descriptors close on the next loop turns

    def _accepted(self) -> None:
        if self._paused and time.monotonic() - self._last_resource_error > RECOVERED_AFTER:
            self._paused = False
            log.info("http accepting again", open_connections=len(self._conns))

    def _make_room(self) -> bool:
        """At the limit: close the oldest connection still waiting for its head; False when none waits."""
        if not self._at_limit:
            self._at_limit = True
            log.warning(
                "http connection limit reached: new connections close the oldest waiting ones",
                max_connections=self.limits.max_connections,
            )
        return self._evict_oldest_waiting()

    def _evict_oldest_waiting(self) -> bool:
        oldest = next((c for c in self._conns.values() if c.waiting), None)
        if oldest is None or oldest.task is None:
            return False
        self._forget(oldest)
        oldest.task.cancel()
        http_dropped.labels("evicted").inc()
        return True

    def _forget(self, entry: Connection) -> None:
        if self._conns.pop(id(entry), None) is not None:
            http_connections.set(len(self._conns))
            if self._at_limit and len(self._conns) < self.limits.max_connections // 2:
                self._at_limit = False
                log.info("http connections below the limit again", open_connections=len(self._conns))

    async def _client(self, conn: socket.socket, entry: Connection) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_HEAD)
            await self._exchange(reader, writer, entry)
        except OSError:
            pass  # the client went away
        except Exception:  # a bug in answering one request never stops the endpoint
            log.exception("http connection failed")
        finally:
            self._forget(entry)
            if writer is None:
                conn.close()
            else:
                writer.transport.abort()  # no-op after a complete answer; frees the descriptor of any other

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, entry: Connection) -> None:
        try:
            head = await read_head(reader, self.limits)
            req = parse_request_head(head)
        except HeadTimeout:
            http_dropped.labels("timeout").inc()
            return
        except BadRequest:
            entry.waiting = False
            await self._send(writer, render_response(text(400, "bad request\n")))
            return
        entry.waiting = False
        self.requests += 1
        try:
            resp: Response = self.app.handle(req)
        except Exception:
            log.exception("http handler failed", path=req.path)
            resp = text(500, "internal error\n")
        await self._send(writer, render_response(resp, head_only=req.method == "HEAD"))

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write the answer and close: the whole answer reaches the client within write_timeout, or it is dropped."""
        writer.write(data)
        writer.close()
        try:
            async with asyncio.timeout(self.limits.write_timeout):
                await writer.wait_closed()
        except TimeoutError:
            http_dropped.labels("write_timeout").inc()
