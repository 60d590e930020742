"""The HTTP server on a real loopback socket: concurrency, HEAD, oversized or idle clients, stop."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.ops.http import MAX_HEAD, App, HttpServer
from tests.delivery_support import wait_for


def make_server() -> HttpServer:
    def status(rack: str | None, points: bool) -> dict[str, Any]:
        return {"rack": rack}

    return HttpServer(App(CollectorRegistry(), status, lambda: []), "127.0.0.1", 0)


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
    await wait_for(lambda: bool(server._clients))  # the server has taken the connection
    await server.stop()
    async with asyncio.timeout(5):  # far below the 10 s a silent client may otherwise hold a connection
        assert await reader.read() == b""
    writer.close()
    again = HttpServer(server.app, "127.0.0.1", port)
    await again.start()  # the port is free again (a reload can move back to it)
    await again.stop()
