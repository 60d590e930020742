"""Usable capacity from partial cycles between rest points (gateway.assess.partial), no event loop: a
simulated rack's capacity test whose partial cycles reach the steep part of the OCV curve, its batches
through `chunks_from_batches` and the estimator with the simulator's own OCV curve as the table; the
OCV table files (CSV and YAML) and their errors naming file:line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.assess.config import AssessConfig
from gateway.assess.cycles import Limits
from gateway.assess.live import CHUNK_STEPS, Assessment, LiveAssessment, assessment_batch
from gateway.assess.ocvtable import OcvTable, OcvTableError, load_ocv_table
from gateway.assess.partial import PartialCycles, PartialResult
from gateway.assess.series import chunks_from_batches
from gateway.cli.main import main
from gateway.model import Batch
from gateway.sources.sim import truth
from gateway.sources.sim.cells import OCV_TABLE
from gateway.sources.sim.config import SimulatedSourceConfig
from gateway.sources.sim.feed import NS, RackFeed
from gateway.store.outbox import Outbox

RACK = "rack-p"
PERIOD = 10.0  # s: 1 s interval x speed 10
HOURS = 13.0  # a full cycle, its partial cycles, and the next full charge and discharge


def simulate(low: float, high: float) -> tuple[dict[str, Any], list[Batch]]:
    cfg = SimulatedSourceConfig.model_validate({
        "name": RACK, "modules": 2, "cells_per_module": 8, "interval": 1.0, "speed": PERIOD,
        "clock": "simulated", "current_profile": "capacity_test", "cells": {"capacity_sd": 0.01},
        "capacity_test": {"partial_low": low, "partial_high": high, "partial_cycles": 2, "rest": 1800},
    })  # fmt: skip
    feed = RackFeed(cfg, start_ns=1_700_000_000 * NS)
    params = truth.parameters(feed)
    batches = [o.batch for o in feed.run(HOURS * 3600) if o.batch is not None and o.batch.n]
    return params, batches


def estimate(batches: list[Batch], table: OcvTable | None, **kw: Any) -> PartialResult:
    est = PartialCycles(table, Limits(), **kw)
    for chunk in chunks_from_batches(batches, RACK, PERIOD, steps=500):  # rests span chunks
        est.update(chunk)
    return est.result()


@pytest.fixture(scope="module")
def sim_table(tmp_path_factory: pytest.TempPathFactory) -> OcvTable:
    """The simulator's OCV curve written out as a CSV table and read back."""
    path = tmp_path_factory.mktemp("ocv") / "lfp.csv"
    path.write_text("# the simulator's LFP curve\nsoc_pct,voltage\n" + "".join(f"{s},{v}\n" for s, v in OCV_TABLE))
    return load_ocv_table(path)


@pytest.fixture(scope="module")
def steep() -> tuple[dict[str, Any], list[Batch]]:
    return simulate(10.0, 60.0)  # partial cycles down to 10 % SoC: the knee of the LFP curve


def test_partial_cycle_capacity_within_5_percent_of_the_truth(
    steep: tuple[dict[str, Any], list[Batch]], sim_table: OcvTable
) -> None:
    params, batches = steep
    r = estimate(batches, sim_table)
    assert r.insufficient is None and r.ah is not None and r.spread_ah is not None
    # rests: full, empty, 2 x (high, low), full again (the last one still under way at the end counts)
    assert r.rest_points >= 6 and len(r.estimates) >= 5
    # measured: 280.9 Ah against a usable 269.7 Ah (+4.1 %): the median cell's capacity between its
    # rested SoCs, where the usable capacity stops at the first cell's cutoff under load
    assert r.ah == pytest.approx(params["usable_capacity_ah"], rel=0.05)
    median_cell = float(np.median([c["capacity_ah"] for c in params["cells"]]))
    assert r.ah == pytest.approx(median_cell, rel=0.01)
    assert r.spread_ah < 0.01 * r.ah
    assert {e.delta_soc_pct > 0 for e in r.estimates} == {True, False}  # charges and discharges both


