"""The `modbus` source type: builder (devices grouped by endpoint), profile kind and start-up checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.checks import register_check
from gateway.errors import Problem
from gateway.modbus.config import ModbusSourceConfig
from gateway.modbus.device import DeviceRun
from gateway.modbus.poller import ModbusEndpoint, ResponseHook
from gateway.modbus.profile import ModbusProfile
from gateway.modbus.sharing import SharedPlans
from gateway.modbus.validate import profile_problems
from gateway.profiles import register_profile_kind
from gateway.sources.base import Source, register_source
from gateway.yamlpos import position

if TYPE_CHECKING:
    from gateway.config import LoadedConfig

register_profile_kind("modbus", ModbusProfile)


def endpoints(
    cfgs: Sequence[ModbusSourceConfig], profiles: dict[str, Any], on_response: ResponseHook | None = None
) -> list[ModbusEndpoint]:
    """One endpoint poller per host:port; devices keep the order of the configuration. Their cycles
    start spread over the interval: endpoint e of E puts device k of n at (k + e/E)/n of it."""
    by_endpoint: dict[tuple[str, int], list[DeviceRun]] = {}
    shared = SharedPlans()  # racks of one profile compile and plan once, and share their decoders
    for cfg in cfgs:
        by_endpoint.setdefault((cfg.host, cfg.port), []).append(DeviceRun(cfg, profiles[cfg.profile], shared))
    eps = [ModbusEndpoint(h, p, devs, on_response) for (h, p), devs in by_endpoint.items()]
    for e, ep in enumerate(eps):  # endpoints interleave their devices' start slots
        ep.phase = e / len(eps)
    return eps


@register_source("modbus")
def build(cfgs: Sequence[ModbusSourceConfig], loaded: LoadedConfig) -> list[Source]:
    return list(endpoints(cfgs, loaded.profiles))


@register_check
def check_modbus(loaded: LoadedConfig, data: Any) -> list[Problem]:
    """Profiles of modbus sources are Modbus profiles and compile; unit ids are unique per endpoint."""
    problems: list[Problem] = []
    checked: set[str] = set()
    seen: dict[tuple[str, int, int], str] = {}
    for i, src in enumerate(loaded.config.sources):
        if not isinstance(src, ModbusSourceConfig):
            continue
        profile = loaded.profiles.get(src.profile)
        if not isinstance(profile, ModbusProfile):
            line, col = position(data, ["sources", i, "profile"])
            problems.append(Problem(str(loaded.path), line, col, f"profile {src.profile!r} is not a Modbus profile"))
            continue
        if src.profile not in checked:
            checked.add(src.profile)
            problems += profile_problems(profile, loaded.profiles_dir / f"{src.profile}.yaml")
        key = (src.host, src.port, src.unit_id)
        if not src.enabled:
            continue
        if key in seen:
            line, col = position(data, ["sources", i, "unit_id"])
            problems.append(
                Problem(
                    str(loaded.path),
                    line,
                    col,
                    f"unit id {src.unit_id} at {src.host}:{src.port} is already polled by source {seen[key]!r}",
                )
            )
        seen[key] = src.name
    return problems
