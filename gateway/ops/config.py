"""Configuration of the HTTP endpoint (health, metrics, status page)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from gateway.config.base import Strict


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HttpConfig(Strict):
    """Health, readiness, Prometheus metrics and the live status page."""

    enabled: bool = Field(True, description="Serve HTTP")
    host: str = Field("127.0.0.1", description="Address to listen on (loopback by default)")
    port: int = Field(9108, ge=0, le=65535, description="TCP port (0 picks a free one)")
    username: str = Field("bms", min_length=1, description="User name of HTTP Basic authentication")
    password: SecretStr | None = Field(
        None, description="Password of HTTP Basic authentication inline (prefer password_file)"
    )
    password_file: Path | None = Field(None, description="File holding the password; setting one turns on auth")
    password_credential: str | None = Field(None, description="systemd credential name holding the password")
    allow_unauthenticated: bool = Field(
        False, description="Serve a non-loopback address without a password (only behind a trusted network)"
    )
    max_connections: int = Field(
        64, ge=1, le=10_000, description="Open connections at most; a new one closes the oldest still sending a request"
    )
    header_timeout: float = Field(5.0, gt=0, le=300, description="Seconds a client has to send its whole request head")
    read_timeout: float = Field(
        2.0, gt=0, le=300, description="Seconds of silence while a request head is sent before the connection is closed"
    )
    write_timeout: float = Field(10.0, gt=0, le=300, description="Seconds a client has to take its whole answer")

    @property
    def auth_configured(self) -> bool:
        return self.password is not None or self.password_file is not None or bool(self.password_credential)

    @model_validator(mode="after")
    def _no_open_port(self) -> HttpConfig:
        if self.enabled and not is_loopback(self.host) and not self.auth_configured and not self.allow_unauthenticated:
            raise ValueError(
                f"http.host {self.host!r} is reachable from other machines: set http.password_file (or "
                "http.password_credential) for HTTP Basic authentication, or http.allow_unauthenticated: true"
            )
        return self
