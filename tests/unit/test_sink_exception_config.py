"""The report-by-exception section as written by hand: a deadband whose quantity is misspelt would never
match a key (every sample sent, the uplink's cost unchanged, nothing said), so it is an error at its
line; patterns and the catalog's families stay allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config.settings import load_config
from gateway.errors import ConfigError
from gateway.sinks.config import ReportByException

SITE = """\
site:
  name: s1
sources:
  - {type: simulated, name: rack-01}
sinks:
  up:
    type: mqtt
    host: 127.0.0.1
    tls: false
    report_by_exception:
      heartbeat: 300
      deadbands:
        soc: 1%
        cell_votage: 0.005
"""


@pytest.mark.parametrize(
    "pattern",
    ["cell_voltage", "alarm.*", "raw.fan_level", "warning.cell_overvoltage", "cell_*", "*", "rack-0[1-4]/soc",
     "rack-01/cell_voltage/3/*", "*/soc", "rack-01/*/1"],
)  # fmt: skip
def test_catalog_names_families_and_patterns_are_accepted(pattern: str) -> None:
    assert pattern in ReportByException.model_validate({"deadbands": {pattern: 0.005}}).deadbands


@pytest.mark.parametrize("pattern", ["cell_votage", "SOC", "rack-01/cell_votage", "rack-01/socc/1/2", "alarm."])
def test_a_misspelt_quantity_is_refused(pattern: str) -> None:
    with pytest.raises(ValidationError, match="unknown quantity"):
        ReportByException.model_validate({"deadbands": {pattern: 0.005}})


def test_the_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(SITE, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:14:9: sinks.up.report_by_exception.deadbands.cell_votage")
    assert "unknown quantity 'cell_votage'" in problems[0]
    assert "secret" not in problems[0]  # pydantic's "[key]" in the location is no key named "key"
