"""The InfluxDB write endpoint against a real HTTP server on loopback: the request InfluxDB's v2 write API
expects, the server's answers as Responses (status, body, Retry-After), a kept-alive connection that
the server closed is opened again once, and a server that is not there is status 0 naming the error."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from gateway.sinks.influx.endpoint import WriteEndpoint
from tests.support.ports import free_port


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as InfluxDB answers
    seen: ClassVar[list[dict[str, Any]]] = []
    answers: ClassVar[list[tuple[int, bytes, dict[str, str]]]] = []
    close_after: ClassVar[bool] = False

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body,
                          "peer": self.client_address[1]})  # fmt: skip
        status, data, headers = self.answers.pop(0) if self.answers else (204, b"", {})
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if self.close_after:  # the server ends the kept-alive connection without saying so
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    Handler.seen, Handler.answers, Handler.close_after = [], [], False
    srv = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def endpoint(srv: ThreadingHTTPServer, token: str = "tok") -> WriteEndpoint:
    port = srv.server_address[1]
    return WriteEndpoint(f"http://127.0.0.1:{port}/prefix/", token, "my org", "bms", "ms", timeout=30)


def test_a_write_is_the_request_of_the_v2_write_api(server: ThreadingHTTPServer) -> None:
    ep = endpoint(server)
    body = zlib.compress(b"cell,rack=r1 v=3.3 1", 1, wbits=31)
    assert ep.post(body, gzip=True).status == 204
    assert ep.post(b"cell,rack=r1 v=3.4 2").status == 204
    ep.close()
    first, second = Handler.seen
    assert first["path"] == "/prefix/api/v2/write?org=my+org&bucket=bms&precision=ms"
    assert first["headers"]["Authorization"] == "Token tok"
    assert first["headers"]["Content-Encoding"] == "gzip"
    assert first["headers"]["Content-Type"] == "text/plain; charset=utf-8"
    assert zlib.decompress(first["body"], wbits=31) == b"cell,rack=r1 v=3.3 1"
    assert "Content-Encoding" not in second["headers"] and second["body"] == b"cell,rack=r1 v=3.4 2"
    assert first["peer"] == second["peer"]  # one kept-alive connection


def test_the_servers_answers_become_responses(server: ThreadingHTTPServer) -> None:
    Handler.answers = [
        (400, b'{"code":"invalid","message":"field type conflict"}', {}),
        (429, b"", {"Retry-After": "7"}),
        (401, b'{"code":"unauthorized"}', {}),
    ]
    ep = endpoint(server, token="")
    refused, limited, unauthorized = (ep.post(b"x v=1 1") for _ in range(3))
    ep.close()
    assert (refused.status, refused.body) == (400, '{"code":"invalid","message":"field type conflict"}')
    assert (limited.status, limited.retry_after) == (429, "7")
    assert unauthorized.status == 401
    assert "Authorization" not in Handler.seen[0]["headers"]  # no token, no header


def test_a_connection_the_server_closed_is_opened_again_once(server: ThreadingHTTPServer) -> None:
    Handler.close_after = True
    ep = endpoint(server)
    assert [ep.post(f"x v={i} 1".encode()).status for i in range(3)] == [204, 204, 204]
    ep.close()
    assert [s["body"] for s in Handler.seen] == [b"x v=0 1", b"x v=1 1", b"x v=2 1"]  # each written once


def test_a_server_that_is_not_there_is_status_0_with_the_error() -> None:
    ep = WriteEndpoint(f"http://127.0.0.1:{free_port()}", "t", "", "bms", "ms", timeout=30)
    resp = ep.post(b"x v=1 1")
    assert resp.status == 0 and "ConnectionRefusedError" in resp.body


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        WriteEndpoint("influx.example:8086", "t", "", "bms", "ms", timeout=1)