def test_rest_shorter_than_required_gives_no_rest_point(
    steep: tuple[dict[str, Any], list[Batch]], sim_table: OcvTable
) -> None:
    r = estimate(steep[1], sim_table, rest_s=3600.0)  # the simulator rests 1800 s
    assert r.ah is None and r.rest_points == 0
    assert r.insufficient is not None and "no pair of rest points" in r.insufficient


def test_flat_lfp_plateau_pairs_are_skipped(sim_table: OcvTable) -> None:
    _, batches = simulate(40.0, 80.0)  # both turns on the plateau: 3.27 V against 3.32 V
    r = estimate(batches, sim_table, min_delta_ocv_v=0.06)
    assert r.skipped == {"flat": 3}  # 80 -> 40 -> 80 -> 40: 40 points apart, but 50 mV
    # what remains has a rest at a steep end (full, empty): none of the 40-point plateau pairs
    assert len(r.estimates) >= 3 and all(abs(e.delta_soc_pct) > 50 for e in r.estimates)


def test_insufficient_without_a_table(steep: tuple[dict[str, Any], list[Batch]]) -> None:
    r = estimate(steep[1], None)
    assert r.ah is None and r.estimates == () and r.insufficient is not None and "no OCV table" in r.insufficient


def test_yaml_table_in_both_row_forms(tmp_path: Path) -> None:
    path = tmp_path / "ocv.yaml"
    path.write_text("- [0, 2.5]\n- {soc_pct: 50, voltage: 3.28}\n- [100, 3.6]\n")
    t = load_ocv_table(path)
    assert t.rows() == [(0.0, 2.5), (50.0, 3.28), (100.0, 3.6)]
    assert t.soc_of(3.28) == pytest.approx(50.0) and t.soc_of(9.0) == 100.0


@pytest.mark.parametrize(
    ("name", "text", "line", "words"),
    [
        ("a.csv", "soc_pct,voltage\n0,2.5\n50,3.3\n40,3.4\n", 4, "not monotonic"),
        ("b.csv", "0,2.5\n\n50,3.3\n60,3.2\n", 4, "not monotonic"),
        ("c.csv", "0,2.5\n120,3.6\n", 2, "0..100"),
        ("d.csv", "0,2.5\n50;3.3\n", 2, "expected 'soc_pct,voltage'"),
        ("e.csv", "0,2.5\n50,x\n", 2, "not a number"),
        ("f.yaml", "- [0, 2.5]\n- [50, 3.3]\n- [50, 3.4]\n", 3, "not monotonic"),
        ("g.yaml", "- [0, 2.5]\n- {soc: 50, v: 3.3}\n", 2, "expected a row"),
        ("h.yaml", "- [0, 2.5]\n- [50, 3.3\n", 3, "YAML"),
    ],
)
def test_a_bad_table_file_is_an_error_naming_file_and_line(
    tmp_path: Path, name: str, text: str, line: int, words: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(OcvTableError) as e:
        load_ocv_table(path)
    assert f"{path}:{line}" in str(e.value) and words in str(e.value)


def test_a_table_of_one_row_or_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "one.csv").write_text("0,2.5\n")
    with pytest.raises(OcvTableError, match="at least two rows"):
        load_ocv_table(tmp_path / "one.csv")
    with pytest.raises(OcvTableError, match="cannot read"):
        load_ocv_table(tmp_path / "none.csv")


