"""Start-up checks of `modbus` sources (run by `validate`; no client is imported here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.config.yamlpos import position
from gateway.errors import Problem
from gateway.sources.modbus.config import SERIAL_KEYS, TLS_KEYS, ModbusSourceConfig
from gateway.sources.modbus.profile import ModbusProfile
from gateway.sources.modbus.validate import profile_problems

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

# Keys every device of one link must give alike: one connection or line has one set of them.
SHARED_KEYS = ("transport", *SERIAL_KEYS, *TLS_KEYS)
TLS_FILES = ("ca_file", "cert_file", "key_file")


def check_modbus(loaded: LoadedConfig, data: Any) -> list[Problem]:
    """Profiles of modbus sources are Modbus profiles and compile; unit ids are unique per link (a TCP
    endpoint or a serial port), whose devices give the same transport, line and TLS settings; TLS files
    exist."""
    problems: list[Problem] = []
    checked: set[str] = set()
    seen: dict[tuple[str, int], str] = {}  # (link, unit id) -> source
    first: dict[str, ModbusSourceConfig] = {}  # link -> its first source

    def problem(i: int, key: str, message: str) -> None:
        line, col = position(data, ["sources", i, key])
        problems.append(Problem(str(loaded.path), line, col, message))

    for i, src in enumerate(loaded.config.sources):
        if not isinstance(src, ModbusSourceConfig):
            continue
        profile = loaded.profiles.get(src.profile)
        if not isinstance(profile, ModbusProfile):
            problem(i, "profile", f"profile {src.profile!r} is not a Modbus profile")
            continue
        if src.profile not in checked:
            checked.add(src.profile)
            problems += profile_problems(profile, loaded.profile_file(src.profile))
        for key in TLS_FILES:
            path = getattr(src, key)
            if path is not None and not loaded.resolve(path).is_file():
                problem(i, key, f"{key}: no such file: {loaded.resolve(path)}")
        if not src.enabled:
            continue
        link = src.endpoint_label  # a TCP endpoint and a serial port never share a name
        unit = (link, src.unit_id)
        if unit in seen:
            problem(i, "unit_id", f"unit id {src.unit_id} at {link} is already polled by source {seen[unit]!r}")
        seen[unit] = src.name
        other = first.setdefault(link, src)
        for name in SHARED_KEYS:
            if getattr(src, name) != getattr(other, name):
                problem(
                    i,
                    name,
                    f"{name}: {getattr(src, name)!r}, but source {other.name!r} on the same link {link} gives "
                    f"{getattr(other, name)!r}: the devices of one link share one connection or line",
                )
    return problems
