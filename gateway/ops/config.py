"""Configuration of the HTTP endpoint (health, metrics, status page)."""

from __future__ import annotations

from pydantic import Field

from gateway.configbase import Strict


class HttpConfig(Strict):
    """Health, readiness, Prometheus metrics and the live status page."""

    enabled: bool = Field(True, description="Serve HTTP")
    host: str = Field("127.0.0.1", description="Address to listen on (loopback by default)")
    port: int = Field(9108, ge=0, le=65535, description="TCP port (0 picks a free one)")
