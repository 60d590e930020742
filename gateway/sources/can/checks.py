"""Checks of CAN sources at `validate` and start-up: every DBC loads, every rack compiles, no two racks
on one bus decode the same frames. Problems name the profile or DBC `file:line:col`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from can.interfaces import VALID_INTERFACES

from gateway.config.library import dbc_candidates, searched
from gateway.config.yamlpos import load_yaml, position
from gateway.errors import ConfigError, Problem
from gateway.sources.can.config import CanProfile, CanSourceConfig
from gateway.sources.can.dbcload import lenient_from_env, load_dbc
from gateway.sources.can.decode import BY_SOURCE
from gateway.sources.can.plan import PlanProblem, RackPlan, compile_rack

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

log = structlog.get_logger("can.checks")


BUS_SETTINGS = (
    "bitrate",
    "fd",
    "listen_only",
    "loopback_only",
    "reconnect_initial",
    "reconnect_max",
    "batch_window",
    "batch_max_frames",
    "receive_buffer",
)


def bus_key(cfg: CanSourceConfig) -> tuple[str, str, int | None]:
    """Racks with the same key share one bus object."""
    return (cfg.interface, cfg.channel, cfg.port)


def dbc_path(loaded: LoadedConfig, name: str, profile: CanProfile) -> Path:
    """The profile's DBC file (see gateway.config.library); ConfigError at its `dbc:` naming the places
    searched when there is none."""
    path = loaded.dbc_file(name, profile.dbc)
    if path.is_file():
        return path
    found = loaded.profile_paths.get(name)
    places = searched(dbc_candidates(profile.dbc, shipped=found is not None and found.shipped,
                                     site_dbc_dir=loaded.dbc_dir))  # fmt: skip
    file = loaded.profile_file(name)
    try:
        line, col = position(load_yaml(file), ["dbc"])
    except ConfigError:
        line, col = 0, 0
    raise ConfigError(Problem(str(file), line, col, f"dbc: DBC file {profile.dbc!r} not found: searched {places}"))


def compile_instance(loaded: LoadedConfig, cfg: CanSourceConfig) -> RackPlan:
    """The compiled plan of one rack; ConfigError naming the profile or DBC place on a problem."""
    profile = loaded.profiles[cfg.profile]
    assert isinstance(profile, CanProfile)
    dbc = load_dbc(dbc_path(loaded, cfg.profile, profile), lenient=profile.lenient or lenient_from_env())
    result = compile_rack(
        profile, dbc.db, rack=cfg.rack_tag, id_offset=cfg.id_offset, source_address=cfg.source_address
    )
    if isinstance(result, list):
        raise ConfigError(_locate(loaded, cfg.profile, result))
    return result


def _locate(loaded: LoadedConfig, profile_name: str, problems: list[PlanProblem]) -> list[Problem]:
    file = loaded.profile_file(profile_name)
    try:
        data = load_yaml(file)
    except ConfigError:
        data = None
    out = []
    for p in problems:
        line, col = position(data, list(p.loc)) if data is not None else (0, 0)
        out.append(Problem(str(file), line, col, f"{'.'.join(str(x) for x in p.loc)}: {p.message}"))
    return out


def check_can(loaded: LoadedConfig, data: Any) -> list[Problem]:
    """Load every DBC the CAN sources use and compile every rack, so problems show at `validate`."""
    problems: list[Problem] = []
    done: set[tuple[str, int, int | None]] = set()
    warned: set[Path] = set()
    for i, cfg in enumerate(loaded.config.sources):
        if not isinstance(cfg, CanSourceConfig):
            continue
        if cfg.interface not in VALID_INTERFACES:
            line, col = position(data, ["sources", i, "interface"])
            known = ", ".join(sorted(VALID_INTERFACES))
            problems.append(
                Problem(
                    str(loaded.path), line, col, f"unknown CAN interface {cfg.interface!r}: expected one of {known}"
                )
            )
        profile = loaded.profiles.get(cfg.profile)
        if not isinstance(profile, CanProfile):
            line, col = position(data, ["sources", i, "profile"])
            problems.append(Problem(str(loaded.path), line, col, f"profile {cfg.profile!r} is not a CAN profile"))
            continue
        key = (cfg.profile, cfg.id_offset, cfg.source_address)
        if key in done:
            continue
        done.add(key)
        try:
            compile_instance(loaded, cfg)
        except ConfigError as exc:
            problems.extend(p for p in exc.problems if p not in problems)
            continue
        dbc = load_dbc(dbc_path(loaded, cfg.profile, profile), lenient=profile.lenient or lenient_from_env())
        if dbc.path not in warned:  # one warning per repair, however many racks use the file
            warned.add(dbc.path)
            for r in dbc.repairs:
                log.warning("DBC repaired", dbc=str(dbc.path), line=r.line, repair=str(r))
    problems.extend(_overlapping_ids(loaded, data))
    problems.extend(_bus_settings_agree(loaded, data))
    return problems


def _bus_settings_agree(loaded: LoadedConfig, data: Any) -> list[Problem]:
    """Racks on one bus share its settings: they must not disagree (the first would silently win)."""
    first: dict[tuple[str, str, int | None], CanSourceConfig] = {}
    out: list[Problem] = []
    for i, cfg in enumerate(loaded.config.sources):
        if not isinstance(cfg, CanSourceConfig) or not cfg.enabled:
            continue
        other = first.setdefault(bus_key(cfg), cfg)
        for name in BUS_SETTINGS:
            if getattr(cfg, name) != getattr(other, name):
                line, col = position(data, ["sources", i, name])
                out.append(
                    Problem(
                        str(loaded.path),
                        line,
                        col,
                        f"{name} of {cfg.name!r} differs from {other.name!r} on the same bus "
                        f"{cfg.interface}:{cfg.channel}: racks on one bus share its settings",
                    )
                )
    return out


def _overlapping_ids(loaded: LoadedConfig, data: Any) -> list[Problem]:
    """Two racks on one bus that decode the same frame id would mix their values: an error."""
    owners: dict[tuple[str, str, int | None, int], list[tuple[int | None, str]]] = {}
    out: list[Problem] = []
    for i, cfg in enumerate(loaded.config.sources):
        if not isinstance(cfg, CanSourceConfig) or not cfg.enabled:
            continue
        try:
            plan = compile_instance(loaded, cfg)
        except (ConfigError, KeyError, AssertionError):
            continue
        for key in plan.messages:
            sa = cfg.source_address if plan.table.j1939 else None
            if key & BY_SOURCE:  # a J1939 message of one source address: its PGN from that address
                key, sa = key & ~(BY_SOURCE | 0xFF), key & 0xFF
            claims = owners.setdefault((*bus_key(cfg), key), [])
            owner = next((n for s, n in claims if s is None or sa is None or s == sa), None)
            claims.append((sa, cfg.name))
            if owner is not None:
                field = "source_address" if plan.table.j1939 else "id_offset"
                line, col = position(data, ["sources", i, field])
                out.append(
                    Problem(
                        str(loaded.path),
                        line,
                        col,
                        f"source {cfg.name!r} decodes frame id 0x{key & 0x1FFFFFFF:X} on {cfg.interface}:"
                        f"{cfg.channel}, as does {owner!r}: give each rack its own {field}",
                    )
                )
                break
    return out
