"""Where an assessment's margin and SoC-drift capacity come from: hard limits (a capacity test's, the alarm
rules', the options) get a margin scaled with the sample period unless `--margin-v` is given, the chemistry
defaults none; the report says where the margin came from, and which capacity the SoC drift counted with."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from gateway.assess.setup import Hints, Options, margin_for, rack_settings
from gateway.cli.main import main
from gateway.store.outbox import Outbox
from tests.assess_support import RACK, Synth

HARD = Hints(full_v=3.55, empty_v=2.8, limits_source="simulated source r: capacity_test charge_voltage/cutoff_voltage")


def test_hard_limits_get_a_margin_scaled_with_the_period() -> None:
    assert [margin_for(p) for p in (0.5, 1.0, 10.0, 60.0)] == pytest.approx([0.01, 0.01, 0.05, 0.1])
    s = rack_settings(Options(), HARD, 10.0)
    assert s.limits.margin_v == pytest.approx(0.05)
    assert s.margin_source == "5 mV per second of the 10 s period (hard limits)"
    # the options' limits are hard too
    s = rack_settings(Options(full_v=3.5, empty_v=2.9), None, 4.0)
    assert s.limits.margin_v == pytest.approx(0.02) and "hard limits" in s.margin_source


def test_the_option_wins_and_the_chemistry_defaults_get_none() -> None:
    s = rack_settings(Options(margin_v=0.0), HARD, 10.0)
    assert (s.limits.margin_v, s.margin_source) == (0.0, "option --margin-v")
    s = rack_settings(Options(), None, 10.0)
    assert s.limits.margin_v == 0.0 and s.margin_source.startswith("none")
    assert s.limits_source == "defaults for lfp"


def write_store(path: Path, s: Synth) -> Path:
    box = Outbox(path)
    for b in s.batches():
        b.created = int(b.ts[0])
        box.append([b])
    box.close()
    return path


def assess(*argv: str | Path) -> dict[str, Any]:
    out = Path(argv[argv.index("--json") + 1])
    with redirect_stdout(io.StringIO()):
        assert main(["assess", *map(str, argv)]) == 0
    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return doc


def test_the_report_says_where_the_margin_and_the_drift_capacity_come_from(tmp_path: Path) -> None:
    s = Synth().run(cycles=1)
    db = write_store(tmp_path / "s.db", s)
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(f"site: {{name: t}}\nstore: {{path: {db}}}\nsources:\n"
                   f"  - {{type: simulated, name: {RACK}, capacity_ah: 100, interval: 2,\n"
                   "     capacity_test: {charge_voltage: 3.5, cutoff_voltage: 2.95}}\n", encoding="utf-8")  # fmt: skip
    [r] = assess("-c", cfg, "--json", tmp_path / "r.json")["racks"]
    lim = r["settings"]["limits"]
    assert lim["margin_v"] == pytest.approx(0.01)
    assert lim["margin_source"] == "5 mV per second of the 2 s period (hard limits)"
    # the synthetic rack reports no full capacity: the count uses the nominal one, and says so
    assert r["soc_drift"]["capacity_source"] == "nominal" and r["soc_drift"]["capacity_ah"] == 100.0
    [r] = assess("-c", cfg, "--margin-v", "0.03", "--json", tmp_path / "r.json")["racks"]
    lim = r["settings"]["limits"]
    assert (lim["margin_v"], lim["margin_source"]) == (0.03, "option --margin-v")
    [r] = assess("--store", db, "--json", tmp_path / "r.json")["racks"]
    lim = r["settings"]["limits"]
    assert lim["margin_v"] == 0.0 and lim["margin_source"].startswith("none")
