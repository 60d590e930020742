"""The `modbus` source type: the builder (devices grouped by link: endpoint or serial port)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.sources.base import Source
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.device import DeviceRun
from gateway.sources.modbus.poller import ModbusEndpoint, ResponseHook
from gateway.sources.modbus.sharing import SharedPlans

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig


def endpoints(
    cfgs: Sequence[ModbusSourceConfig],
    profiles: dict[str, Any],
    on_response: ResponseHook | None = None,
    base_dir: Path | None = None,
) -> list[ModbusEndpoint]:
    """One endpoint poller per link (host:port, or serial port: `cfg.bus`); devices keep the order of
    the configuration. Their cycles start spread over the interval: endpoint e of E puts device k of n
    at (k + e/E)/n of it."""
    by_endpoint: dict[tuple[str, str, int], list[DeviceRun]] = {}
    shared = SharedPlans()  # racks of one profile compile and plan once, and share their decoders
    for cfg in cfgs:
        by_endpoint.setdefault(cfg.bus, []).append(DeviceRun(cfg, profiles[cfg.profile], shared))
    eps = [ModbusEndpoint(h, p, devs, on_response, base_dir) for (_, h, p), devs in by_endpoint.items()]
    for e, ep in enumerate(eps):  # endpoints interleave their devices' start slots
        ep.phase = e / len(eps)
    return eps


def build(cfgs: Sequence[ModbusSourceConfig], loaded: LoadedConfig) -> list[Source]:
    return list(endpoints(cfgs, loaded.profiles, base_dir=loaded.base_dir))
