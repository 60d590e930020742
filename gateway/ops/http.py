"""A small asyncio HTTP/1.1 server: health, readiness, Prometheus metrics, status JSON and the status page.

Routes (GET and HEAD only):
    /healthz      200 "ok" while the process and its event loop answer
    /readyz       200 "ready", or 503 with one line per reason (sources, store, sinks, stopping)
    /metrics      Prometheus text format from the gateway's registry
    /api/status   JSON: racks, devices, sinks, active alarms and every point (`?rack=` filters, `?points=0` omits)
    /             the live status page (static files from the package; no CDN, works offline)

Loopback by default. One request per connection (`Connection: close`); request heads are bounded.
This module is the protocol (parsing, routes, rendering); gateway.ops.httpserver owns the sockets,
the connection limit and the timeouts. With a password configured, every route but /healthz and
/readyz (which probes use) asks for HTTP Basic authentication; the password is compared in constant
time and never logged.
"""

from __future__ import annotations

import base64
import hmac
import json
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

log = structlog.get_logger("http")

MAX_HEAD = 8192  # bytes of a request head (request line and headers)
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
    401: "Unauthorized",
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
    authorization: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


class BadRequest(ValueError):
    pass


def parse_request_head(head: bytes) -> Request:
    """Parse `GET /path?x=1 HTTP/1.1` and the Authorization header; raise BadRequest when it is not a request."""
    first, *fields = head.split(b"\r\n")
    try:
        line = first.decode("ascii")
    except UnicodeDecodeError as exc:
        raise BadRequest("request line is not ASCII") from exc
    authorization = None
    for f in fields:
        name, sep, value = f.partition(b":")
        if sep and name.strip().lower() == b"authorization":
            authorization = value.strip().decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("malformed request line")
    method, target, _version = parts
    url = urlsplit(target)
    return Request(method, unquote(url.path) or "/", parse_qs(url.query), authorization)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header, None when absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class BasicAuth:
    """HTTP Basic authentication against one user name and password (compared in constant time)."""

    def __init__(self, username: str, password: str) -> None:
        self._user = username.encode()
        self._password = password.encode()

    def __repr__(self) -> str:
        return "BasicAuth(<hidden>)"

    def allows(self, header: str | None) -> bool:
        got = basic_credentials(header)
        if got is None:
            return False
        user_ok = hmac.compare_digest(got[0].encode(), self._user)
        password_ok = hmac.compare_digest(got[1].encode(), self._password)
        return user_ok and password_ok


OPEN_PATHS = ("/healthz", "/readyz")
UNAUTHORIZED = Response(
    401, b"authentication required\n", headers=(("WWW-Authenticate", 'Basic realm="bms-gateway", charset="UTF-8"'),)
)


def render_response(resp: Response, head_only: bool = False) -> bytes:
    lines = [
        f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'OK')}",
        f"Content-Type: {resp.content_type}",
        f"Content-Length: {len(resp.body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in resp.headers),
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

    def __init__(
        self, registry: CollectorRegistry, status: StatusView, problems: Problems, auth: BasicAuth | None = None
    ) -> None:
        self.registry = registry
        self.status = status
        self.problems = problems
        self.auth = auth
        self.refused = 0  # requests refused for missing or wrong credentials

    def handle(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return text(405, "only GET and HEAD\n")
        path = req.path
        if self.auth is not None and path not in OPEN_PATHS and not self.auth.allows(req.authorization):
            self.refused += 1
            if req.authorization is not None:
                log.warning("http request with wrong credentials refused", path=path)
            return UNAUTHORIZED
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
