"""A small asyncio HTTP/1.1 server: health, readiness, Prometheus metrics, status JSON and the status page.

Routes (GET and HEAD only):
    /healthz      200 "ok" while the process and its event loop answer
    /readyz       200 "ready", or 503 with one line per reason (sources, store, sinks, stopping)
    /metrics      Prometheus text format from the gateway's registry
    /api/status   JSON: racks, devices, sinks, active alarms and every point (`?rack=` filters, `?points=0` omits)
    /             the live status page (static files from the package; no CDN, works offline)

Loopback by default. One request per connection (`Connection: close`); request heads are bounded.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

log = structlog.get_logger("http")

MAX_HEAD = 8192
READ_TIMEOUT = 10.0
STATIC_FILES = ("index.html", "app.js", "style.css")
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


class BadRequest(ValueError):
    pass


def parse_request_head(head: bytes) -> Request:
    """Parse `GET /path?x=1 HTTP/1.1` (the first line of the head); raise BadRequest when it is not one."""
    try:
        line = head.split(b"\r\n", 1)[0].decode("ascii")
    except UnicodeDecodeError as exc:
        raise BadRequest("request line is not ASCII") from exc
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("malformed request line")
    method, target, _version = parts
    url = urlsplit(target)
    return Request(method, unquote(url.path) or "/", parse_qs(url.query))


def render_response(resp: Response, head_only: bool = False) -> bytes:
    lines = [
        f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'OK')}",
        f"Content-Type: {resp.content_type}",
        f"Content-Length: {len(resp.body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in SECURITY_HEADERS),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head if head_only else head + resp.body


def text(status: int, body: str) -> Response:
    return Response(status, body.encode())


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(doc, separators=(",", ":")).encode(), "application/json")


def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        return text(404, "not found\n")
    data = (resources.files("gateway.ops") / "static" / name).read_bytes()
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype.endswith("javascript"):
        ctype += "; charset=utf-8"
    return Response(200, data, ctype)


StatusView = Callable[[str | None, bool], dict[str, Any]]  # (rack filter, with points) -> document
Problems = Callable[[], list[str]]


class App:
    """The routes, over views of the runtime (kept apart from the socket code so that it is easy to test)."""

    def __init__(self, registry: CollectorRegistry, status: StatusView, problems: Problems) -> None:
        self.registry = registry
        self.status = status
        self.problems = problems

    def handle(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return text(405, "only GET and HEAD\n")
        path = req.path
        if path == "/healthz":
            return text(200, "ok\n")
        if path == "/readyz":
            problems = self.problems()
            return text(503, "".join(f"{p}\n" for p in problems)) if problems else text(200, "ready\n")
        if path == "/metrics":
            self.problems()  # refreshes bms_gateway_ready for this scrape
            return Response(200, generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4)
        if path == "/api/status":
            rack = req.query.get("rack", [None])[0] or None
            points = req.query.get("points", ["1"])[0] not in ("0", "false", "no")
            return json_response(self.status(rack, points))
        if path in ("/", "/index.html"):
            return static_file("index.html")
        if path.startswith("/static/"):
            return static_file(path.removeprefix("/static/"))
        return text(404, "not found\n")


class HttpServer:
    """Serves an App on host:port until cancelled."""

    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self.bound = asyncio.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port, limit=MAX_HEAD)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.bound.set()
        log.info("http listening", url=self.url)

    async def stop(self) -> None:
        """Stop listening and drop open connections (a slow client never delays a shutdown)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.close()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
            self.bound.clear()

    async def serve(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
                req = parse_request_head(head)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, BadRequest):
                writer.write(render_response(text(400, "bad request\n")))
                return
            self.requests += 1
            try:
                resp = self.app.handle(req)
            except Exception:
                log.exception("http handler failed", path=req.path)
                resp = text(500, "internal error\n")
            writer.write(render_response(resp, head_only=req.method == "HEAD"))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()
            with suppress(ConnectionError, OSError):
                await writer.wait_closed()
