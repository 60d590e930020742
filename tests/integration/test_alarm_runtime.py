"""The alarm engine in the real runtime with simulated racks: faults raise alarms that land in the outbox,
the journal matches the outbox and verifies, and a latched alarm survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway import metrics
from gateway.alarms.commands import Command
from gateway.alarms.journal import Journal
from gateway.alarms.service import service_of
from gateway.config.settings import load_config
from gateway.model import Batch, BatchKind
from gateway.runtime.core import Runtime
from tests.runtime_support import run_until
from tests.support.store import runtime_batches as stored
from tests.support.waits import await_for

OV = "rack-01:cell_over_voltage:m1c5"


def config(
    tmp_path: Path, *, weak: bool = True, latch: bool = False, rack02: bool = True, stale_age: float | None = 0.5
) -> Path:
    """`stale_age`: the stale rule's max_age (None: the default, 10 s). A short one also fires when a busy
    machine holds the process up for longer, so only the tests about staleness use it."""
    weak_fault = "faults: [{kind: weak_cell, at: 0, cell: 5, severity: 3}]" if weak else "faults: []"
    text = f"""\
site: {{name: s1}}
sources:
  - {{type: simulated, name: rack-01, interval: 0.05, speed: 100, {weak_fault}}}
"""
    if rack02:
        text += """\
  - type: simulated
    name: rack-02
    interval: 0.05
    speed: 100
    faults:
      - {kind: contactor_open, at: 50, duration: 100}
      - {kind: dropout, at: 200, duration: 100}
"""
    text += f"""\
store: {{path: {tmp_path / "store.db"}, commit_interval: 0.02}}
http: {{enabled: false}}
alarms:
  tick_interval: 0.05
  overrides:
    cell_over_voltage: {{high: 3.45, deadband: 0.05, on_delay: 0.1, latch: {str(latch).lower()}}}
    contactor_positive_open: {{on_delay: 0.1}}
