"""InfluxDB sink: line protocol through influxdb-client's v2 write API (InfluxDB 2.x, 3.x, the 1.8+
compatibility endpoint, VictoriaMetrics).

Each write is one synchronous HTTP request run in a worker thread, so the status code of every
request is known: 204 acknowledges, anything else goes through `gateway.sinks.delivery` (which splits
the lines only then). The lines are rendered on the event loop from the batches' columns, a few
thousand samples at a time (`gateway.sinks.influx.lineproto`, with its plans per key table). The body
is built and gzip-compressed (level 1) in the worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
import structlog
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService
from urllib3.exceptions import HTTPError

from gateway.config.base import read_secret
from gateway.errors import ConfigError, SinkError
from gateway.model import BatchKind
from gateway.sinks.base import Rejected
from gateway.sinks.clock import ClockGuard, Pending, split_line
from gateway.sinks.columns import RENDER_STEP_SAMPLES, every
from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.delivery import Item, Response, deliver, server_reason
from gateway.sinks.influx.lineproto import LineRenderer, Lines, encode_device_status
from gateway.store.outbox import Row

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

log = structlog.get_logger("sink.influxdb")

try:  # ISA-L's deflate: the same gzip at a fifth of zlib's CPU time (wheels for x86-64 and aarch64)
    from isal import isal_zlib as deflate
except ImportError:  # another machine: zlib, the same stream format and API
    import zlib as deflate  # type: ignore[no-redef]

GZIP_LEVEL = 1  # about 15 times smaller bodies at a twentieth of the CPU time of zlib's level 9


def gzip_body(data: bytes) -> bytes:
    """A gzip member of the body (both libraries release the GIL while they compress)."""
    return deflate.compress(data, GZIP_LEVEL, wbits=31)


class Chunk(NamedTuple):
    """Lines of one outbox row, each ending in a newline: what a write sends, joined."""

    seq: int
    text: str


def render_row(row: Row, renderer: LineRenderer, guard: ClockGuard | None, pending: Pending | None) -> list[Chunk]:
    """The lines of one row as chunks; through the clock guard when there is one (`pending` is its
    overlay for this write)."""
    seq, b = row.seq, row.batch
    out: list[Chunk] = []
    if b.kind == BatchKind.SAMPLES:
        text = _guarded_text(renderer.sample_lines(b), guard, pending)
        if text:
            out.append(Chunk(seq, text))
        lines = encode_device_status(b, renderer.site, renderer.precision)
    else:
        lines = renderer.lines(b)
    if lines:
        if guard is not None and pending is not None:
            lines = guard.lines(pending, [split_line(line) for line in lines])
        out.append(Chunk(seq, "\n".join(lines) + "\n"))
    return out


def _guarded_text(lines: Lines, guard: ClockGuard | None, pending: Pending | None) -> str:
    """The lines' text at the times the guard admits them (see `ClockGuard.admit_each`), or (when a line
    is not after its series' newest, or a tag holds a backslash) the lines as the guard writes them one
    by one."""
    if guard is None or pending is None or not len(lines.keys):
        return lines.text
    times = None
    if lines.plain:
        times = guard.admit_each(pending, lines.keys, lines.times, _slots(lines, guard, pending), lines.distinct)
    if times is None:
        points = [split_line(line) for line in lines.text[:-1].split("\n")]
        return "\n".join(guard.lines(pending, points)) + "\n"
    return lines.text_at(times)


def _slots(lines: Lines, guard: ClockGuard, pending: Pending) -> npt.NDArray[np.intp]:
    """The guard's slot of each line's series, from the slots of the plan's key columns."""
    codes = lines.codes
    code = int(codes[0])
    if every(codes == code):
        return guard.column_slots(pending, lines.columns[code])[lines.rows]
    out = np.empty(len(codes), dtype=np.intp)
    for c in np.unique(codes).tolist():
        at = codes == c
        out[at] = guard.column_slots(pending, lines.columns[c])[lines.rows[at]]
    return out


def render_chunks(
    rows: Sequence[Row], renderer: LineRenderer, guard: ClockGuard | None
) -> tuple[list[Chunk], Pending | None]:
    """Every row's chunks, and the guard's changes to commit once the server confirmed them."""
    pending = guard.begin() if guard is not None else None
    return [c for row in rows for c in render_row(row, renderer, guard, pending)], pending


def chunk_items(chunks: Sequence[Chunk]) -> list[Item]:
    """(seq, line) for every line of the chunks (what `deliver` splits when the server refuses some)."""
    return [Item(seq, line) for seq, text in chunks for line in text[:-1].split("\n")]


