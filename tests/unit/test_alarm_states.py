"""The ISA-18.2 state machine, latching, shelving with expiry, and restore after a restart."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.alarms.states import Alarm, CommandRejected, State
from tests.alarms_support import S, batch, engine, events, rule, sample, states

UA, AA, RTN, N, SH = "active_unack", "active_ack", "rtn_unack", "normal", "shelved"


def test_full_cycle_active_ack_then_clear() -> None:
    a = Alarm("x", "r", "rule", "major")
    t = a.set_condition(True, 1)
    assert t is not None and (t.previous, t.state) == (State.NORMAL, State.ACTIVE_UNACK)
    assert a.since == 1
    t = a.acknowledge("alice", "seen")
    assert (t.state, t.user, t.reason) == (State.ACTIVE_ACK, "alice", "seen")
    t = a.set_condition(False, 2)
    assert t is not None and t.state == State.NORMAL


def test_ack_of_returned_to_normal_goes_to_normal() -> None:
    a = Alarm("x", "r", "rule", "major")
    a.set_condition(True, 1)
    a.set_condition(False, 2)
    assert a.state == State.RTN_UNACK
    assert a.acknowledge("bob", None).state == State.NORMAL


def test_condition_returns_while_rtn_unack() -> None:
    a = Alarm("x", "r", "rule", "major")
    a.set_condition(True, 1)
    a.set_condition(False, 2)
    t = a.set_condition(True, 3)
    assert t is not None and (t.previous, t.state) == (State.RTN_UNACK, State.ACTIVE_UNACK)
    assert a.since == 3


@pytest.mark.parametrize("state", [State.NORMAL, State.ACTIVE_ACK])
def test_ack_with_nothing_to_ack_is_rejected(state: State) -> None:
    a = Alarm("x", "r", "rule", "major", state=state, condition=state == State.ACTIVE_ACK)
    with pytest.raises(CommandRejected):
        a.acknowledge("alice", None)
    assert a.state == state


def test_latched_alarm_stays_until_acknowledged() -> None:
    a = Alarm("x", "r", "rule", "critical", latch=True)
    a.set_condition(True, 1)
    assert a.set_condition(False, 2) is None
    assert a.state == State.ACTIVE_UNACK
    assert a.acknowledge("alice", "reset").state == State.NORMAL


def test_latched_alarm_acked_while_active_needs_a_second_ack_after_clear() -> None:
    a = Alarm("x", "r", "rule", "critical", latch=True)
    a.set_condition(True, 1)
    a.acknowledge("alice", None)
    assert a.set_condition(False, 2) is None
    assert a.state == State.ACTIVE_ACK
    assert a.acknowledge("alice", "reset after repair").state == State.NORMAL


def test_shelve_hides_changes_and_expiry_restores_the_right_state() -> None:
    a = Alarm("x", "r", "rule", "major")
    a.set_condition(True, 1)
    assert a.shelve(100, "op", "maintenance").state == State.SHELVED
    assert a.set_condition(False, 10) is None and a.set_condition(True, 20) is None
    assert a.expire(99) is None
    t = a.expire(100)
    assert t is not None and (t.state, t.reason) == (State.ACTIVE_UNACK, "shelve expired")
    b = Alarm("y", "r", "rule", "major")
    b.set_condition(True, 1)
    b.shelve(50, "op", "noise")
    b.set_condition(False, 10)
    assert b.unshelve(20, "op", "done").state == State.NORMAL
    with pytest.raises(CommandRejected):
        b.unshelve(21, "op", None)


# -- through the engine: commands, journal entries, restore ----------------------------------------------


def _cov(**extra: object) -> object:
    return rule(id="cov", kind="threshold", quantity="cell_voltage", high=3.65, deadband=0.05, **extra)


def test_engine_commands_record_user_and_reason() -> None:
    eng = engine(_cov())
    eng.process([batch(sample(0, "cell_voltage", 3.7, module=1, cell=1))])
    errors, out = eng.command("ack", ["rack-01:cov:m1c1", "rack-01:nope"], "alice", "checked", 5 * S)
    assert errors == ["rack-01:nope: no such alarm in view (unknown or normal)"]
    (ev,) = events(out)
    assert (ev["previous"], ev["state"], ev["user"], ev["reason"], ev["ts"]) == (UA, AA, "alice", "checked", 5 * S)
    errors, _ = eng.command("ack", ["rack-01:cov:m1c1"], "alice", None, 6 * S)
    assert errors == ["rack-01:cov:m1c1 is active_ack: nothing to acknowledge"]


def test_engine_shelve_expires_on_tick() -> None:
    eng = engine(_cov())
    eng.process([batch(sample(0, "cell_voltage", 3.7))])
    _, out = eng.command("shelve", ["rack-01:cov"], "op", "noisy sensor", 1 * S, until=11 * S)
    assert states(out) == [(UA, SH)]
    assert out[0].records[-1]["active"][0]["state"] == SH  # a shelved alarm stays in the active set
    assert states(eng.process([batch(sample(2, "cell_voltage", 3.5))])) == []  # no events while shelved
    assert states(eng.tick(10 * S)) == []
    assert states(eng.tick(11 * S)) == [(SH, N)]
    assert eng.instances == {}


def test_restore_keeps_a_latched_alarm_latched() -> None:
    eng = engine(_cov(latch=True))
    eng.process([batch(sample(0, "cell_voltage", 3.7, module=1, cell=2))])
    eng.process([batch(sample(1, "cell_voltage", 3.5, module=1, cell=2))])  # clears, but latched
    journal = eng.take_journal()
    latest = {e["alarm_id"]: e for e in journal}.values()

    after = engine(_cov(latch=True))
    assert after.restore(latest, 100 * S) == []
    assert after.active("rack-01")[0]["state"] == UA
    assert states(after.process([batch(sample(101, "cell_voltage", 3.5, module=1, cell=2))])) == []
    _, out = after.command("ack", ["rack-01:cov:m1c2"], "alice", "replaced", 102 * S)
    assert states(out) == [(UA, N)]


def _notes(journal: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(e["type"], e["state"], e["ts"], e.get("changes"), e["detail"]["condition"]) for e in journal]  # type: ignore[index]


def test_a_flapping_condition_of_a_latched_alarm_is_journaled_once_a_second_with_its_count() -> None:
    eng = engine(_cov(latch=True), condition_interval=1.0)
    eng.process([batch(sample(0, "cell_voltage", 3.7))])
    assert _notes(eng.take_journal()) == [("event", UA, 0, None, True)]  # a transition is journaled at once
    volts = [3.5, 3.7, 3.5, 3.7, 3.5]  # the condition flips 5 times (a noisy sensor at the limit)
    for i, v in enumerate(volts):
        eng.process([batch(sample(0.1 * (i + 1), "cell_voltage", v))])
    assert eng.take_journal() == []  # held, not one entry per flip
    eng.tick(1 * S)
    assert _notes(eng.take_journal()) == [("condition", UA, int(0.5 * S), 5, False)]  # the latest, and how many
    eng.process([batch(sample(1.1, "cell_voltage", 3.7))])
    eng.process([batch(sample(1.2, "cell_voltage", 3.5))])
    eng.tick(int(1.5 * S))
    assert eng.take_journal() == []  # the alarm had a note 0.5 s ago
    eng.tick(2 * S)
    assert _notes(eng.take_journal()) == [("condition", UA, int(1.2 * S), 2, False)]
    eng.tick(3 * S)
    assert eng.take_journal() == []  # nothing changed since


def test_a_held_condition_note_goes_to_the_journal_before_the_alarms_next_transition() -> None:
    eng = engine(_cov(latch=True), condition_interval=1.0)
    eng.process([batch(sample(0, "cell_voltage", 3.7))])
    eng.process([batch(sample(0.1, "cell_voltage", 3.5))])
    eng.take_journal()
    _, out = eng.command("ack", ["rack-01:cov"], "alice", None, 1 * S)
    assert states(out) == [(UA, N)]  # the condition had gone: the ack resets the latched alarm
    journal = eng.take_journal()
    assert _notes(journal)[0] == ("condition", UA, int(0.1 * S), 1, False)
    assert [(e["type"], e["state"]) for e in journal[1:]] == [("event", N)]


def test_the_stop_journals_every_held_note_so_a_restart_knows_the_condition() -> None:
    eng = engine(_cov(latch=True), condition_interval=1.0)
    eng.process([batch(sample(0, "cell_voltage", 3.7, module=1, cell=2))])
    eng.process([batch(sample(0.2, "cell_voltage", 3.5, module=1, cell=2))])  # clears, but latched: held
    eng.release_notes()
    journal = eng.take_journal()
    assert [e["type"] for e in journal] == ["event", "condition"]
    after = engine(_cov(latch=True))
    after.restore({e["alarm_id"]: e for e in journal}.values(), 100 * S)
    _, out = after.command("ack", ["rack-01:cov:m1c2"], "alice", "replaced", 101 * S)
    assert states(out) == [(UA, N)]  # restored with the condition gone


def test_restore_then_a_normal_value_returns_an_unlatched_alarm() -> None:
    eng = engine(_cov())
    eng.process([batch(sample(0, "cell_voltage", 3.7))])
    after = engine(_cov())
    after.restore(eng.take_journal(), 10 * S)
    assert states(after.process([batch(sample(11, "cell_voltage", 3.5))])) == [(UA, RTN)]


def test_restore_of_an_alarm_whose_rule_is_gone_returns_it_to_normal() -> None:
    eng = engine(_cov())
    eng.process([batch(sample(0, "cell_voltage", 3.7))])
    after = engine(rule(id="other", kind="comm_loss"))
    out = after.restore(eng.take_journal(), 10 * S)
    (ev,) = events(out)
    assert (ev["state"], ev["reason"]) == (N, "rule removed from the configuration")
    assert after.take_journal()[0]["state"] == N
    assert after.instances == {}


def test_snapshot_lists_every_rack_even_without_alarms() -> None:
    eng = engine(_cov(), racks=("rack-01", "rack-02"))
    eng.process([batch(sample(0, "cell_voltage", 3.7))])
    snap = {b.device: b.records[0]["active"] for b in eng.snapshot(5 * S)}
    assert set(snap) == {"rack-01", "rack-02"}
    assert [a["alarm_id"] for a in snap["rack-01"]] == ["rack-01:cov"] and snap["rack-02"] == []
    assert eng.counts()["major"] == 1


def test_a_rack_removed_by_a_reload_is_no_longer_stale() -> None:
    eng = engine(rule(id="st", kind="stale", max_age=5), racks=("rack-01", "rack-02"))
    eng.tick(0)
    assert sorted(e["alarm_id"] for e in events(eng.tick(6 * S))) == ["rack-01:st", "rack-02:st"]
    out = eng.set_racks({"rack-01": "rack-01"}, 7 * S)
    assert [(e["alarm_id"], e["state"], e["message"]) for e in events(out)] == [
        ("rack-02:st", RTN, "rack rack-02 removed from the configuration")
    ]
    assert events(eng.tick(20 * S)) == []  # rack-01 is still stale (no transition), rack-02 is not watched
    assert eng.racks == {"rack-01"}


def test_demo_alarm_lines() -> None:
    import io

    from gateway.alarms.demo import AlarmLines

    eng = engine(_cov())
    out = io.StringIO()
    AlarmLines(out)(eng.process([batch(sample(0, "cell_voltage", 3.7, module=1, cell=5, unit="V"))]))
    assert out.getvalue() == (
        "rack-01    ALARM major    normal -> active_unack  rack-01:cov:m1c5: cell_voltage m1c5 3.7 V above 3.65 V\n"
    )


# -- property: any sequence of conditions and commands keeps the state machine consistent ----------------


OPS = st.lists(st.sampled_from(["on", "off", "ack", "shelve", "unshelve", "expire"]), max_size=40)


@given(OPS, st.booleans())
def test_state_machine_invariants(ops: list[str], latch: bool) -> None:
    a = Alarm("x", "r", "rule", "major", latch=latch)
    for t, op in enumerate(ops):
        before = a.state
        try:
            if op in ("on", "off"):
                tr = a.set_condition(op == "on", t)
            elif op == "ack":
                tr = a.acknowledge("u", None)
            elif op == "shelve":
                tr = a.shelve(t + 3, "u", "r")
            elif op == "unshelve":
                tr = a.unshelve(t, "u", None)
            else:
                tr = a.expire(t)
        except CommandRejected:
            assert a.state == before or (op == "shelve" and a.state == State.SHELVED)
            continue
        if tr is not None:
            assert (tr.previous, tr.state) == (before, a.state) and tr.previous != tr.state
        assert (a.shelved_until is not None) == (a.state == State.SHELVED)
        if a.state == State.RTN_UNACK:
            assert not a.condition and not latch  # a latched alarm never returns by itself
        if a.state == State.ACTIVE_UNACK and not latch:
            assert a.condition


def test_a_message_is_made_when_first_read() -> None:
    a = Alarm("x", "r", "rule", "major")
    made: list[int] = []

    def text() -> str:
        made.append(1)
        return "cell_temperature m1c1 changes 3 °C/s"

    a.text = text  # an alarm in view is observed with every batch: most messages are never read
    assert made == []
    assert a.message == a.message == "cell_temperature m1c1 changes 3 °C/s" and made == [1]
