"""The sink contract and the registry of sink builders by `type:` name.

A sink does I/O only: `write(rows)` delivers outbox rows and returns when the server confirmed them
(InfluxDB 204, MQTT PUBACK), or raises `SinkError(retry=...)`. Batching, retry, backoff, cursors and
counters are shared policy in `gateway.sinks.runner`, written once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gateway.outbox import Row

if TYPE_CHECKING:
    from gateway.config import LoadedConfig


class Sink(Protocol):
    name: str

    async def open(self) -> None:
        """Connect (raise SinkError when the server cannot be reached; the runner retries)."""

    async def write(self, rows: Sequence[Row]) -> None:
        """Deliver rows in order; return only when the server confirmed every one."""

    async def close(self) -> None:
        """Flush and disconnect (clean stop)."""


SinkBuilder = Callable[[str, Any, "LoadedConfig"], Sink]
SINK_BUILDERS: dict[str, SinkBuilder] = {}


def register_sink(type_name: str) -> Callable[[SinkBuilder], SinkBuilder]:
    def deco(fn: SinkBuilder) -> SinkBuilder:
        SINK_BUILDERS[type_name] = fn
        return fn

    return deco
