"""`stale` counts fresh data only: the comm_loss or stale marks a source gives the points of a rack it lost
neither clear the alarm nor restart its clock, so a restored alarm of a dead rack stays active."""

from __future__ import annotations

from gateway.alarms.engine import fresh
from gateway.model import Sample
from tests.alarms_support import RACK, S, batch, engine, rule, sample, states

UA, RTN, N = "active_unack", "rtn_unack", "normal"


def lost(t: float) -> list[Sample]:
    return [sample(t, q, None, quality="comm_loss") for q in ("soc", "rack_voltage")]


def test_comm_loss_marks_are_not_fresh_data() -> None:
    eng = engine(rule(id="st", kind="stale", max_age=5))
    eng.tick(0)
    eng.process([batch(sample(1, "soc", 50))])
    assert states(eng.process([batch(*lost(2))])) == []  # the source marks the rack lost (once per outage)
    assert states(eng.tick(7 * S)) == [(N, UA)]  # 6 s after the last real sample, not 5 s after the marks
    assert states(eng.process([batch(*lost(8))])) == []  # marks again (a reconnect that failed): still stale
    assert states(eng.process([batch(sample(9, "soc", None, quality="stale"), *lost(9))])) == []
    assert states(eng.process([batch(*lost(10), sample(10, "soc", 51))])) == [(UA, RTN)]  # one fresh value


def test_a_restored_stale_alarm_of_a_dead_rack_stays_active() -> None:
    eng = engine(rule(id="st", kind="stale", max_age=5))
    eng.tick(0)
    eng.process([batch(sample(1, "soc", 50))])
    raised = eng.tick(7 * S)
    journal = eng.take_journal()
    assert states(raised) == [(N, UA)] and journal[-1]["alarm_id"] == f"{RACK}:st"

    again = engine(rule(id="st", kind="stale", max_age=5))  # the restart
    again.restore(journal, 100 * S)
    steps = [again.tick(100 * S), again.process([batch(*lost(100.5))]), again.tick(103 * S), again.tick(106 * S)]
    assert [states(s) for s in steps] == [[], [], [], []]
    assert again.active(RACK)[0]["state"] == UA
    assert states(again.process([batch(sample(107, "soc", 50))])) == [(UA, RTN)]


def test_fresh_looks_at_the_last_sample_first() -> None:
    assert fresh(batch(*lost(1), sample(1, "soc", 1)).quality)
    assert fresh(batch(sample(1, "soc", 1, quality="bad"), *lost(1)).quality)  # the device answered with an error
    assert not fresh(batch(sample(1, "soc", None, quality="stale"), *lost(1)).quality)
