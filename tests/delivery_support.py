"""Helpers for the delivery tests: batches, a runner in a task, a small InfluxDB-like HTTP server, certs."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import metrics
from gateway.model import Batch, Sample
from gateway.sinks.runner import SinkRunner
from tests.servers import VictoriaMetrics, free_port
from tests.support.waits import await_for


def sample_batch(rack: str, ts: int, n: int, base: float = 0.0) -> Batch:
    """`n` rack-level samples raw.v0..raw.v<n-1> of one rack at `ts`, values base + k."""
    return Batch.of_samples(
        rack, [Sample(ts, f"raw.v{k}", base + k, "", "good", rack) for k in range(n)], device=rack, created=ts
    )


@contextlib.asynccontextmanager
async def running(runner: SinkRunner) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.run(), name=f"sink:{runner.name}")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.sink.close()


def metric(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def vm_series(vm: VictoriaMetrics, match: str = '{__name__=~"rack_.*"}') -> dict[str, list[tuple[int, float]]]:
    """metric name → [(ts ms, value)] in time order, for one rack per test."""
    out: dict[str, list[tuple[int, float]]] = {}
    for s in vm.export(match):
        m = s["metric"]
        assert isinstance(m, dict)
        ts, vals = s["timestamps"], s["values"]
        assert isinstance(ts, list) and isinstance(vals, list)
        out.setdefault(str(m["__name__"]), []).extend(zip(ts, vals, strict=True))
    for v in out.values():
        v.sort()
    return out


async def vm_wait_points(vm: VictoriaMetrics, match: str, expected: int, timeout: float = 60.0) -> int:
    """Poll VictoriaMetrics until `expected` points match (it makes new series searchable with a delay);
    the count it saw last (the caller asserts on it)."""
    seen = 0

    async def count() -> bool:
        nonlocal seen
        seen = sum(len(s["values"]) for s in await asyncio.to_thread(vm.export, match))  # type: ignore[arg-type,misc]
        return seen >= expected

    with contextlib.suppress(AssertionError):
        await await_for(count, timeout, f"{expected} points matching {match}", step=0.3)
    return seen


# -- an HTTP server that answers like InfluxDB -------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class InfluxLikeServer:
    """A real HTTP/1.1 server on loopback implementing POST /api/v2/write the way InfluxDB documents.

    `script` answers requests in turn (then 204 for the rest); lines containing a string in `conflicts`
    make a request fail with 400 and InfluxDB's field-type-conflict body; `max_lines` larger bodies get 413.
    Accepted lines are kept in `stored`, every request's status in `log` (and when it came in `times`)."""

    script: list[Answer] = field(default_factory=list)
    conflicts: tuple[str, ...] = ()
    max_lines: int = 1_000_000
    token: str | None = None
    port: int = field(default_factory=free_port)
    stored: list[str] = field(default_factory=list)
    log: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # monotonic time each request in `log` was answered
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    server: asyncio.Server | None = None
    ssl: Any = None  # an ssl.SSLContext: serve HTTPS
    _conns: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> InfluxLikeServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.ssl)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                self.headers_seen.append(headers)
                ans = self._answer(line.decode(), headers, body.decode())
                self.log.append(ans.status)
                self.times.append(time.monotonic())
                payload = ans.body.encode()
                extra = "".join(f"{k}: {v}\r\n" for k, v in ans.headers.items())
                ctype = "Content-Type: application/json\r\n" if payload else ""
                writer.write(
                    f"HTTP/1.1 {ans.status} X\r\n{ctype}{extra}Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, ssl.SSLError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    def _answer(self, request_line: str, headers: dict[str, str], body: str) -> Answer:
        if not request_line.startswith("POST /api/v2/write"):
            return Answer(404, '{"code":"not found","message":"path not found"}')
        if self.token is not None and headers.get("authorization") != f"Token {self.token}":
            return Answer(401, '{"code":"unauthorized","message":"unauthorized access"}')
        if self.script:
            return self.script.pop(0)
        lines = [ln for ln in body.split("\n") if ln]
        if len(lines) > self.max_lines:
            return Answer(413, json.dumps({"code": "request too large", "message": "too many points"}))
        bad = [ln for ln in lines if any(c in ln for c in self.conflicts)]
        if bad:
            # InfluxDB 2.x writes the good points of the request and reports the rest.
            self.stored += [ln for ln in lines if ln not in bad]
            msg = (
                "failure writing points to database: partial write: field type conflict: input field "
                '"soc" on measurement "rack" is type string, already exists as type float dropped=' + str(len(bad))
            )
            return Answer(400, json.dumps({"code": "invalid", "message": msg}))
        self.stored += lines
        return Answer(204)


# -- certificates for TLS tests (the cryptography package) -------------------------------------------


def make_certs(directory: Path, host: str = "127.0.0.1") -> dict[str, Path]:
    """A CA, a server certificate for `host` (IP SAN and localhost) and a client certificate, signed by the CA."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def save(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        (directory / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test-ca"))
        .issuer_name(name("test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    save("ca", ca_key, ca)
    for who, san, usage in (
        (
            "server",
            [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")],
            ExtendedKeyUsageOID.SERVER_AUTH,
        ),
        ("client", [x509.DNSName("gateway")], ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(who))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        save(who, key, cert)
    return {
        f"{stem}.{ext}": directory / f"{stem}.{ext}" for stem in ("ca", "server", "client") for ext in ("key", "crt")
    }


# -- an MQTT subscriber with a persistent session ---------------------------------------------------


@dataclass
class Collector:
    """Subscribes (QoS 1, persistent session) and keeps every message; reconnects across broker restarts."""

    port: int
    topic: str = "#"
    client_id: str = "test-collector"
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    connects: int = 0
    _task: asyncio.Task[None] | None = None
    _subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._subscribed.wait(), 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        import aiomqtt

        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.client_id, clean_session=False, timeout=5
                ) as client:
                    self.connects += 1
                    await client.subscribe(self.topic, qos=1)
                    self._subscribed.set()
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        self.messages.append((str(m.topic), payload, bool(m.retain)))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def payloads(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in self.messages if t == topic]

    def telemetry_seqs(self, topic: str) -> list[int]:
        return [int(json.loads(p)["seq"]) for p in self.payloads(topic)]
