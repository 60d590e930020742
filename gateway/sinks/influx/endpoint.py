"""The write endpoint of an InfluxDB v2 server (`POST /api/v2/write`): one request, one `Response`.

The sink needs this one request, so it makes it with the standard library's `http.client` over one
kept-alive connection instead of loading a client library (influxdb-client is some 500 modules and
13 MB resident for it). The request is what influxdb-client's `WriteService.post_write` sent: the org,
bucket and precision in the query, `Authorization: Token <token>`, the body's type and encoding as
given. Every outcome becomes a `Response`: the server's status, body and Retry-After, or status 0 with
the network error. A kept-alive connection the server closed meanwhile is opened again once.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from gateway.sinks.delivery import Response

BODY_MAX = 64 * 1024  # bytes of an answer's body kept (InfluxDB's error is a short JSON document)
USER_AGENT = "bms-gateway"


class WriteEndpoint:
    """`post(body)` writes line protocol; used from one worker thread at a time (a lock makes sure)."""

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        precision: str,
        timeout: float,
        verify_tls: bool = True,
        ca_file: Path | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.token = token
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        query = urlencode({"org": org, "bucket": bucket, "precision": precision})
        self._path = f"{parts.path.rstrip('/')}/api/v2/write?{query}"
        self._timeout = timeout
        self._tls: ssl.SSLContext | None = None
        if self._https:
            self._tls = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
            if not verify_tls:
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def post(self, body: bytes, *, gzip: bool = False) -> Response:
        """One write request (blocking: call it in a worker thread)."""
        headers = {"Content-Type": "text/plain; charset=utf-8", "Accept": "application/json", "User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        if gzip:
            headers["Content-Encoding"] = "gzip"
        with self._lock:
            reused = self._conn is not None
            try:
                return self._request(body, headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop()
                if not reused:
                    return _failed(exc)
            except (http.client.HTTPException, OSError) as exc:
                self._drop()
                return _failed(exc)
            try:  # the server had closed the kept-alive connection: once more on a new one
                return self._request(body, headers)
            except (http.client.HTTPException, OSError) as exc:
                self._drop()
                return _failed(exc)

    def _request(self, body: bytes, headers: dict[str, str]) -> Response:
        conn = self._conn
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._tls)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._conn = conn
        conn.request("POST", self._path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read(BODY_MAX)
        if resp.will_close or not resp.isclosed():  # the server ends the connection, or a body was cut
            self._drop()
        return Response(resp.status, data.decode("utf-8", "replace"), resp.getheader("Retry-After"))

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop()


def _failed(exc: BaseException) -> Response:
    return Response(0, f"{type(exc).__name__}: {exc}"[:300])
