"""The source contract and the registry of source builders by `type:` name.

A source talks to one device or bus and hands on `Batch`es through `ctx.emit` (which waits when
the pipeline is full: backpressure). It owns its connection, reconnects by itself, and turns device
faults into data (quality flags, a `DeviceStatus` on the batch), never into an exception. It calls
`ctx.started()` once it is running (readiness), and runs until cancelled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.model import Batch

if TYPE_CHECKING:
    from gateway.config import LoadedConfig

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


# type name -> builder(configs of that type, loaded config) -> sources.
# A builder receives every enabled instance of its type at once, so that it can share connections
# (several Modbus unit ids behind one TCP endpoint, several racks on one CAN bus).
SourceBuilder = Callable[[Sequence[Any], "LoadedConfig"], list[Source]]
SOURCE_BUILDERS: dict[str, SourceBuilder] = {}


def register_source(type_name: str) -> Callable[[SourceBuilder], SourceBuilder]:
    def deco(fn: SourceBuilder) -> SourceBuilder:
        SOURCE_BUILDERS[type_name] = fn
        return fn

    return deco


def build_sources(loaded: LoadedConfig) -> list[Source]:
    import gateway.plugins  # noqa: F401

    by_type: dict[str, list[Any]] = {}
    for cfg in loaded.enabled_sources:
        by_type.setdefault(cfg.type, []).append(cfg)
    out: list[Source] = []
    for type_name, cfgs in by_type.items():
        builder = SOURCE_BUILDERS.get(type_name)
        if builder is None:
            raise RuntimeError(f"no source builder registered for type {type_name!r}")
        out.extend(builder(cfgs, loaded))
    return out