def chunks_body(chunks: Sequence[Chunk]) -> str:
    """The request body: the lines joined by newlines (no newline at the end)."""
    return "".join([text for _seq, text in chunks])[:-1]


class InfluxSink:
    def __init__(self, name: str, cfg: InfluxSinkConfig, site: str, base_dir: Any = None) -> None:
        self.name = name
        self.cfg = cfg
        self.site = site
        self._client: Any = None
        self._service: Any = None
        self.guard = ClockGuard(name) if cfg.clock_guard else None
        self.renderer = LineRenderer(site, cfg.precision)
        ca = cfg.ca_file
        self._base_dir = base_dir
        if ca is not None and base_dir is not None and not ca.is_absolute():
            ca = base_dir / ca
        self._ca = ca

    def _relative(self, p: Path | None) -> Path | None:
        """A path of the configuration, relative to the configuration file's directory."""
        if p is None or p.is_absolute() or self._base_dir is None:
            return p
        return Path(self._base_dir) / p

    def __repr__(self) -> str:
        return f"InfluxSink(name={self.name!r}, url={self.cfg.url!r}, bucket={self.cfg.bucket!r})"

    async def open(self) -> None:
        if self._client is not None:
            return
        # Bodies are gzip-compressed here (a fast level), not by the client (level 9: most of the
        # sink's CPU time), so the client itself sends what it is given.
        self._client = self._new_client(gzip=False)
        self._service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]  # untyped library

    def _new_client(self, gzip: bool) -> InfluxDBClient:
        try:
            token = read_secret(self.cfg.token, self._relative(self.cfg.token_file), self.cfg.token_credential)
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
        deliver([Item(0, "")], lambda items: resp)  # raises the SinkError the status means
        return f"{self.cfg.url} answered {resp.status}: {server_reason(resp.body)}"

    def resume(self, rows: Iterable[Row]) -> int:
        """Seed the clock guard with rows this sink had delivered before a restart (oldest first), so
        that a point in the same time unit as one written before the restart moves one unit on instead
        of overwriting it, and a clock that stepped back across the restart is tagged. Returns the
        number of series the guard now knows."""
        guard = self.guard
        if guard is None:
            return 0
        if guard.written():  # already knows this process's writes (a restarted runner)
            return guard.written()
        pending = guard.begin()
        for row in rows:
            render_row(row, self.renderer, guard, pending)
        guard.commit(pending)
        return guard.written()

    async def write(self, rows: Sequence[Row]) -> list[Rejected]:
        guard = self.guard
        pending = guard.begin() if guard is not None else None
        chunks: list[Chunk] = []
        since_yield = 0
        for row in rows:
            chunks += render_row(row, self.renderer, guard, pending)
            since_yield += len(row.batch)
            if since_yield >= RENDER_STEP_SAMPLES:  # let the event loop run between parts of a big write
                since_yield = 0
                await asyncio.sleep(0)
        if not chunks:
            return []
        rejected = await asyncio.to_thread(self._send, chunks)
        if guard is not None and pending is not None:
            guard.commit(pending)
        return rejected

    def _send(self, chunks: Sequence[Chunk]) -> list[Rejected]:
        """One request for all the chunks (in a worker thread); split by `deliver` only when refused."""
        first = self._post_body(chunks_body(chunks))
        if 200 <= first.status < 300:
            return []
        return deliver(chunk_items(chunks), self._post, first)

    def _post(self, items: Sequence[Item]) -> Response:
        """One write request (in a worker thread); every outcome becomes a Response."""
        return self._post_body("\n".join(line for _seq, line in items))

    def _post_body(self, body: str) -> Response:
        data = body.encode()
        kwargs: dict[str, Any] = {"precision": self.cfg.precision, "content_type": "text/plain; charset=utf-8"}
        if self.cfg.gzip:
            data = gzip_body(data)
            kwargs["content_encoding"] = "gzip"
        service, org, bucket = self._service, self.cfg.org, self.cfg.bucket
        if service is None:
            return Response(0, "not connected")
        return self._request(lambda: service.post_write(org=org, bucket=bucket, body=data, **kwargs))

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
        client, self._client, self._service = self._client, None, None
        if client is not None:
            await asyncio.to_thread(client.close)


def build(name: str, cfg: InfluxSinkConfig, loaded: LoadedConfig) -> InfluxSink:
    return InfluxSink(name, cfg, loaded.config.site.name, loaded.base_dir)
