"""The source contract, and building the sources of a configuration by `type:` name.

A source talks to one device or bus and hands on `Batch`es through `ctx.emit` (which waits when
the pipeline is full: backpressure). It owns its connection, reconnects by itself, and turns device
faults into data (quality flags, a `DeviceStatus` on the batch), never into an exception. It calls
`ctx.started()` once it is running (readiness), and runs until cancelled.

Which builder serves a `type:` is in the composition root (`gateway.app.SOURCES`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway import app
from gateway.model import Batch

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

Emit = Callable[[Batch], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SourceContext:
    emit: Emit
    started: Callable[[], None]
    site: str


class Source(Protocol):
    """Something that produces batches until cancelled."""

    name: str

    async def run(self, ctx: SourceContext) -> None: ...


def sources_by_type(loaded: LoadedConfig, types: Iterable[str] | None = None) -> dict[str, list[Source]]:
    """Build the sources of each type (all types, or only those named), keeping the type of each.

    A builder receives every enabled instance of its type at once, so that it can share connections
    (several Modbus unit ids behind one TCP endpoint, several racks on one CAN bus)."""
    by_type: dict[str, list[Any]] = {}
    for cfg in loaded.enabled_sources:
        if types is None or cfg.type in types:
            by_type.setdefault(cfg.type, []).append(cfg)
    return {type_name: app.source_builder(type_name)(cfgs, loaded) for type_name, cfgs in by_type.items()}


def build_sources(loaded: LoadedConfig) -> list[Source]:
    return [src for built in sources_by_type(loaded).values() for src in built]
