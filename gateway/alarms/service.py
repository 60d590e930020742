"""The alarm engine in the runtime: a processor on the live path, a clock service, the journal, commands.

- Processor: every group of batches passes the engine before the outbox commit; the ALARM batches it
  returns are committed with them (same transaction, same guarantees as telemetry).
- Service `alarms`: at start it restores the state from the journal and emits every rack's active set
  (so the retained MQTT topic is current after a restart); then it ticks (`alarms.tick_interval`)
  for stale racks, on/off delays when no sample arrives, and shelve expiry, and takes the conditions
  the gateway reports about itself (`rt.gateway_alarms`, rack `gateway`; a report wakes it at once).
- Service `alarm-commands` (only when `alarms.commands.enabled`): MQTT acknowledge/shelve.
- Every transition is journaled (hash-chained) and, in the same step, queued for the outbox past the
  queue's bound (`rt.emit_now`; the next group commit takes it ahead of what its own evaluation
  journals): nothing journaled later can reach the outbox first, so each rack's
  events are stored in journal order (a commit's events are grouped per rack). When the journal
  cannot be written (a full disk) its entries wait in memory and each tick retries (at most once a
  second), so nothing here needs a store write to succeed at the moment a fault is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from gateway.alarms import demo as _demo  # noqa: F401  (registers the demo's alarm lines)
from gateway.alarms import metrics
from gateway.alarms.commandlistener import CommandListener
from gateway.alarms.commands import Command, command_sink, resolved
from gateway.alarms.engine import AlarmEngine
from gateway.alarms.gatewayalarm import STORE_DISK_FULL, orphaned
from gateway.alarms.instances import outbox_record, rack_batch
from gateway.alarms.journal import Journal
from gateway.alarms.ruleset import build_ruleset
from gateway.model import Batch
from gateway.runtime.core import Runtime

log = structlog.get_logger("alarms")

Clock = Callable[[], int]
MAX_UNJOURNALED = 100_000  # entries kept in memory while the journal cannot be written
JOURNAL_RETRY = 1.0  # seconds between retries of a journal write that failed
COMMITTED = "alarms.journal_committed"  # outbox meta: journal entries up to this seq are in the outbox
_SERVICES: weakref.WeakKeyDictionary[Runtime, AlarmService] = weakref.WeakKeyDictionary()


def journal_path(rt: Runtime) -> Path:
    return rt.cfg.alarms.journal.path or rt.cfg.store.path


class AlarmService:
    def __init__(self, rt: Runtime, engine: AlarmEngine, journal: Journal, clock: Clock = time.time_ns) -> None:
        self.rt = rt
        self.engine = engine
        self.journal = journal
        self.clock = clock
        self.stopping = False
        self.commands: CommandListener | None = None
        self._unjournaled: list[dict[str, Any]] = []
        self._journal_failed_at: float | None = None  # monotonic time of the last failed write, while failing
        self._journal_dropped = 0  # entries dropped past MAX_UNJOURNALED while failing
        self._inflight: dict[int, int] = {}  # id(batch) -> first journal seq of its events, until committed
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.gateway = rt.gateway_alarms
        now = clock()
        restored = engine.restore(journal.latest_events(), now)
        self.gateway.attach(engine.gateway_conditions(), self._wake_up)
        self._forget_sinks()
        unstored = self._unstored()
        self._record([{"type": "start", "ts": now, "restored": len(engine.instances), "rules": len(engine.specs)}])
        self._emit(unstored + self._journaled(restored))  # queued before any source's first batch
        self._gauge()  # restored alarms count from the start
        log.info("alarm engine ready", rules=len(engine.specs), restored_alarms=len(engine.instances))

    def _unstored(self) -> list[Batch]:
        """Events journaled but not committed to the outbox before an unclean stop: stored again now."""
        mark = int(self.rt.outbox.get_meta(COMMITTED) or 0)
        events = self.journal.events_since_last_stop(mark)
        if not events:
            return []
        log.warning(
            "alarm events journaled but not stored before an unclean stop: storing them now", events=len(events)
        )
        by_rack: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            by_rack.setdefault(e["rack"], []).append(outbox_record(e))
        out = [rack_batch(rack, ev[-1]["ts"], ev, self.engine.active(rack)) for rack, ev in by_rack.items()]
        first = self.journal.seq  # tracked as if new, so the commit marker moves past them
        for b in out:
            self._inflight[id(b)] = first
        return out

    def _journaled(self, out: list[Batch]) -> list[Batch]:
        """Journal what the engine produced; remember which batches carry events until they are committed."""
        entries = self.engine.take_journal()
        first = self.journal.seq + len(self._unjournaled) + 1
        self._record(entries)
        if entries:
            for b in out:
                self._inflight[id(b)] = first
        return out

    def committed(self, batches: list[Batch]) -> None:
        """Observer: the outbox committed these; move the marker of journal entries known to be stored."""
        if STORE_DISK_FULL in self.gateway.restored and not self.rt.outbox.disk_full:
            # A full disk restored from before a restart, and the store took a commit since: it has room.
            self.gateway.set(STORE_DISK_FULL, False, f"the store's disk has room ({self.rt.outbox.path})")
        if not self._inflight:
            return
        done = [self._inflight.pop(id(b)) for b in batches if id(b) in self._inflight]
        if done:
            mark = min(self._inflight.values()) - 1 if self._inflight else self.journal.seq
            self.rt.outbox.set_meta(COMMITTED, str(mark))

    # -- live path ----------------------------------------------------------------------------------

    def process(self, batches: list[Batch]) -> list[Batch]:
        t0 = time.perf_counter()
        out = self._journaled(self.engine.process(batches))
        metrics.evaluate_seconds.observe(time.perf_counter() - t0)
        return out

    async def run(self) -> None:
        """Start-up snapshot, then the clock (woken early when the gateway reports a condition)."""
        self._loop = asyncio.get_running_loop()
        now = self.clock()
        self._emit(self._journaled(self.engine.gateway(self.gateway.take_changes())))  # before the start
        self._emit(self.engine.snapshot(now))
        interval = self.rt.cfg.alarms.tick_interval
        while not self.stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            if self.stopping:
                break  # the pipeline may be draining: no new events after the stop
            await self.tick()

    async def tick(self) -> None:
        changes = self.gateway.take_changes()
        self._emit(self._journaled(self.engine.gateway(changes) + self.engine.tick(self.clock())))
        if self._unjournaled:
            self._retry_journal()

    def _emit(self, batches: list[Batch]) -> None:
        """Into the queue at once, in the step that journaled them (never behind a full queue)."""
        for b in batches:
            self.rt.emit_now(b)

    def _wake_up(self) -> None:
        """The gateway reported a condition (from any thread): tick now rather than at the next interval."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not running yet: `run` takes what waits
        try:
            same = asyncio.get_running_loop() is loop
        except RuntimeError:
            same = False
        if same:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def _forget_sinks(self) -> None:
        """Sink alarms of sinks no longer configured return to normal (nothing would ever clear them)."""
        for name in orphaned(list(self.gateway.active), [r.name for r in self.rt.runners]):
            self.gateway.set(name, False, f"sink {name.split(':', 1)[1]} is no longer configured")

    async def command(self, cmd: Command) -> dict[str, Any]:
        """Apply an operator command; journal it (accepted or not) with who sent it, and emit its transitions."""
        now = self.clock()
        who = cmd.identity
        signed = {"verified": who.verified, "key_id": who.key_id} if who is not None else {}
        reply: dict[str, Any] = {"id": cmd.request_id, "action": cmd.action, "user": cmd.user, "ts": now, **signed}
        if self.stopping:
            reply.update(ok=False, errors=["the gateway is stopping"])
            return reply
        ids = self.engine.ids_of_rack(cmd.rack) if cmd.alarm_ids == ("*",) else list(cmd.alarm_ids)
        until = None if cmd.duration is None else now + int(cmd.duration * 1e9)
        errors, out = self.engine.command(cmd.action, ids, cmd.user, cmd.reason, now, until)
        entry = {"type": "command", "ts": now, "rack": cmd.rack, "action": cmd.action, "alarm_ids": ids,
                 "user": cmd.user, "reason": cmd.reason, "duration": cmd.duration, "request_id": cmd.request_id,
                 "errors": errors, **signed}  # fmt: skip
        if who is not None and who.verified:
            entry.update(nonce=who.nonce, signed_ts=who.signed_ts)
        self._record([entry])
        out = self._journaled(out)
        result = "ok" if not errors else ("rejected" if len(errors) == len(ids) else "partial")
        metrics.commands.labels(cmd.action, result).inc()
        log.info("alarm command", action=cmd.action, user=cmd.user, reason=cmd.reason, alarm_ids=ids[:20],
                 errors=errors[:20], **signed)  # fmt: skip
        self._emit(out)
        reply.update(ok=not errors, alarm_ids=ids, errors=errors)
        return reply

    def record(self, entries: list[dict[str, Any]]) -> None:
        """Journal entries from the command listener (refused and dropped commands)."""
        self._record(entries)

    # -- journal, metrics, logs ---------------------------------------------------------------------

    def _record(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        self._write_journal(entries)
        events = [e for e in entries if e.get("type") == "event"]
        for e in events:
            metrics.transitions.labels(e["severity"], e["state"]).inc()
            level = log.warning if e["state"] == "active_unack" else log.info
            level("alarm", alarm_id=e["alarm_id"], state=e["state"], previous=e["previous"], severity=e["severity"],
                  message=e["message"], user=e["user"], reason=e["reason"])  # fmt: skip
        if events:
            self._gauge()

    def _gauge(self) -> None:
        for severity, n in self.engine.counts().items():
            metrics.alarms_active.labels(severity).set(n)

    def _write_journal(self, entries: list[dict[str, Any]]) -> None:
        """Append in order; when the file cannot be written (disk full, I/O error) keep the entries in memory
        and retry with the next ones and on the clock (`_retry_journal`), so the chain keeps its order. Past
        `MAX_UNJOURNALED` the oldest go, counted. The events still go to the outbox either way. Logged when
        writing starts to fail and when it works again (with what was dropped), not on every retry."""
        self._unjournaled.extend(entries)
        try:
            self.journal.append(self._unjournaled)
        except sqlite3.Error as exc:
            metrics.journal_failures.inc()
            excess = len(self._unjournaled) - MAX_UNJOURNALED
            if excess > 0:
                del self._unjournaled[:excess]
                metrics.journal_dropped.inc(excess)
                self._journal_dropped += excess
            if self._journal_failed_at is None:
                log.error("alarm journal write failed; entries kept in memory and retried", error=str(exc),
                          pending=len(self._unjournaled))  # fmt: skip
            self._journal_failed_at = time.monotonic()
            return
        metrics.journal_entries.inc(len(self._unjournaled))
        if self._journal_failed_at is not None:
            log.info("alarm journal written again", entries=len(self._unjournaled), dropped=self._journal_dropped)
            self._journal_failed_at, self._journal_dropped = None, 0
        self._unjournaled = []

    def _retry_journal(self) -> None:
        """The clock: entries that wait for the journal go in once it can be written."""
        failed = self._journal_failed_at
        if failed is None or time.monotonic() - failed >= JOURNAL_RETRY:
            self._write_journal([])

    def stop(self) -> None:
        self.stopping = True

    def reloaded(self, result: Any) -> None:
        """After a reload (SIGHUP): follow the racks of the sources now configured. Rules need a restart."""
        loaded = getattr(result, "loaded", None)
        if not getattr(result, "ok", False) or loaded is None:
            return
        self._emit(self._journaled(self.engine.set_racks(racks_of(loaded), self.clock())))
        self._forget_sinks()

    def close(self) -> None:
        if self.commands is not None:
            self.commands.close()
        try:
            # A clean stop stored every journaled event; otherwise the next start looks further back.
            kind = "stop" if not self._inflight else "stop_incomplete"
            self.engine.release_notes()  # the held condition notes, so a restart knows every condition
            stop = {"type": kind, "ts": self.clock(), "active": len(self.engine.instances)}
            self._record([*self.engine.take_journal(), stop])
            if self._unjournaled:
                metrics.journal_dropped.inc(len(self._unjournaled))
                log.error("alarm journal entries lost at stop: the journal cannot be written",
                          dropped=len(self._unjournaled))  # fmt: skip
        finally:
            self.journal.close()


def service_of(rt: Runtime) -> AlarmService | None:
    """The alarm service installed in a runtime (tests inject a clock through it)."""
    return _SERVICES.get(rt)


def racks_of(loaded: Any) -> dict[str, str]:
    return {s.name: s.rack_tag for s in loaded.enabled_sources if hasattr(s, "rack_tag")}


def install(rt: Runtime) -> None:
    cfg = rt.cfg.alarms
    if not cfg.enabled:
        return
    ruleset = build_ruleset(rt.loaded)
    engine = AlarmEngine(
        ruleset.rules, racks_of(rt.loaded), condition_interval=int(cfg.journal.condition_interval * 1e9)
    )
    svc = AlarmService(rt, engine, Journal(journal_path(rt), synchronous=cfg.journal.synchronous))
    _SERVICES[rt] = svc
    rt.processors.append(svc.process)
    rt.observers.append(svc.committed)
    rt.services.append(("alarms", svc.run))
    rt.on_stopping.append(svc.stop)
    rt.on_reload.append(svc.reloaded)
    rt.on_close.append(svc.close)
    if cfg.commands.enabled:
        mq = resolved(command_sink(rt.cfg.sinks, cfg.commands.mqtt_sink), rt.loaded.resolve)
        svc.commands = CommandListener(cfg.commands, mq, rt.cfg.site.name, svc, rt.loaded.resolve)
        rt.services.append(("alarm-commands", svc.commands.run))