def test_assess_command_reports_partial_cycles_from_option_or_configuration(
    steep: tuple[dict[str, Any], list[Batch]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params, batches = steep
    db = tmp_path / "store.db"
    box = Outbox(db)
    for b in batches:
        b.created = int(b.ts[0])
        box.append([b])
    box.close()
    table = tmp_path / "lfp.yaml"
    table.write_text("".join(f"- [{s}, {v}]\n" for s, v in OCV_TABLE))
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    assert main(["assess", "--store", str(db), "--ocv-table", str(table), "--json", str(out), "--html", str(html)]) == 0
    [rack] = json.loads(out.read_text())["racks"]
    pc = rack["capacity"]["partial_cycles"]
    assert pc["ah"] == pytest.approx(params["usable_capacity_ah"], rel=0.05) and pc["estimates"] >= 5
    assert pc["ocv_table"] == str(table) and pc["insufficient"] is None
    assert re.search(r"partial cycles 2\d\d\.\d Ah \(\d+ pairs\)", capsys.readouterr().out)
    assert "capacity from partial cycles (OCV)" in html.read_text()
    # the same from the configuration's assess.ocv_table; none: insufficient, said so
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(f"site: {{name: t}}\nstore: {{path: {db}}}\nassess: {{ocv_table: {table}}}\n")
    assert main(["assess", "-c", str(cfg), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["racks"][0]["capacity"]["partial_cycles"]["ah"] == pytest.approx(pc["ah"])
    assert main(["assess", "--store", str(db), "--json", str(out)]) == 0
    none = json.loads(out.read_text())["racks"][0]["capacity"]["partial_cycles"]
    assert none["ah"] is None and "no OCV table" in none["insufficient"]
    # a bad table: exit 2, the file and line named
    table.write_text("- [0, 2.5]\n- [50, 2.4]\n")
    capsys.readouterr()
    assert main(["assess", "--store", str(db), "--ocv-table", str(table)]) == 2
    assert f"{table}:2: not monotonic" in capsys.readouterr().err


def test_live_assessment_publishes_after_each_rest_pair_with_a_table(
    steep: tuple[dict[str, Any], list[Batch]], sim_table: OcvTable
) -> None:
    params, batches = steep
    cfg = AssessConfig.model_validate({"enabled": True, "period": PERIOD, "ocv_table": sim_table.source,
                                       "nominal_capacity_ah": 280, "cutoff_voltage": 2.8, "full_voltage": 3.5,
                                       "taper_voltage": 3.45})  # fmt: skip
    la = LiveAssessment(cfg, table=sim_table)
    got: list[tuple[int, Assessment]] = []  # (time of the last sample fed, assessment)
    for b in batches:
        got += [(int(b.ts.max()), a) for a in la.feed([b])]
    partial = [(fed, a) for fed, a in got if a.method == "partial_cycles"]
    assert len(partial) >= 5  # each pair of rests, as the next rest ends (the last one is still under way)
    for fed, a in partial:
        assert a.capacity_ah == pytest.approx(params["usable_capacity_ah"], rel=0.05)
        assert a.end_ns <= fed <= a.end_ns + (CHUNK_STEPS + 2) * PERIOD * NS  # within a chunk of the rest's end
    samples = assessment_batch([a for _, a in partial]).samples()
    assert {s.quantity for s in samples} == {"assessed_capacity", "assessed_soh"}
    # without a table: the full discharges only
    plain = LiveAssessment(cfg.model_copy(update={"ocv_table": None}))
    assert all(a.method == "full_discharge" for b in batches for a in plain.feed([b]))


def test_the_daemon_runs_on_without_partial_cycles_when_the_configured_table_is_bad(tmp_path: Path) -> None:
    from gateway.assess.service import _table

    bad = tmp_path / "bad.csv"
    bad.write_text("0,2.5\n50,2.4\n")
    assert _table(bad) is None and _table(None) is None
    good = tmp_path / "good.csv"
    good.write_text("0,2.5\n100,3.6\n")
    t = _table(good)
    assert t is not None and t.rows() == [(0.0, 2.5), (100.0, 3.6)]


def test_missing_readings_within_a_rest_do_not_end_it(
    steep: tuple[dict[str, Any], list[Batch]], sim_table: OcvTable
) -> None:
    params, batches = steep
    holes = [b for k, b in enumerate(batches) if k % 7 != 3]  # a step in 7 without a sample: bridged, no break
    r = estimate(holes, sim_table)
    assert r.rest_points >= 6 and len(r.estimates) >= 5 and r.skipped == {}
    assert r.ah == pytest.approx(params["usable_capacity_ah"], rel=0.05)
