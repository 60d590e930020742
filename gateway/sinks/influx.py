"""InfluxDB sink: line protocol through influxdb-client's v2 write API (InfluxDB 2.x, 3.x, the 1.8+
compatibility endpoint, VictoriaMetrics).

Each write is one synchronous HTTP request run in a worker thread, so the status code of every
request is known: 204 acknowledges, anything else goes through `gateway.sinks.delivery`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService
from urllib3.exceptions import HTTPError

from gateway.configbase import read_secret
from gateway.errors import ConfigError, SinkError
from gateway.lineproto import encode_batch, encode_device_status, precision_divisor, sample_groups
from gateway.model import BatchKind
from gateway.outbox import Row
from gateway.sinks.base import Rejected, register_sink
from gateway.sinks.clock import ClockGuard, Part, split_line
from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.delivery import Item, Response, deliver, server_reason

if TYPE_CHECKING:
    from gateway.config import LoadedConfig

log = structlog.get_logger("sink.influxdb")


def render(rows: Sequence[Row], site: str, precision: str) -> list[Item]:
    """(seq, line) for every point of the rows, in order."""
    return [(row.seq, line) for row in rows for line in encode_batch(row.batch, site, precision)]


def render_parts(rows: Sequence[Row], site: str, precision: str) -> list[Part]:
    """`render` already split for the clock guard: sample lines are not parsed again."""
    div = precision_divisor(precision)
    out: list[Part] = []
    for row in rows:
        seq, b = row.seq, row.batch
        if b.kind == BatchKind.SAMPLES:
            for tags, plain, ts, fields in sample_groups(b, site):
                if plain:  # the first unescaped space is the one after the tags
                    out.append((seq, tags, ",".join(fields), int(ts) // div, None))
                else:
                    line = f"{tags} {','.join(fields)} {int(ts) // div}"
                    out.append((seq, *split_line(line), line))
            lines = encode_device_status(b, site, precision)
        else:
            lines = encode_batch(b, site, precision)
        out += [(seq, *split_line(line), line) for line in lines]
    return out


class InfluxSink:
    def __init__(self, name: str, cfg: InfluxSinkConfig, site: str, base_dir: Any = None) -> None:
        self.name = name
        self.cfg = cfg
        self.site = site
        self._client: Any = None
        self._write_api: Any = None
        self.guard = ClockGuard(name) if cfg.clock_guard else None
        ca = cfg.ca_file
        if ca is not None and base_dir is not None and not ca.is_absolute():
            ca = base_dir / ca
        self._ca = ca

    def __repr__(self) -> str:
        return f"InfluxSink(name={self.name!r}, url={self.cfg.url!r}, bucket={self.cfg.bucket!r})"

    async def open(self) -> None:
        if self._client is not None:
            return
        self._client = self._new_client(self.cfg.gzip)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def _new_client(self, gzip: bool) -> InfluxDBClient:
        try:
            token = read_secret(self.cfg.token, self.cfg.token_file, self.cfg.token_credential)
        except ConfigError as exc:  # a token file missing at run time: data kept, retried slowly
            raise SinkError(str(exc), retry=False) from None
        kwargs: dict[str, Any] = {"verify_ssl": self.cfg.verify_tls, "retries": False}
        if self._ca is not None:
            kwargs["ssl_ca_cert"] = str(self._ca)
        if self.cfg.org:
            kwargs["org"] = self.cfg.org
        return InfluxDBClient(
            url=self.cfg.url,
            token=token.get_secret_value() if token is not None else "",
            timeout=int(self.cfg.timeout * 1000),
            enable_gzip=gzip,
            **kwargs,
        )

    async def probe(self) -> str:
        """An empty write: checks the address, TLS, the token and the bucket without storing anything."""
        client = self._new_client(gzip=False)  # an empty body cannot be gzip-encoded
        service = WriteService(client.api_client)  # type: ignore[no-untyped-call]  # untyped library
        org, bucket, precision = self.cfg.org, self.cfg.bucket, self.cfg.precision

        def empty_write() -> object:
            return service.post_write(org=org, bucket=bucket, body="", precision=precision)  # type: ignore[no-untyped-call]

        try:
            resp = await asyncio.to_thread(self._request, empty_write)
        finally:
            client.close()  # type: ignore[no-untyped-call]
        if resp.status == 204:
            return f"{self.cfg.url} accepted a write to bucket {self.cfg.bucket!r}"
        deliver([(0, "")], lambda items: resp)  # raises the SinkError the status means
        return f"{self.cfg.url} answered {resp.status}: {server_reason(resp.body)}"

    async def write(self, rows: Sequence[Row]) -> list[Rejected]:
        if self.guard is None:
            items = render(rows, self.site, self.cfg.precision)
            if not items:
                return []
            return await asyncio.to_thread(deliver, items, self._post)
        parts = render_parts(rows, self.site, self.cfg.precision)
        if not parts:
            return []
        items, state = self.guard.apply_parts(parts)
        rejected = await asyncio.to_thread(deliver, items, self._post)
        self.guard.commit(state)
        return rejected

    def _post(self, items: Sequence[Item]) -> Response:
        """One write request (in a worker thread); every outcome becomes a Response."""
        body = "\n".join(line for _seq, line in items)
        return self._request(
            lambda: self._write_api.write(
                bucket=self.cfg.bucket, org=self.cfg.org, record=body, write_precision=self.cfg.precision
            )
        )

    def _request(self, call: Callable[[], object]) -> Response:
        try:
            call()
        except ApiException as exc:
            headers: Any = exc.headers or {}
            data = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or "")
            return Response(int(exc.status or 0), data, headers.get("Retry-After"))
        except (HTTPError, OSError) as exc:
            return Response(0, f"{type(exc).__name__}: {exc}"[:300])
        return Response(204)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)


@register_sink("influxdb")
def build(name: str, cfg: InfluxSinkConfig, loaded: LoadedConfig) -> InfluxSink:
    return InfluxSink(name, cfg, loaded.config.site.name, loaded.base_dir)
