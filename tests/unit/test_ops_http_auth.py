"""HTTP Basic authentication of the endpoint: parsing, constant-time check, routes, configuration."""

from __future__ import annotations

import base64

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.ops.config import HttpConfig, is_loopback
from gateway.ops.http import App, BasicAuth, Response, basic_credentials, parse_request_head, render_response


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get(app: App, path: str, authorization: str | None = None) -> Response:
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\n"
    if authorization is not None:
        head += f"AUTHORIZATION:  {authorization}\r\n"
    return app.handle(parse_request_head((head + "\r\n").encode()))


def make_app(auth: BasicAuth | None) -> App:
    return App(CollectorRegistry(), lambda rack, points: {"rack": rack}, lambda: [], auth)


def test_the_authorization_header_is_parsed() -> None:
    req = parse_request_head(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YTpi\r\n\r\n")
    assert req.authorization == "Basic YTpi"
    assert parse_request_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").authorization is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic("bms", "pa:ss wörd"), ("bms", "pa:ss wörd")),  # only the first colon separates
        ("basic " + base64.b64encode(b"u:").decode(), ("u", "")),
        ("Bearer abc", None),
        ("Basic !!!notbase64", None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), None),
        ("", None),
        (None, None),
    ],
)
def test_basic_credentials(header: str | None, expected: tuple[str, str] | None) -> None:
    assert basic_credentials(header) == expected


def test_routes_ask_for_credentials_except_the_probes() -> None:
    app = make_app(BasicAuth("bms", "s3cret"))
    for path in ("/", "/metrics", "/api/status", "/static/app.js", "/nope"):
        r = get(app, path)
        assert r.status == 401, path
        raw = render_response(r)
        assert b'WWW-Authenticate: Basic realm="bms-gateway"' in raw and b"s3cret" not in raw
    assert get(app, "/healthz").status == 200
    assert get(app, "/readyz").status == 200
    assert get(app, "/api/status?rack=r1", basic("bms", "s3cret")).status == 200
    assert get(app, "/metrics", basic("bms", "wrong")).status == 401
    assert get(app, "/metrics", basic("admin", "s3cret")).status == 401
    assert get(app, "/metrics", basic("bms", "s3cret ")).status == 401
    assert app.refused == 5 + 3
    assert "s3cret" not in repr(app.auth)


def test_without_auth_every_route_is_open() -> None:
    app = make_app(None)
    assert get(app, "/api/status").status == 200
    assert get(app, "/metrics", basic("x", "y")).status == 200


def test_loopback_detection() -> None:
    for host in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "gateway.example", ""):
        assert not is_loopback(host), host


def test_a_non_loopback_address_needs_a_password_or_an_explicit_opt_out() -> None:
    with pytest.raises(ValidationError, match="reachable from other machines"):
        HttpConfig(host="0.0.0.0")
    assert HttpConfig(host="0.0.0.0", password_file="/run/secret").auth_configured
    assert HttpConfig(host="0.0.0.0", password_credential="http-password").auth_configured
    assert not HttpConfig(host="0.0.0.0", allow_unauthenticated=True).auth_configured
    assert not HttpConfig(host="0.0.0.0", enabled=False).auth_configured
    assert not HttpConfig().auth_configured  # loopback, open by default
