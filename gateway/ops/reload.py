"""Configuration reload (SIGHUP, `systemctl reload`): what changed, and therefore what must restart.

`plan_reload(old, new)` compares two validated configurations and says which sources and sinks
restart; everything else keeps running, so their streams have no gap. A source restarts when its
entry changed, its profile or a file its profile refers to (a CAN profile's DBC file) changed, or
the site name changed (its tag is on every sample); a
source that a builder shares between several entries (one under its own name) restarts when any
entry of its type changed. The store and the runtime section cannot change under a running process:
the running values stay, and the result says a restart is needed; so does the alarm engine's
section (its rules and state are built once at start). The runtime applies the plan.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from gateway import metrics
from gateway.config.settings import GatewayConfig, LoadedConfig, load_config

RESTART_ONLY = ("store", "runtime", "alarms", "assess")  # sections a reload cannot apply (built once at start)
APPLIED_BY_HOOKS = ("http", "logging", "clock")  # applied in place by the runtime and its extensions

config_reloads = Counter(
    "bms_gateway_config_reloads", "Configuration reloads by result (ok, invalid)", ["result"], registry=metrics.REGISTRY
)
config_reload_ok = Gauge(
    "bms_gateway_config_last_reload_ok",
    "1 when the last reload applied the file (0: it was rejected)",
    registry=metrics.REGISTRY,
)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    stop_sources: frozenset[str] = frozenset()  # entry names removed or changed
    start_sources: frozenset[str] = frozenset()  # entry names added or changed
    source_types: frozenset[str] = frozenset()  # types with any change (their builders run again)
    stop_sinks: frozenset[str] = frozenset()
    start_sinks: frozenset[str] = frozenset()
    needs_restart: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()  # other changed sections (http, logging, alarms)

    @property
    def empty(self) -> bool:
        return not (self.stop_sources or self.start_sources or self.stop_sinks or self.start_sinks or self.sections)

    def describe(self) -> list[str]:
        out: list[str] = []
        for name in sorted(self.start_sources - self.stop_sources):
            out.append(f"source {name} added")
        for name in sorted(self.stop_sources & self.start_sources):
            out.append(f"source {name} restarted")
        for name in sorted(self.stop_sources - self.start_sources):
            out.append(f"source {name} removed")
        for name in sorted(self.start_sinks - self.stop_sinks):
            out.append(f"sink {name} added")
        for name in sorted(self.stop_sinks & self.start_sinks):
            out.append(f"sink {name} restarted")
        for name in sorted(self.stop_sinks - self.start_sinks):
            out.append(f"sink {name} removed")
        out += [f"{s} updated" for s in self.sections]
        out += [f"{s} changed: needs a restart (running values kept)" for s in self.needs_restart]
        return out


def _enabled_sources(cfg: GatewayConfig) -> dict[str, Any]:
    return {s.name: s for s in cfg.sources if s.enabled}


def _enabled_sinks(cfg: GatewayConfig) -> dict[str, Any]:
    return {n: s for n, s in cfg.sinks.items() if s.enabled}


def _diff(old: dict[str, Any], new: dict[str, Any], changed: Iterable[str] = ()) -> tuple[set[str], set[str]]:
    """(stop, start) names between two {name: config} maps; `changed` forces names to restart."""
    forced = set(changed)
    stop = {n for n in old if n not in new or old[n] != new[n] or n in forced}
    start = {n for n in new if n not in old or old[n] != new[n] or n in forced}
    return stop, start


def plan_reload(old: LoadedConfig, new: LoadedConfig) -> ReloadPlan:
    oc, nc = old.config, new.config
    old_src, new_src = _enabled_sources(oc), _enabled_sources(nc)
    forced: set[str] = set()
    if oc.site != nc.site:
        forced = set(old_src) | set(new_src)
    for name, cfg in new_src.items():
        profile = getattr(cfg, "profile", None)
        if profile is not None and (
            old.profiles.get(profile) != new.profiles.get(profile)
            or old.file_digests.get(profile) != new.file_digests.get(profile)
        ):
            forced.add(name)  # its profile, or a file the profile refers to (a DBC file), changed
    stop_src, start_src = _diff(old_src, new_src, forced)
    types = {old_src[n].type for n in stop_src if n in old_src} | {new_src[n].type for n in start_src}
    stop_sink, start_sink = _diff(_enabled_sinks(oc), _enabled_sinks(nc))
    return ReloadPlan(
        stop_sources=frozenset(stop_src),
        start_sources=frozenset(start_src),
        source_types=frozenset(types),
        stop_sinks=frozenset(stop_sink),
        start_sinks=frozenset(start_sink),
        needs_restart=tuple(s for s in RESTART_ONLY if getattr(oc, s) != getattr(nc, s)),
        sections=tuple(s for s in APPLIED_BY_HOOKS if getattr(oc, s) != getattr(nc, s)),
    )


def effective_config(old: LoadedConfig, new: LoadedConfig) -> LoadedConfig:
    """The new configuration with the sections a reload cannot apply kept at their running values."""
    keep = {s: getattr(old.config, s) for s in RESTART_ONLY}
    return LoadedConfig(
        new.config.model_copy(update=keep), new.path, new.profiles, new.file_digests, profile_paths=new.profile_paths
    )


def source_changes(
    plan: ReloadPlan,
    old_names: set[str],
    new_names: set[str],
    running: dict[str, str],
    built: dict[str, list[str]],
) -> tuple[set[str], set[str]]:
    """Which running sources stop and which built ones start.

    `running`: source name → type, of the running sources; `built`: type → names the builders made
    from the new configuration for the changed types; `old_names` / `new_names`: the entry names.
    A source named after an entry follows that entry; any other (shared) source of a changed type restarts.
    """
    stop = {
        n
        for n, t in running.items()
        if t in plan.source_types and (n in plan.stop_sources or n not in old_names or n not in new_names)
    }
    start = {n for names in built.values() for n in names if n in plan.start_sources or n not in new_names}
    return stop, start


@dataclass(slots=True)
class ReloadResult:
    ok: bool
    at: int = field(default_factory=time.time_ns)
    problems: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    loaded: LoadedConfig | None = None
    removed: list[str] = field(default_factory=list)  # sources stopped and not started again

    def summary(self) -> str:
        if not self.ok:
            return f"reload rejected: {self.problems[0] if self.problems else 'error'}"
        return "reloaded: " + ("; ".join(self.changes) if self.changes else "no change")

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "at": self.at, "problems": self.problems, "changes": self.changes}


RELOAD_LOAD_TIMEOUT = 60.0  # seconds a reload may take to read and check the files


LoadResult = LoadedConfig | BaseException


def run_in_daemon_thread(fn: Callable[[Path], LoadResult], path: Path) -> asyncio.Future[LoadResult]:
    """Run `fn(path)` in a daemon thread: an abandoned load never holds up the process's exit.

    A thread cannot be stopped, so what it runs must end by itself: every YAML file is read within
    the limits of gateway.config.yamllimits (size, nodes with aliases expanded, aliases, depth), so an alias
    bomb is refused in milliseconds instead of expanding in a thread nobody waits for."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[LoadResult] = loop.create_future()

    def settle(result: LoadResult) -> None:
        if not future.done():
            future.set_result(result)

    def work() -> None:
        result = fn(path)
        with suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, result)

    threading.Thread(target=work, name="reload-load", daemon=True).start()
    return future


def load_or_error(path: Path) -> LoadedConfig | BaseException:
    """load_config for a worker thread: the error is returned, so that an abandoned load raises nowhere."""
    try:
        return load_config(path)
    except Exception as exc:
        return exc


def forget_metrics(sources: set[str], sinks: frozenset[str]) -> None:
    """Remove the labelled gauges of sources and sinks a reload removed (they would stay frozen)."""
    for name in sources:
        with suppress(KeyError):
            metrics.device_online.remove(name)
    for name in sinks:
        for gauge in (metrics.sink_pending, metrics.sink_lag, metrics.sink_connected):
            with suppress(KeyError):
                gauge.remove(name)
