"""What the gateway reports about itself: readiness, the /api/status document, the systemd STATUS= line.

The views read the runtime's public state (sources, sink runners, the outbox) and the `LiveState`;
the rules (`readiness_problems`, `status_line`, `redact_text`) are plain functions over plain data.
No secret reaches these documents: sinks are shown by name and state only, and error texts go
through `redact_text` (credentials in URLs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.alarms.gatewayalarm import GATEWAY
from gateway.config.redaction import redact_text
from gateway.ops.clockwatch import watch_of as clock_watch
from gateway.ops.livestate import LiveState, age_seconds

if TYPE_CHECKING:
    from gateway.runtime.core import Runtime



@dataclass(frozen=True, slots=True)
class SinkView:
    name: str
    connected: bool
    failures: int
    delivered: int
    pending: int
    lag_s: float
    last_error: str
    suppressed: int = 0  # samples report by exception did not send


def readiness_problems(
    sources: list[str], started: set[str], store_open: bool, stopping: bool, sinks: list[SinkView]
) -> list[str]:
    """Why the gateway is not ready (empty: ready): sources started, store open, sinks connected or catching up."""
    problems: list[str] = []
    if stopping:
        problems.append("stopping")
    if not store_open:
        problems.append("store not open")
    waiting = [s for s in sources if s not in started]
    if waiting:
        problems.append(f"sources not started: {', '.join(waiting)}")
    for sink in sinks:
        if not sink.connected:
            what = f"{sink.failures} failed attempts" if sink.failures else "connecting"
            problems.append(f"sink {sink.name} not connected ({what})")
    return problems


RACK_STATES = ("online", "degraded", "offline")  # always counted in the summary, in this order


def rack_counts(racks: list[dict[str, Any]]) -> dict[str, int]:
    """Racks by their device's state: online, degraded and offline always, other states (starting,
    unknown) when a rack is in them."""
    counts = dict.fromkeys(RACK_STATES, 0)
    for r in racks:
        state = str(r.get("state") or "unknown")
        counts[state] = counts.get(state, 0) + 1
    return counts


def racks_summary(racks: list[dict[str, Any]]) -> str:
    """`2 online, 2 degraded, 0 offline of 4 racks`: a degraded rack still answers, so it is not offline."""
    counts = rack_counts(racks)
    return (
        ", ".join(f"{n} {state}" for state, n in counts.items())
        + f" of {len(racks)} rack{'s' if len(racks) != 1 else ''}"
    )


def rack_rows(live: LiveState, now: int) -> list[dict[str, Any]]:
    """The racks of the site with their state (the gateway's own alarms, under rack `gateway`, are no rack)."""
    return [r for r in live.racks(now) if r["rack"] != GATEWAY]


def status_line(doc: dict[str, Any]) -> str:
    """A one-line summary for systemd's STATUS= (shown by `systemctl status`)."""
    parts = [
        "ready" if doc.get("ready") else "starting",
        racks_summary(doc.get("racks", [])),
        f"{doc.get('samples_seen', 0)} samples stored",
    ]
    sinks = doc.get("sinks", [])
    if sinks:
        parts.append("sinks " + " ".join(f"{s['name']}:{'ok' if s['connected'] else 'down'}" for s in sinks))
    alarms = len(doc.get("alarms", []))
    parts.append(f"{alarms} alarm{'s' if alarms != 1 else ''} active")
    return ", ".join(parts)


def sink_views(rt: Runtime) -> list[SinkView]:
    out = []
    now = time.time_ns()
    for runner in rt.runners:
        try:
            _rows, pending, oldest = rt.outbox.pending(runner.position)
        except Exception:  # the store is closing
            pending, oldest = 0, None
        out.append(
            SinkView(
                name=runner.name,
                connected=bool(getattr(runner, "connected", False)),
                failures=int(getattr(runner, "failures", 0)),
                delivered=int(getattr(runner, "delivered", 0)),
                pending=pending,
                lag_s=0.0 if oldest is None else age_seconds(now, oldest),
                last_error=redact_text(str(getattr(runner, "last_error", ""))),
                suppressed=int(getattr(runner, "suppressed", 0)),
            )
        )
    return out


def store_open(rt: Runtime) -> bool:
    try:
        rt.outbox.last_seq()
    except Exception:
        return False
    return rt.outbox.opened  # false while a full disk keeps the file closed (an empty stand-in serves)


def runtime_problems(rt: Runtime) -> list[str]:
    return readiness_problems(
        [s.name for s in rt.sources], set(rt.started_sources), store_open(rt), rt.stop_event.is_set(), sink_views(rt)
    )


def status_document(
    rt: Runtime, live: LiveState, *, rack: str | None = None, points: bool = True, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The /api/status document (also the source of the STATUS= line)."""
    now = time.time_ns()
    problems = runtime_problems(rt)
    sources = []
    for src in rt.sources:
        seen = live.sources.get(src.name)
        dev = live.devices.get(src.name)
        started = src.name in rt.started_sources
        sources.append(
            {
                "name": src.name,
                "started": started,
                "state": dev.state if dev else ("running" if started else "starting"),
                "samples": seen.samples if seen else None,  # None: its batches carry its devices' names
                "racks": sorted(seen.racks) if seen else [],
                "age_s": age_seconds(now, seen.last_batch) if seen and seen.last_batch else None,
            }
        )
    racks = rack_rows(live, now)
    doc: dict[str, Any] = {
        "site": rt.cfg.site.name,
        "now": now,
        "ready": not problems,
        "problems": problems,
        "samples_seen": live.samples,
        "sources": sources,
        "devices": live.device_rows(now),
        "racks": racks,
        "racks_summary": racks_summary(racks),
        "alarms": live.active_alarms(),
        "sinks": [_sink_dict(v) for v in sink_views(rt)],
    }
    watch = clock_watch(rt)
    if watch is not None:
        doc["clock"] = watch.view(now)
    if extra:
        doc.update(extra)
    if points:
        doc["points"] = live.point_rows(now, rack)
    return doc


def _sink_dict(v: SinkView) -> dict[str, Any]:
    return {
        "name": v.name,
        "connected": v.connected,
        "failures": v.failures,
        "delivered": v.delivered,
        "pending": v.pending,
        "lag_s": v.lag_s,
        "last_error": v.last_error,
        "suppressed": v.suppressed,
    }
