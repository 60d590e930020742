"""The composition root: which code serves each `type:` name, and how a Runtime is put together.

Every plugin is named here as a "module:attr" string and imported on first use (as python-can's
`BACKENDS` and uvicorn's `Config.load` do), so a command loads only what it needs: `validate` and
`schema` never import a network client. Nothing registers itself when imported; adding a source,
sink, profile kind, check or runtime part is one line in a table below.

This module imports nothing of the gateway at module level, so any module may look a name up here
without an import cycle.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from gateway.config.settings import LoadedConfig
    from gateway.errors import Problem
    from gateway.runtime.core import Runtime
    from gateway.sinks.base import Sink
    from gateway.sources.base import Source

# `type:` of a source -> builder(configs of that type, loaded config) -> sources. A builder receives
# every enabled instance of its type at once, so that it can share connections (several Modbus unit
# ids behind one TCP endpoint, several racks on one CAN bus).
SOURCES: dict[str, str] = {
    "modbus": "gateway.sources.modbus.source:build",
    "can": "gateway.sources.can.source:build",
    "simulated": "gateway.sources.sim.source:build",
}

# `type:` of a sink -> builder(name, sink config, loaded config) -> sink.
SINKS: dict[str, str] = {
    "influxdb": "gateway.sinks.influx.sink:build",
    "mqtt": "gateway.sinks.mqtt.sink:build",
    "sparkplug": "gateway.sinks.sparkplug.sink:build",
}

# `protocol:` of a profile file -> its pydantic model.
PROFILE_KINDS: dict[str, str] = {
    "can": "gateway.sources.can.config:CanProfile",
    "modbus": "gateway.sources.modbus.profile:ModbusProfile",
}

# Checks that need the profiles resolved: check(loaded, data) -> problems. `validate` and start-up run
# every one, in this order.
CHECKS: tuple[str, ...] = (
    "gateway.alarms.ruleset:check_alarms",
    "gateway.sources.can.checks:check_can",
    "gateway.sources.modbus.checks:check_modbus",
    "gateway.sinks.transport:check_transport",
)
# A protocol's check runs only when the configuration has a source of its type: it imports the
# protocol's libraries (python-can and cantools: some 5-20 MB resident), which a site without it never needs.
CHECK_SOURCE_TYPE: dict[str, str] = {
    "gateway.sources.can.checks:check_can": "can",
    "gateway.sources.modbus.checks:check_modbus": "modbus",
}

# Parts of the daemon around the pipeline: install(runtime) adds processors, observers, services and
# hooks. In this order: alarms (a processor: its events are stored with the batch), the clocks (device
# clock offsets, a processor; the host's time sync, a service; their gateway alarms), the live
# assessment (an observer feeding the estimators, a service publishing what they measured), operations
# (HTTP, status page, systemd READY/WATCHDOG/STOPPING), the heartbeat (gateway info records).
RUNTIME_PARTS: tuple[str, ...] = (
    "gateway.alarms.service:install",
    "gateway.ops.clockwatch:install",
    "gateway.assess.service:install",
    "gateway.ops.service:install",
    "gateway.ops.heartbeat:install",
)

# What `bms-gateway demo` adds to its runtime: simulators for the demo racks, the alarm lines.
DEMO_PARTS: tuple[str, ...] = (
    "gateway.tools.modbusserve:demo_hook",
    "gateway.cli.can:demo_hook",
    "gateway.alarms.demo:show_alarms",
)

SourceBuilder = Callable[[Sequence[Any], "LoadedConfig"], "list[Source]"]
SinkBuilder = Callable[[str, Any, "LoadedConfig"], "Sink"]
Check = Callable[["LoadedConfig", Any], "list[Problem]"]
RuntimePart = Callable[["Runtime"], None]


def load(ref: str) -> Any:
    """The object a "module:attr" string names (the module is imported on first use)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _lookup(table: dict[str, str], name: str, what: str) -> Any:
    ref = table.get(name)
    if ref is None:
        raise KeyError(f"no {what} for type {name!r}: expected one of {sorted(table)}")
    return load(ref)


def source_builder(type_name: str) -> SourceBuilder:
    builder: SourceBuilder = _lookup(SOURCES, type_name, "source builder")
    return builder


def sink_builder(type_name: str) -> SinkBuilder:
    builder: SinkBuilder = _lookup(SINKS, type_name, "sink builder")
    return builder


def build_sink(name: str, cfg: Any, loaded: LoadedConfig) -> Sink:
    """The sink of one `sinks:` entry (its client is imported here, not before)."""
    return sink_builder(cfg.type)(name, cfg, loaded)


def profile_kind(protocol: str) -> type[BaseModel] | None:
    """The profile model of a `protocol:` value, or None when no protocol has that name."""
    ref = PROFILE_KINDS.get(protocol)
    return None if ref is None else load(ref)


def checks(source_types: Collection[str] | None = None) -> list[Check]:
    """The checks to run, in order; with `source_types`, a protocol's only when a source has its type."""
    return [load(ref) for ref in CHECKS if source_types is None or CHECK_SOURCE_TYPE.get(ref) in (None, *source_types)]


def install_parts(rt: Runtime, parts: Sequence[str]) -> None:
    """Wire parts into a runtime: each `install(rt)` adds its processors, observers, services, hooks."""
    for ref in parts:
        part: RuntimePart = load(ref)
        part(rt)


def build_runtime(loaded: LoadedConfig, parts: Sequence[str] | None = None) -> Runtime:
    """The daemon's runtime: its sources, sinks and store, then its parts (default `RUNTIME_PARTS`)."""
    from gateway.runtime.core import Runtime

    return Runtime(loaded, parts=parts)


def run(loaded: LoadedConfig) -> int:
    """`bms-gateway run`: the daemon until it is stopped (its exit code)."""

    async def main() -> int:
        rt = build_runtime(loaded)
        rt.settle_gc = True
        return await rt.run()

    from gateway.store.lockwait import EXIT_STORE_LOCKED, StoreLocked

    try:
        return asyncio.run(main())
    except StoreLocked:  # logged where it gave up; systemd starts the daemon again
        return EXIT_STORE_LOCKED
