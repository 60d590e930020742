"""The live assessment without an event loop: batches of a synthetic rack in, one batch of assessed values
after each full discharge out (within 3 % of the truth), nothing before; the default rule that compares
them with the BMS's SoH; the configuration keys."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from gateway import catalog
from gateway.alarms.engine import AlarmEngine
from gateway.alarms.ruleset import defaults_path, load_rule_file
from gateway.assess.config import AssessConfig
from gateway.assess.live import CHUNK_STEPS, SOURCE, Configured, LiveAssessment, assessment_batch
from gateway.model import Batch, Sample
from tests.alarms_support import events
from tests.assess_support import RACK, Synth

NOMINAL = 100.0


def live(**cfg: object) -> LiveAssessment:
    return LiveAssessment(AssessConfig.model_validate({"enabled": True, "nominal_capacity_ah": NOMINAL, **cfg}))


def cutoff_times(s: Synth) -> list[int]:
    """The time of the first step of each discharge at which the lowest cell is at the cutoff (2.95 V)."""
    at = np.flatnonzero((s.cells.min(axis=1) <= 2.95) & (s.current < 0))
    first = at[np.concatenate([[True], np.diff(at) > 1])]
    return [int(s.t[i]) for i in first]


def test_after_each_full_discharge_a_batch_within_3_percent_and_nothing_before() -> None:
    s = Synth(nominal_ah=NOMINAL, weak={3: 0.9}).run(cycles=2)
    la = live()
    cutoffs = cutoff_times(s)
    assert len(cutoffs) == 2
    got: list[tuple[int, list[Sample]]] = []  # (time of the batch's last sample, the samples published)
    for b in s.batches(per_batch=10):
        results = la.feed([b])
        if results:
            got.append((int(b.ts.max()), assessment_batch(results).samples()))
    assert len(got) == 2, got
    for (fed_until, samples), cutoff, truth in zip(got, cutoffs, s.discharged_ah, strict=True):
        # not before the cutoff, and at most one chunk (plus one batch) after it
        assert cutoff <= fed_until <= cutoff + (CHUNK_STEPS + 10) * 1_000_000_000
        by = {x.quantity: x for x in samples}
        assert set(by) == {"assessed_capacity", "assessed_soh"}
        cap, soh = by["assessed_capacity"], by["assessed_soh"]
        assert (cap.rack, cap.unit, soh.unit) == (RACK, "Ah", "%")
        assert cap.ts == soh.ts == cutoff  # stamped at the end of the discharge
        assert cap.value == pytest.approx(truth, rel=0.03)
        assert soh.value == pytest.approx(100.0 * truth / NOMINAL, rel=0.03)


def test_the_state_per_rack_is_one_chunk_not_the_window() -> None:
    s = Synth(nominal_ah=NOMINAL).run(cycles=3)
    la = live()
    for b in s.batches(per_batch=60):
        la.feed([b])
    (assessor,) = la.racks.values()
    assert assessor.capacity.take_discharges() == []  # each discharge went out when it was measured
    assert assessor.builder.steps == CHUNK_STEPS
    assert la.left_out == 0


def test_without_a_nominal_capacity_only_the_capacity_and_other_racks_and_own_batches_are_ignored() -> None:
    s = Synth(nominal_ah=NOMINAL).run(cycles=1)
    la = LiveAssessment(AssessConfig(enabled=True))
    out = [a for b in s.batches() for a in la.feed([b])]
    assert len(out) == 1 and out[0].soh_pct is None
    assert [x.quantity for x in assessment_batch(out).samples()] == ["assessed_capacity"]
    published = assessment_batch(out)
    assert published.source == SOURCE and la.feed([published]) == []  # its own batches are not fed back
    other = LiveAssessment(AssessConfig(enabled=True, racks={"elsewhere": {"nominal_capacity_ah": 5}}))
    assert other.cfg.limits("elsewhere").nominal_ah == 5 and other.cfg.limits(RACK).nominal_ah is None


def test_the_source_configuration_fills_what_assess_leaves_unset() -> None:
    s = Synth(nominal_ah=NOMINAL).run(cycles=1)
    la = LiveAssessment(AssessConfig(enabled=True), {RACK: Configured(nominal_ah=NOMINAL, period_s=1.0)})
    out = [a for b in s.batches() for a in la.feed([b])]
    assert len(out) == 1 and out[0].nominal_ah == NOMINAL and out[0].soh_pct is not None
    cfg = AssessConfig(enabled=True, nominal_capacity_ah=7, racks={"r9": {"period": 3}})
    assert cfg.limits(RACK, 100.0).nominal_ah == 7  # assess: wins over the profile
    assert (cfg.period_of("r9", 5.0), cfg.period_of(RACK, 5.0), cfg.period_of(RACK)) == (3, 5.0, 1.0)


def test_racks_beyond_the_bound_are_refused_not_held() -> None:
    s = Synth(nominal_ah=NOMINAL).run(cycles=1)
    la = LiveAssessment(AssessConfig(enabled=True), max_racks=0)
    la.feed(s.batches()[:3])
    assert la.racks == {} and la.refused == {RACK}


def test_the_default_rule_raises_when_the_bms_overstates_soh_and_clears_when_it_agrees() -> None:
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    eng = AlarmEngine(rules, {RACK: RACK})
    t = 1_700_000_000_000_000_000

    def bms_soh(ts: int, v: float) -> Batch:
        return Batch.of_samples(RACK, [Sample(ts, "soh", v, "%", rack=RACK)], device=RACK)

    assert events(eng.process([bms_soh(t, 99.0)])) == []  # nothing to compare with yet
    measured = Batch.of_samples(SOURCE, [Sample(t + 1, "assessed_soh", 93.0, "%", rack=RACK)], device=SOURCE)
    raised = [e for e in events(eng.process([measured])) if e["alarm_id"] == f"{RACK}:soh_mismatch"]
    assert [e["state"] for e in raised] == ["active_unack"]
    assert "soh 99 % disagrees with assessed_soh 93" in str(raised[0]["message"])
    cleared = [e for e in events(eng.process([bms_soh(t + 2, 94.5)])) if e["alarm_id"] == f"{RACK}:soh_mismatch"]
    assert [e["state"] for e in cleared] == ["rtn_unack"]


def test_catalog_and_configuration() -> None:
    for name, unit in (("assessed_capacity", "Ah"), ("assessed_soh", "%")):
        q = catalog.CATALOG[name]
        assert (q.unit, q.level, q.kind) == (unit, catalog.Level.RACK, catalog.Kind.NUMBER)
    assert AssessConfig().enabled is False
    with pytest.raises(ValidationError, match="cutoff_voltage < taper_voltage"):
        AssessConfig(cutoff_voltage=3.5)
    with pytest.raises(ValidationError):
        AssessConfig.model_validate({"enabled": True, "nominal_ah": 280})  # unknown key
