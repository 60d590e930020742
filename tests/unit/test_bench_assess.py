"""The assess benchmark end to end on a short window: the simulated store made once and then taken
from the cache, `bms-gateway assess` run on it as a measured child, the rows against the targets."""

from __future__ import annotations

import json
from pathlib import Path

from bench.assess_bench import RACK, found, library, run, window
from bench.common import Options


def test_the_window_is_made_once_then_cached(tmp_path: Path) -> None:
    made = window(tmp_path, 0.05)
    assert made.made_s is not None and made.store.exists() and made.samples % 180 == 0 and made.samples >= 180 * 240
    p = json.loads(made.truth.read_text())["parameters"]
    assert p["rack"] == RACK and p["modules"] * p["cells_per_module"] == 240
    again = window(tmp_path, 0.05)
    assert again.made_s is None and again.store == made.store and again.samples == made.samples
    result = library(made.store, 273.0)  # the library path reads the same store
    assert result["racks"][0]["rack"] == RACK


def test_the_scenario_measures_the_assess_command(tmp_path: Path) -> None:
    rows = run(Options(runs=1, work=tmp_path, duration=180.0))
    by = {r.metric.split(",")[0]: r for r in rows}
    assert set(by) == {"wall s", "CPU s", "peak RSS MB"}
    assert by["wall s"].met is True and "bms-gateway assess" in by["wall s"].note
    assert by["peak RSS MB"].met is True and 20 < by["peak RSS MB"].gateway < 1024
    assert by["CPU s"].gateway > 0
    report = json.loads((tmp_path / "assess" / "assess.json").read_text())
    assert [r["rack"] for r in report["racks"]] == [RACK]
    assert "independent_ah" in found(tmp_path / "assess" / "assess.json")
