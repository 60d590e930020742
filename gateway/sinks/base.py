"""The sink contract (which builder serves a `type:` is in the composition root, `gateway.app.SINKS`).

A sink does I/O only: `write(rows)` delivers outbox rows and returns when the server confirmed them
(InfluxDB 204, MQTT PUBACK), or raises `SinkError(retry=...)`. Batching, retry, backoff, cursors and
counters are shared policy in `gateway.sinks.runner`, written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import SinkError
from gateway.store.outbox import Row


@dataclass(frozen=True, slots=True)
class Rejected:
    """One item the server refused for good (e.g. a point with a field-type conflict)."""

    seq: int  # the outbox row it came from
    status: int  # the server's status code
    reason: str  # the server's message
    item: str  # the item as sent (a line-protocol line, a JSON message)


class SinkAuthError(SinkError):
    """The server refuses the gateway's credentials (HTTP 401/403, MQTT not authorised).

    The data is kept; the runner logs loudly and raises a gateway alarm until writes succeed again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry=False)


class Sink(Protocol):
    name: str

    async def open(self) -> None:
        """Connect (raise SinkError when the server cannot be reached; the runner retries)."""

    async def write(self, rows: Sequence[Row]) -> Sequence[Rejected]:
        """Deliver rows in order; return only when the server confirmed every one, except the items
        it rejected for good, which are returned (the runner keeps them in the dead-letter table)."""

    async def close(self) -> None:
        """Flush and disconnect (clean stop)."""


class Resumable(Protocol):
    """A sink that keeps state about what it wrote (the InfluxDB clock guard) and can rebuild it."""

    def resume(self, rows: Iterable[Row]) -> int:
        """Take in rows it had delivered before this process started (oldest first)."""
        ...
