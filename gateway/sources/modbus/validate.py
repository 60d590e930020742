"""Checks of Modbus profiles that need the whole profile (overlaps, address space), with their place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config.profiles import load_profile
from gateway.config.yamlpos import load_yaml, position
from gateway.errors import ConfigError, Problem
from gateway.sources.modbus.plan import compile_points
from gateway.sources.modbus.profile import ModbusProfile


def profile_problems(profile: ModbusProfile, path: Path, data: Any | None = None) -> list[Problem]:
    """Every problem of a validated profile that only shows once its points are expanded."""
    _, problems = compile_points(profile)
    if not problems:
        return []
    if data is None:
        data = load_yaml(path)
    out = []
    for p in problems:
        line, col = position(data, list(p.path))
        where = ".".join(str(x) for x in p.path)
        out.append(Problem(str(path), line, col, f"{where}: {p.message}"))
    return out


def load_modbus_profile(path: Path) -> ModbusProfile:
    """Load a Modbus profile file and check it completely; ConfigError names file:line:col."""
    import gateway.sources.modbus.source  # noqa: F401  (registers the modbus profile kind)

    profile = load_profile(path)
    if not isinstance(profile, ModbusProfile):
        raise ConfigError(Problem(str(path), 1, 1, "not a Modbus profile (expected `protocol: modbus`)"))
    problems = profile_problems(profile, path)
    if problems:
        raise ConfigError(problems)
    return profile
