"""Credentials only over a transport that protects them: a check of the sinks at `validate` and start-up.

A password sent to an MQTT broker without TLS (`tls: false`), or an InfluxDB token (or a
`user:password@` in the URL) over `http://`, can be read by anyone on the path. Such a sink is a
configuration error naming the key, unless its host is loopback (`localhost`, `127.0.0.0/8`, `::1`:
the credential never leaves the machine) or the sink sets `allow_insecure_transport: true` (a site
that accepts the risk, e.g. a broker on an isolated cable).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gateway.config.yamlpos import position
from gateway.errors import Problem
from gateway.sinks.config import InfluxSinkConfig, MqttConnection

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True, slots=True)
class Exposure:
    """A credential a sink would send unprotected: the key that gives it, and what is wrong."""

    key: str
    message: str


def is_loopback(host: str) -> bool:
    """True for a name or address of this machine's loopback interface."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _given(cfg: Any, secret: str) -> str | None:
    """The key that gives the secret (inline, file or credential), or None."""
    for key in (secret, f"{secret}_file", f"{secret}_credential"):
        if getattr(cfg, key, None):
            return key
    return None


def exposures(cfg: Any) -> list[Exposure]:
    """The credentials this sink configuration would send without TLS to a host that is not loopback
    (nothing for an entry with errors of its own: it is no sink type)."""
    if not isinstance(cfg, MqttConnection | InfluxSinkConfig) or cfg.allow_insecure_transport:
        return []
    found: list[tuple[str, str]] = []  # (key, what it sends)
    host = fix = ""
    if isinstance(cfg, MqttConnection):  # MQTT and Sparkplug
        host, fix = cfg.host, "use TLS"
        key = _given(cfg, "password")
        if not cfg.tls and key is not None:
            found.append((key, "a password over plain MQTT (tls: false)"))
    else:
        url = urlsplit(cfg.url)
        host, fix = url.hostname or "", "use https://"
        key = _given(cfg, "token")
        if url.scheme.lower() == "http":
            if key is not None:
                found.append((key, "a token over http://"))
            if url.password is not None:
                found.append(("url", "a password in an http:// URL"))
    if not found or is_loopback(host):
        return []
    accept = "or set allow_insecure_transport: true on this sink to accept the risk"
    return [Exposure(k, f"{what} to {host} can be read on the way: {fix}, {accept}") for k, what in found]


def check_transport(loaded: LoadedConfig, data: Any) -> list[Problem]:
    """Every sink that would send a credential unprotected, at the key that gives it (a disabled one too:
    the alarm commands may use its broker and credentials)."""
    out: list[Problem] = []
    for name, cfg in loaded.config.sinks.items():
        for e in exposures(cfg):
            line, col = position(data, ["sinks", name, e.key])
            out.append(Problem(str(loaded.path), line, col, f"sinks.{name}.{e.key}: {e.message}"))
    return out
