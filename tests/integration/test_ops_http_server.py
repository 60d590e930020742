"""The HTTP server on a real loopback socket: concurrency, HEAD, oversized, idle or slow clients, the
connection limit, stop."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.ops.http import MAX_HEAD, App
from gateway.ops.httpserver import HttpLimits, HttpServer
from tests.delivery_support import metric
from tests.support.waits import await_for


def make_server(limits: HttpLimits | None = None) -> HttpServer:
    def status(rack: str | None, points: bool) -> dict[str, Any]:
        return {"rack": rack}

    return HttpServer(App(CollectorRegistry(), status, lambda: []), "127.0.0.1", 0, limits)


def dropped(reason: str) -> float:
    return metric("bms_gateway_http_connections_dropped_total", reason=reason)


async def request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


async def test_concurrent_requests_and_head() -> None:
    server = make_server()
    await server.start()
    try:
        raws = [f"GET /api/status?rack=r{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(20)]
        answers = await asyncio.gather(*(request(server.port, raw) for raw in raws))
        for i, answer in enumerate(answers):
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert answer.endswith(f'{{"rack":"r{i}"}}'.encode())
        head = await request(server.port, b"HEAD /healthz HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n") and b"Content-Length: 3" in head
        assert server.requests == 21
    finally:
        await server.stop()


async def test_oversized_request_head_is_refused() -> None:
    server = make_server()
    await server.start()
    try:
        answer = await request(server.port, b"GET /" + b"a" * (MAX_HEAD * 2) + b" HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400")
        assert (await request(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        await server.stop()


async def test_stop_drops_idle_clients_and_frees_the_port() -> None:
    server = make_server()
    await server.start()
    port = server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # connects, never sends a request
    await await_for(lambda: server.open_connections == 1)  # the server has taken the connection
    await server.stop()
    async with asyncio.timeout(30):
        assert await reader.read() == b""
    writer.close()
    again = HttpServer(server.app, "127.0.0.1", port)
    await again.start()  # the port is free again (a reload can move back to it)
    await again.stop()


async def test_an_idle_half_request_is_closed_after_the_read_timeout() -> None:
    server = make_server(HttpLimits(read_timeout=0.2, header_timeout=30.0))
    await server.start()
    try:
        before = dropped("timeout")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # and then nothing: the head never ends
        async with asyncio.timeout(30):
            assert await reader.read() == b""  # closed without an answer
        writer.close()
        assert dropped("timeout") == before + 1
        await await_for(lambda: server.open_connections == 0)  # forgotten
    finally:
        await server.stop()


async def test_a_head_trickling_in_is_closed_after_the_header_timeout() -> None:
    server = make_server(HttpLimits(read_timeout=30.0, header_timeout=0.5))
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        sent, closed = 0, False
        async with asyncio.timeout(30):
            while not closed:  # one header line at a time, each well within the read timeout
                writer.write(f"X-{sent}: y\r\n".encode())
                sent += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        try:
                            assert await reader.read() == b""
                        except ConnectionResetError:  # closed with a line of ours unread: the kernel sends a reset
                            pass
                        closed = True
        assert sent > 1  # it kept sending, and was closed anyway
        writer.close()
    finally:
        await server.stop()


async def test_idle_connections_past_the_limit_close_the_oldest_and_a_probe_is_answered() -> None:
    limit = 8
    server = make_server(HttpLimits(max_connections=limit, read_timeout=60.0, header_timeout=60.0))
    await server.start()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        before = dropped("evicted")
        for _ in range(100):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /metrics HTTP/1.1\r\n")  # half a request, held open
            idle.append((reader, writer))
        await await_for(lambda: dropped("evicted") >= before + 100 - limit)  # the oldest idle ones closed
        assert server.open_connections <= limit
        answer = await request(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        # The oldest were closed, the newest still wait.
        async with asyncio.timeout(30):
            assert await idle[0][0].read() == b""
        assert not idle[-1][0].at_eof()
    finally:
        for _, writer in idle:
            writer.close()
        await server.stop()


async def test_a_connection_answering_is_never_closed_for_a_newer_one_and_a_stuck_reader_times_out() -> None:
    """At the limit with every connection answering, a new one is refused; a client that never takes its
    answer is dropped after the write timeout, and the slot serves again."""

    def status(rack: str | None, points: bool) -> dict[str, Any]:
        return {"filler": "x" * 20_000_000}  # far more than the socket buffers hold

    limits = HttpLimits(max_connections=1, write_timeout=1.0)
    server = HttpServer(App(CollectorRegistry(), status, lambda: []), "127.0.0.1", 0, limits)
    await server.start()
    try:
        busy, timed_out = dropped("busy"), dropped("write_timeout")
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /api/status HTTP/1.1\r\n\r\n")  # and never reads the answer
        await await_for(lambda: server.requests == 1)
        refused = await request(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert refused == b"" and dropped("busy") == busy + 1  # closed at once, the answering one kept
        await await_for(lambda: dropped("write_timeout") == timed_out + 1)
        assert (await request(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        await server.stop()
