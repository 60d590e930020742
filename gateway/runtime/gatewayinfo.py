"""What the gateway says about itself in its record: the info record and the heartbeat (pure).

Both are records of a STATUS batch, stored in the outbox like every batch, so every sink gets them
in order and nothing of them is lost while a server is away:

- **info** (`type: info`), at start and after every applied reload: version, configuration digest,
  start time, host, the sources and sinks that run. MQTT: retained `<prefix>/<site>/gateway/info`;
  InfluxDB: measurement `gateway`, tag `component=info`.
- **heartbeat** (`type: heartbeat`), every `runtime.heartbeat_interval` seconds: the gateway's
  counters (since it started) and states. MQTT: retained `<prefix>/<site>/gateway/heartbeat`;
  InfluxDB: measurement `gateway`, one point `component=gateway` and one per sink
  (`component=sink,sink=<name>`).

The heartbeat's values are those of the Prometheus metrics of the same meaning (`metric_totals`
reads them), so `/metrics` and the record never disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics import MetricWrapperBase

from gateway.model import Batch, BatchKind

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

SOURCE = "gateway"  # the source name of info and heartbeat batches


def config_digest(loaded: LoadedConfig) -> str:
    """SHA-256 of the effective configuration: the validated file with its environment overrides, the
    profiles it uses and the files they name (DBC). Secrets count only as set or not (never their value)."""
    doc = {
        "config": loaded.config.model_dump(mode="json"),
        "profiles": {name: p.model_dump(mode="json") for name, p in sorted(loaded.profiles.items())},
        "files": dict(sorted(loaded.file_digests.items())),
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def info_record(loaded: LoadedConfig, *, ts: int, started: int, version: str, reason: str) -> dict[str, object]:
    """The info record: `reason` is `start` or `reload`; times in ns since the epoch."""
    cfg = loaded.config
    return {
        "type": "info",
        "component": "info",
        "ts": ts,
        "reason": reason,
        "version": version,
        "config_digest": config_digest(loaded),
        "started": started,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "sources": [s.name for s in loaded.enabled_sources],
        "sinks": [name for name, s in cfg.sinks.items() if s.enabled],
    }


@dataclass(frozen=True, slots=True)
class SinkCounters:
    """One sink's part of a heartbeat."""

    connected: bool
    delivered_samples: int  # since start (records of alarms and status count as samples)
    pending_samples: int  # stored, not yet delivered by this sink
    lag_s: float  # age of its oldest undelivered batch
    retries: int  # failed writes, since start
    dead_lettered: int  # points the server refused for good, since start
    dropped_samples: int  # samples dropped before this sink had them (store budget), since start


@dataclass(frozen=True, slots=True)
class GatewayCounters:
    """The gateway's part of a heartbeat."""

    uptime_s: float
    samples_stored: int  # since start
    batches_stored: int  # since start
    samples_dropped: int  # since start, every consumer and reason
    queue_samples: int  # waiting for the next group commit
    store_bytes: int | None  # used by the store file (None: unknown, the store cannot be read)
    store_pending_samples: int  # not yet delivered by the slowest sink
    store_disk_full: bool
    alarms_active: int
    racks: Mapping[str, int]  # rack state → racks (`online`, `degraded`, `offline`, ...)


def heartbeat_record(ts: int, gateway: GatewayCounters, sinks: Mapping[str, SinkCounters]) -> dict[str, object]:
    rec: dict[str, object] = {"type": "heartbeat", "component": "gateway", "ts": ts}
    for name, value in _fields(gateway).items():
        if name == "racks":
            rec.update((f"racks_{state}", n) for state, n in value.items())
        elif value is not None:
            rec[name] = value
    rec["sinks"] = {name: _fields(c) for name, c in sinks.items()}
    return rec


def _fields(counters: GatewayCounters | SinkCounters) -> dict[str, Any]:
    """The fields by name, floats rounded to the millisecond (or the thousandth)."""
    values = ((name, getattr(counters, name)) for name in counters.__slots__)
    return {name: round(v, 3) if isinstance(v, float) else v for name, v in values}


def status_batch(record: dict[str, object]) -> Batch:
    """The batch that stores a record (created at the record's time)."""
    ts = record.get("ts")
    created = ts if isinstance(ts, int) else time.time_ns()
    return Batch(SOURCE, kind=BatchKind.STATUS, device=SOURCE, created=created, records=[record])


def metric_total(metric: MetricWrapperBase) -> float:
    """The sum of a counter's or gauge's value over all its labels."""
    return sum(metric_by_label(metric, None).values())


def metric_by_label(metric: MetricWrapperBase, label: str | None) -> dict[str, float]:
    """A counter's or gauge's values summed by one label's value (None: everything under "")."""
    out: dict[str, float] = {}
    for family in metric.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        for s in _samples(family.samples, name):
            key = "" if label is None else s.labels.get(label, "")
            out[key] = out.get(key, 0.0) + s.value
    return out


def _samples(samples: Iterable[Any], name: str) -> Iterable[Any]:
    return (s for s in samples if s.name == name)