"""
    if stale_age is not None:
        text += f"    stale: {{max_age: {stale_age}}}\n"
    p = tmp_path / "gateway.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def alarm_records(rt: Runtime) -> list[dict[str, Any]]:
    return [r for b in stored(rt) if b.kind == BatchKind.ALARM for r in b.records]


def history(rt: Runtime, alarm_id: str) -> list[str]:
    return [r["state"] for r in alarm_records(rt) if r["type"] == "event" and r["alarm_id"] == alarm_id]


async def test_simulated_faults_raise_alarms_into_the_outbox_and_journal(tmp_path: Path) -> None:
    rt = Runtime(load_config(config(tmp_path)))
    before = metrics.REGISTRY.get_sample_value("bms_gateway_alarm_transitions_total",
                                               {"severity": "critical", "state": "active_unack"}) or 0.0  # fmt: skip

    def done() -> bool:
        events = [r for r in alarm_records(rt) if r["type"] == "event"]  # one read of the store per check

        def states(alarm_id: str) -> list[str]:
            return [r["state"] for r in events if r["alarm_id"] == alarm_id]

        return (
            states(OV)[:2] == ["active_unack", "rtn_unack"]
            and states("rack-02:contactor_positive_open")[:2] == ["active_unack", "rtn_unack"]
            and states("rack-02:comm_loss")[:2] == ["active_unack", "rtn_unack"]
            and states("rack-02:stale")[:1] == ["active_unack"]
        )

    await run_until(rt, done)
    batches = stored(rt)
    alarm_batches = [b for b in batches if b.kind == BatchKind.ALARM]
    # Every ALARM batch: source "alarms", device = its rack, events then the rack's full active set.
    for b in alarm_batches:
        assert b.source == "alarms" and b.n == 0
        assert b.records[-1]["type"] == "active" and b.records[-1]["rack"] == b.device
        assert all(r["type"] == "event" and r["rack"] == b.device for r in b.records[:-1])
    # The start-up snapshot: one active set per rack before any event.
    first = [b.records for b in alarm_batches[:2]]
    assert sorted(r[0]["rack"] for r in first) == ["rack-01", "rack-02"] and all(len(r) == 1 for r in first)

    # The over-voltage: raised once the on-delay has passed since the first sample above 3.45 V (by the
    # clock tick or, at the latest, by the next sample: within one poll interval plus the on-delay),
    # cleared only below 3.40 V (the deadband).
    cells = [s for b in batches if b.kind == BatchKind.SAMPLES for s in b.samples()
             if s.quantity == "cell_voltage" and s.rack == "rack-01" and (s.module, s.cell) == (1, 5)]  # fmt: skip
    events = [r for r in alarm_records(rt) if r["type"] == "event" and r["alarm_id"] == OV]
    raised, cleared = events[0], events[1]
    over = next(s for s in cells if s.value > 3.45)  # type: ignore[operator]
    due = next(s for s in cells if s.ts >= over.ts + 100_000_000)
    assert over.ts + 100_000_000 <= raised["ts"] <= due.ts
    assert raised["severity"] == "critical" and raised["value"] > 3.45
    assert "m1c5" in raised["message"] and "above 3.45 V" in raised["message"]
    assert cleared["value"] < 3.40
    between = [s.value for s in cells if raised["ts"] < s.ts < cleared["ts"]]
    assert any(3.40 <= v <= 3.45 for v in between)  # type: ignore[operator]  # inside the deadband: still active

    comm = [r for r in alarm_records(rt) if r["type"] == "event" and r["alarm_id"] == "rack-02:comm_loss"]
    assert "simulated dropout" in comm[0]["message"]
    # The journal holds every event of the outbox, each rack's in the same order, and its chain verifies.
    # (A commit's events are stored grouped per rack, so two racks' events may interleave differently.)
    journal = Journal(rt.cfg.store.path, readonly=True)
    journaled = [{k: v for k, v in e.body.items() if k != "detail"} for e in journal.entries() if e.kind == "event"]
    outbox = [r for r in alarm_records(rt) if r["type"] == "event"]
    assert len(outbox) == len(journaled)
    for rack in {r["rack"] for r in outbox + journaled}:
        assert [r for r in outbox if r["rack"] == rack] == [r for r in journaled if r["rack"] == rack]
    kinds = [e.kind for e in journal.entries()]
    assert kinds[0] == "start" and kinds[-1] == "stop"
    assert journal.verify() == (len(list(journal.entries())), [])
    journal.close()
    after = metrics.REGISTRY.get_sample_value("bms_gateway_alarm_transitions_total",
                                              {"severity": "critical", "state": "active_unack"})  # fmt: skip
    assert after is not None and after >= before + 1


async def test_a_latched_alarm_stays_active_across_a_restart(tmp_path: Path) -> None:
    rt = Runtime(load_config(config(tmp_path, latch=True, rack02=False, stale_age=None)))
    await run_until(rt, lambda: history(rt, OV) == ["active_unack"])

    # The same store; the rack is healthy now (no weak cell): the condition is gone, the alarm stays latched.
    rt2 = Runtime(load_config(config(tmp_path, weak=False, latch=True, rack02=False, stale_age=None)))
    seen_before = len(stored(rt2))
    svc = service_of(rt2)
    assert svc is not None and svc.engine.active("rack-01")[0]["alarm_id"] == OV
    assert metrics.REGISTRY.get_sample_value("bms_gateway_alarms_active", {"severity": "critical"}) == 1

    def healthy_batches() -> int:
        return sum(1 for b in stored(rt2)[seen_before:] if b.kind == BatchKind.SAMPLES)

    await run_until(rt2, lambda: healthy_batches() >= 20)
    new = [b for b in stored(rt2)[seen_before:] if b.kind == BatchKind.ALARM]
    snapshot = new[0].records
    assert snapshot[0]["type"] == "active" and [a["alarm_id"] for a in snapshot[0]["active"]] == [OV]
    assert not [r for b in new for r in b.records if r["type"] == "event" and r["alarm_id"] == OV]
    assert svc.engine.by_id[OV].alarm.condition is False  # evaluated healthy, still latched

    # The acknowledgement resets it (journaled with who and why); the gateway wrote nothing to the rack.
    rt3 = Runtime(load_config(config(tmp_path, weak=False, latch=True, rack02=False, stale_age=None)))
    svc3 = service_of(rt3)
    assert svc3 is not None
    reply = await svc3.command(Command("ack", "rack-01", (OV,), "alice", "cell replaced", None, "req-7"))
    assert reply["ok"] is True and reply["errors"] == []
    svc3.close()
    rt3.outbox.close()
    j = Journal(rt2.cfg.store.path, readonly=True)
    entries = [e.body for e in j.entries()]
    cmd = next(e for e in entries if e["type"] == "command")
    assert (cmd["user"], cmd["reason"], cmd["alarm_ids"], cmd["errors"]) == ("alice", "cell replaced", [OV], [])
    last = [e for e in entries if e.get("alarm_id") == OV][-1]
    assert (last["previous"], last["state"], last["user"]) == ("active_unack", "normal", "alice")
    assert j.verify()[1] == []
    j.close()


async def test_a_rack_removed_by_reload_does_not_go_stale(tmp_path: Path) -> None:
    cfg = config(tmp_path, weak=False)
    text = cfg.read_text()
    rt = Runtime(load_config(cfg))
    state: dict[str, int] = {}

    def rack01_batches() -> int:
        return sum(1 for b in stored(rt) if b.kind == BatchKind.SAMPLES and b.source == "rack-01")

    def cond() -> bool:
        n = rack01_batches()
        if "reloaded_at" not in state and n >= 5:
            # Drop rack-02 (and its faults) from the file, then SIGHUP's path: reload.
            cfg.write_text(text.split("  - type: simulated\n    name: rack-02")[0] + text[text.index("store:") :])
            state["reloaded_at"] = n
            # A busy machine may hold the process up past max_age before the reload: only later events count.
            state["stale_before"] = len(history(rt, "rack-02:stale"))
            rt.request_reload()
        return "reloaded_at" in state and rt.last_reload is not None and n >= state["reloaded_at"] + 30

    await run_until(rt, cond)
    assert rt.last_reload is not None and rt.last_reload.ok, rt.last_reload
    assert "rack-02" not in {s.name for s in rt.sources}
    assert history(rt, "rack-02:stale")[state["stale_before"] :] == []  # removed, so never stale again
    svc = service_of(rt)
    assert svc is not None and svc.engine.racks == {"rack-01"}


async def test_an_event_journaled_before_a_crash_reaches_the_outbox_after_restart(tmp_path: Path) -> None:
    from gateway.model import Sample

    cfg = config(tmp_path, weak=False, rack02=False)
    rt = Runtime(load_config(cfg))
    svc = service_of(rt)
    assert svc is not None
    ts = 1_000_000_000
    one = [Sample(ts, "interlock_estop", 1, "", "good", "rack-01")]
    out = svc.process([Batch.of_samples("rack-01", one, device="rack-01")])
    assert [r["alarm_id"] for r in out[0].records if r["type"] == "event"] == ["rack-01:estop"]
    # The process dies here: journaled, never committed to the outbox (no stop entry either).
    svc.journal.close()
    rt.outbox.close()

    rt2 = Runtime(load_config(cfg))
    await run_until(rt2, lambda: "active_unack" in history(rt2, "rack-01:estop"))
    (event,) = [r for r in alarm_records(rt2) if r["type"] == "event" and r["alarm_id"] == "rack-01:estop"]
    assert event["ts"] == ts and event["state"] == "active_unack"

    # Stored once: a third start (after a clean stop) does not store it again.
    rt3 = Runtime(load_config(cfg))
    before = sum(1 for b in stored(rt3) if b.kind == BatchKind.SAMPLES)
    await run_until(rt3, lambda: sum(1 for b in stored(rt3) if b.kind == BatchKind.SAMPLES) >= before + 3)
    assert history(rt3, "rack-01:estop") == ["active_unack"]


def test_an_unwritable_journal_keeps_entries_and_the_events_still_flow(tmp_path: Path) -> None:
    from gateway.model import Sample

    rt = Runtime(load_config(config(tmp_path, weak=False, rack02=False)))
    svc = service_of(rt)
    assert svc is not None
    failures = metrics.REGISTRY.get_sample_value("bms_gateway_alarm_journal_failures_total") or 0.0
    path = svc.journal.path
    svc.journal.close()  # the journal cannot be written (as on a full disk)

    def estop(ts: int, v: int) -> list[Batch]:
        one = [Sample(ts, "interlock_estop", v, "", "good", "rack-01")]
        return svc.process([Batch.of_samples("rack-01", one, device="r")])

    out = estop(1, 1)
    assert [r["state"] for r in out[0].records if r["type"] == "event"] == ["active_unack"]  # still to the outbox
    assert metrics.REGISTRY.get_sample_value("bms_gateway_alarm_journal_failures_total") == failures + 1
    svc.journal = Journal(path)  # writable again: the kept entry goes first, the chain stays in order
    estop(2, 0)
    svc.close()
    rt.outbox.close()
    j = Journal(path, readonly=True)
    states = [(e.body["alarm_id"], e.body["state"]) for e in j.entries() if e.kind == "event"]
    assert states == [("rack-01:estop", "active_unack"), ("rack-01:estop", "rtn_unack")]
    assert j.verify()[1] == []
    j.close()


async def test_a_tick_never_waits_behind_a_full_queue_so_a_rack_keeps_its_journal_order(tmp_path: Path) -> None:
    """A transition the clock found is queued in the step that journaled it, past a full queue and ahead of a
    waiting source, so no transition journaled later (by that source's batch) reaches the outbox first."""
    from gateway.model import Sample

    text = config(tmp_path, weak=False, rack02=False).read_text(encoding="utf-8")
    cfg = tmp_path / "full.yaml"
    cfg.write_text(text + "runtime: {queue_batches: 1}\n", encoding="utf-8")
    rt = Runtime(load_config(cfg))
    svc = service_of(rt)
    assert svc is not None
    svc.clock = lambda: 1_000_000_000

    def estop(ts: int, v: int) -> Batch:
        return Batch.of_samples("rack-01", [Sample(ts, "interlock_estop", v, "", "good", "rack-01")], device="rack-01")

    rt.queue.put_nowait(estop(1, 0))  # the queue is full
    waiting = asyncio.create_task(rt.pipeline.emit(estop(2_000_000_000, 1)))  # a source waits for room
    await await_for(lambda: rt.queue.full_waits == 1, what="the source waiting for room")
    assert not waiting.done()
    svc.engine.last_seen["rack-01"] = 0  # no sample for 1 s: the clock finds the rack stale
    svc.engine.racks.add("rack-01")
    await asyncio.wait_for(svc.tick(), 10.0)  # returns at once though the queue is full
    assert len(rt.queue) == 2 and not waiting.done()
    first = rt.queue.get_nowait()
    alarm = rt.queue.get_nowait()
    await asyncio.wait_for(waiting, 10.0)
    late = rt.queue.get_nowait()
    assert first is not None and alarm is not None and late is not None
    assert [r["alarm_id"] for r in alarm.records if r["type"] == "event"] == ["rack-01:stale"]
    rt.pipeline.commit([first, alarm, late])  # the source's estop is journaled after the stale event
    journal = Journal(rt.cfg.store.path, readonly=True)
    journaled = [(e.body["alarm_id"], e.body["state"]) for e in journal.entries() if e.kind == "event"]
    journal.close()
    stale = "rack-01:stale"
    assert journaled == [(stale, "active_unack"), (stale, "rtn_unack"), ("rack-01:estop", "active_unack")]
    assert [(r["alarm_id"], r["state"]) for r in alarm_records(rt) if r["type"] == "event"] == journaled
    svc.close()
    rt.outbox.close()


async def test_a_transition_the_clock_finds_while_a_group_is_gathered_is_stored_before_that_groups(
    tmp_path: Path,
) -> None:
    """The clock journals a transition after the pipeline gathered a group and before it commits it; the
    group's processing journals newer ones. The clock's is stored with that group, ahead of them."""
    from gateway.model import Sample

    rt = Runtime(load_config(config(tmp_path, weak=False, rack02=False)))
    svc = service_of(rt)
    assert svc is not None
    svc.clock = lambda: 1_000_000_000
    sample = Batch.of_samples("rack-01", [Sample(2_000_000_000, "interlock_estop", 1, "", "good", "rack-01")],
                              device="rack-01")  # fmt: skip
    rt.queue.put_nowait(sample)
    gathered = rt.queue.get_nowait()  # the pipeline's group
    assert gathered is not None
    svc.engine.last_seen["rack-01"] = 0  # no sample for 1 s: the clock finds the rack stale
    svc.engine.racks.add("rack-01")
    await svc.tick()  # journals the stale transition and queues it
    rt.pipeline.commit([gathered])  # journals the estop and the stale's return after it
    assert len(rt.queue) == 0  # the clock's batch went with the group
    journal = Journal(rt.cfg.store.path, readonly=True)
    journaled = [(e.body["alarm_id"], e.body["state"]) for e in journal.entries() if e.kind == "event"]
    journal.close()
    stale = "rack-01:stale"
    assert journaled == [(stale, "active_unack"), ("rack-01:estop", "active_unack"), (stale, "rtn_unack")]
    assert [(r["alarm_id"], r["state"]) for r in alarm_records(rt) if r["type"] == "event"] == journaled
    svc.close()
    rt.outbox.close()
