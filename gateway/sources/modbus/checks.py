"""Start-up checks of `modbus` sources (run by `validate`; no client is imported here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.config.yamlpos import position
from gateway.errors import Problem
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.profile import ModbusProfile
from gateway.sources.modbus.validate import profile_problems

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig


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
