"""HTTP request parsing and routing, without sockets (the server itself is tested end to end)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from gateway.ops.http import App, BadRequest, Response, parse_request_head, render_response


def test_parse_request_head() -> None:
    req = parse_request_head(b"GET /api/status?rack=r%201&points=0 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert req.method == "GET" and req.path == "/api/status"
    assert req.query == {"rack": ["r 1"], "points": ["0"]}


@pytest.mark.parametrize("head", [b"GARBAGE\r\n\r\n", b"GET / SPDY/3\r\n\r\n", b"\xff\xfe / HTTP/1.1\r\n\r\n"])
def test_parse_request_head_rejects_garbage(head: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_request_head(head)


def test_render_response_has_length_and_security_headers() -> None:
    raw = render_response(Response(200, b"hello"))
    head, body = raw.split(b"\r\n\r\n", 1)
    assert body == b"hello"
    assert b"Content-Length: 5" in head
    assert b"X-Content-Type-Options: nosniff" in head
    assert b"Content-Security-Policy: default-src 'self'" in head
    assert render_response(Response(200, b"hello"), head_only=True).endswith(b"\r\n\r\n")


class Views:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.calls: list[tuple[str | None, bool]] = []

    def status(self, rack: str | None, points: bool) -> dict[str, Any]:
        self.calls.append((rack, points))
        return {"ok": True}


def app() -> tuple[App, Views]:
    reg = CollectorRegistry()
    Counter("demo_things", "Things", registry=reg).inc(3)
    views = Views()
    return App(reg, views.status, lambda: views.problems), views


def get(a: App, path: str, method: str = "GET") -> Response:
    return a.handle(parse_request_head(f"{method} {path} HTTP/1.1\r\n\r\n".encode()))


def test_routes() -> None:
    a, views = app()
    assert get(a, "/healthz").status == 200
    assert get(a, "/readyz").body == b"ready\n"
    views.problems = ["sources not started: r1", "sink influx not connected (connecting)"]
    r = get(a, "/readyz")
    assert r.status == 503 and r.body.decode().splitlines() == views.problems
    m = get(a, "/metrics")
    fams = {f.name: f for f in text_string_to_metric_families(m.body.decode())}
    assert fams["demo_things"].samples[0].value == 3.0
    assert json.loads(get(a, "/api/status?rack=r2&points=0").body) == {"ok": True}
    assert views.calls[-1] == ("r2", False)
    get(a, "/api/status")
    assert views.calls[-1] == (None, True)
    assert get(a, "/nope").status == 404
    assert get(a, "/static/../config.py").status == 404
    assert get(a, "/healthz", "POST").status == 405


def test_status_page_and_its_files_are_served_from_the_package() -> None:
    a, _ = app()
    page = get(a, "/")
    assert page.status == 200 and page.content_type.startswith("text/html")
    html = page.body.decode()
    assert "/static/app.js" in html and "/static/style.css" in html
    assert "http://" not in html and "https://" not in html  # no CDN: works without internet
    js = get(a, "/static/app.js")
    assert js.status == 200 and "javascript" in js.content_type
    assert "/api/status" in js.body.decode()
    assert get(a, "/static/style.css").content_type.startswith("text/css")
