"""Operations, installed into every runtime: systemd notifications and watchdog, HTTP, live status, metrics.

What it adds to a `Runtime`:
- a `LiveState` observer (the latest value of every point, device states, active alarms);
- systemd: READY=1 on ready, WATCHDOG=1 from the loop, STATUS=, RELOADING=1/READY=1 around a
  reload, STOPPING=1 on shutdown (no-ops outside systemd);
- the HTTP server (`http:` section) as the service `service:http`; a reload that changes `http:`
  moves it to the new address;
- the gauge `bms_gateway_ready`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import Gauge

from gateway import metrics
from gateway.config.base import read_secret
from gateway.errors import ConfigError
from gateway.ops.config import HttpConfig
from gateway.ops.http import App, BasicAuth
from gateway.ops.httpserver import HttpLimits, HttpServer
from gateway.ops.livestate import LiveState
from gateway.ops.reload import ReloadResult
from gateway.ops.status import runtime_problems, status_document, status_line
from gateway.ops.watchdog import SystemdNotifier
from gateway.runtime.core import Runtime

log = structlog.get_logger("ops")

RETRY_BIND = 30.0  # seconds between attempts when the HTTP port cannot be bound

build_info = Gauge("bms_gateway_build_info", "Always 1; the version as a label", ["version"], registry=metrics.REGISTRY)
start_time = Gauge("bms_gateway_start_time_seconds", "Unix time the gateway started", registry=metrics.REGISTRY)
ready_gauge = Gauge("bms_gateway_ready", "1 when every source started, the store is open and sinks connect",
                    registry=metrics.REGISTRY)  # fmt: skip


@dataclass
class Operations:
    rt: Runtime
    live: LiveState
    systemd: SystemdNotifier
    http: HttpServer | None = None
    on_http: list[Callable[[str], None]] = field(default_factory=list)  # called with the page URL once bound
    started: float = field(default_factory=time.monotonic)
    _http_changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- views ------------------------------------------------------------------------------------

    def status(self, rack: str | None = None, points: bool = True) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "version": VERSION,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "reload": self.rt.last_reload.as_dict() if self.rt.last_reload else None,
            "watchdog": {"enabled": self.systemd.interval is not None, "pings": self.systemd.pings},
        }
        doc = status_document(self.rt, self.live, rack=rack, points=points, extra=extra)
        ready_gauge.set(1 if doc["ready"] else 0)
        return doc

    def problems(self) -> list[str]:
        problems = runtime_problems(self.rt)
        ready_gauge.set(0 if problems else 1)
        return problems

    def status_line(self) -> str:
        return status_line(self.status(points=False))

    # -- lifecycle hooks ----------------------------------------------------------------------------

    def ready(self) -> None:
        ready_gauge.set(1)
        self.systemd.ready()

    def reloaded(self, result: ReloadResult) -> None:
        if result.ok:
            for name in result.removed:
                self.live.forget_device(name)
            self._http_changed.set()  # serve_http compares the address and moves when it changed
        self.systemd.reloaded(result.summary())

    def stopping(self) -> None:
        ready_gauge.set(0)
        self.systemd.stopping()

    # -- services -----------------------------------------------------------------------------------

    async def serve_http(self) -> None:
        """Serve HTTP on the configured address; move when a reload changes it; retry a busy port."""
        while True:
            cfg: HttpConfig = self.rt.cfg.http
            if not cfg.enabled:
                await self._wait_http_change(None)
                continue
            try:
                auth = self._http_auth(cfg)
            except ConfigError as exc:  # fail closed: never serve without the password that was asked for
                log.error("cannot read the HTTP password; not serving HTTP until it can be read", error=str(exc))
                await self._wait_http_change(RETRY_BIND)
                continue
            app = App(metrics.REGISTRY, self.status, self.problems, auth)
            server = HttpServer(app, cfg.host, cfg.port, HttpLimits.of(cfg))
            try:
                await server.start()
            except OSError as exc:
                log.error("cannot serve HTTP; retrying", host=cfg.host, port=cfg.port, error=exc.strerror or str(exc))
                await self._wait_http_change(RETRY_BIND)
                continue
            self.http = server
            for cb in self.on_http:
                cb(server.url)
            try:
                while self.rt.cfg.http == cfg:
                    await self._wait_http_change(None)
            finally:
                self.http = None
                await server.stop()
            log.info("http configuration changed: moving the server")

    def _http_auth(self, cfg: HttpConfig) -> BasicAuth | None:
        if not cfg.auth_configured:
            return None
        file = None if cfg.password_file is None else self.rt.loaded.resolve(cfg.password_file)
        secret = read_secret(cfg.password, file, cfg.password_credential)
        if secret is None or not secret.get_secret_value():
            raise ConfigError("the HTTP password is empty")
        return BasicAuth(cfg.username, secret.get_secret_value())

    async def _wait_http_change(self, timeout: float | None) -> None:
        self._http_changed.clear()
        with suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # unlike wait_for on 3.11, never swallows a cancellation
                await self._http_changed.wait()


OPERATIONS: weakref.WeakKeyDictionary[Runtime, Operations] = weakref.WeakKeyDictionary()


def operations(rt: Runtime) -> Operations | None:
    """The operations part of a runtime (the HTTP server, live state), if installed."""
    return OPERATIONS.get(rt)


def on_status_page(rt: Runtime, callback: Callable[[str], None]) -> None:
    """Call `callback(url)` once the status page listens (e.g. to print it)."""
    ops = OPERATIONS.get(rt)
    if ops is not None:
        ops.on_http.append(callback)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bms-gateway")
    except PackageNotFoundError:
        return "dev"


VERSION = _version()


def install(rt: Runtime) -> None:
    build_info.labels(VERSION).set(1)
    start_time.set(time.time())
    live = LiveState()
    ops = Operations(rt, live, SystemdNotifier(status=lambda: ""))
    ops.systemd.status = ops.status_line
    OPERATIONS[rt] = ops
    rt.observers.append(live)
    rt.on_ready.append(ops.ready)
    rt.on_stopping.append(ops.stopping)
    rt.on_reloading.append(ops.systemd.reloading)
    rt.on_reload.append(ops.reloaded)
    rt.on_close.append(ops.systemd.close)
    rt.services.append(("systemd", ops.systemd.run))
    rt.services.append(("http", ops.serve_http))
