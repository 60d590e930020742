"""Alarm configuration: defaults, overrides, rule files; every mistake named at file:line:col by `validate`."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.alarms.ruleset import build_ruleset, defaults_path, load_rule_file
from gateway.cli.main import main
from gateway.config.settings import load_config
from gateway.errors import ConfigError

HEAD = """\
site: {name: s1}
sources:
  - {type: simulated, name: rack-01}
"""


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def test_shipped_defaults_load_and_cover_the_issue() -> None:
    rules, _ = load_rule_file(defaults_path("lithium-ion"))
    kinds = {r.kind for r in rules}
    assert kinds == {"threshold", "limit", "rate", "spread", "disagreement", "state", "bms_bits", "comm_loss",
                     "stale", "quality"}  # fmt: skip
    ids = {r.id for r in rules}
    assert {"cell_over_voltage", "cell_under_voltage", "cell_over_temperature", "insulation_low", "estop",
            "contactor_positive_open", "comm_loss", "stale", "charge_over_current"} <= ids  # fmt: skip


def test_overrides_and_site_rules(tmp_path: Path) -> None:
    cfg = write(tmp_path, HEAD + """\
alarms:
  overrides:
    cell_over_voltage: {high: 4.2, deadband: 0.1}
    contactor_positive_open: {enabled: false}
  rules:
    - {id: soc_low, kind: threshold, quantity: soc, low: 5, severity: minor}
    - {id: stale, kind: stale, max_age: 30}
""")  # fmt: skip
    rs = build_ruleset(load_config(cfg))
    by = {r.id: r for r in rs.rules}
    assert by["cell_over_voltage"].high == 4.2 and by["cell_over_voltage"].deadband == 0.1  # type: ignore[union-attr]
    assert by["cell_over_voltage"].on_delay == 1  # untouched fields keep the default
    assert not by["contactor_positive_open"].enabled
    assert by["stale"].max_age == 30  # type: ignore[union-attr]
    assert "soc_low" in by


def test_no_defaults(tmp_path: Path) -> None:
    cfg = write(tmp_path, HEAD + "alarms:\n  defaults: null\n")
    assert build_ruleset(load_config(cfg)).rules == ()


def test_unknown_quantity_in_a_site_rule_names_the_place(tmp_path: Path) -> None:
    cfg = write(tmp_path, HEAD + """\
alarms:
  rules:
    - id: x
      kind: threshold
      quantity: cell_volts
      high: 3
""")  # fmt: skip
    (p,) = problems(cfg)
    assert p.startswith(f"{cfg}:8:7: alarms.rules.0.quantity: "), p
    assert "unknown quantity 'cell_volts'" in p


def test_typo_in_an_override_names_the_place(tmp_path: Path) -> None:
    cfg = write(tmp_path, HEAD + """\
alarms:
  overrides:
    cell_over_voltage:
      hihg: 3.7
    cell_under_voltge: {low: 2.4}
""")  # fmt: skip
    got = problems(cfg)
    assert f"{cfg}:7:7: alarms.overrides.cell_over_voltage.hihg: unknown key" in "\n".join(got), got
    assert any(
        p.startswith(f"{cfg}:8:") and "unknown rule 'cell_under_voltge': did you mean cell_under_voltage" in p
        for p in got
    ), got


def test_bad_override_value_names_the_place(tmp_path: Path) -> None:
    cfg = write(tmp_path, HEAD + "alarms:\n  overrides:\n    cell_over_voltage: {high: lots}\n")
    (p,) = problems(cfg)
    assert p.startswith(f"{cfg}:6:25: alarms.overrides.cell_over_voltage.high: ") and "'lots'" in p, p


def test_a_rule_file_problem_names_that_file(tmp_path: Path) -> None:
    write(tmp_path, """\
rules:
  - id: a
    kind: state
    quantity: interlock_estop
    unsafe: [1]
  - id: b
    kind: spread
    quantity: cell_voltage
    hgh: 0.1
  - id: a
    kind: comm_loss
""", "site-rules.yaml")  # fmt: skip
    cfg = write(tmp_path, HEAD + "alarms:\n  rules_files: [site-rules.yaml, missing.yaml]\n")
    got = problems(cfg)
    rules_file = tmp_path / "site-rules.yaml"
    assert any(p.startswith(f"{rules_file}:9:5: rules.1.hgh: unknown key") for p in got), got
    assert any(p.startswith(f"{rules_file}:6:5: rules.1.high: required key is missing") for p in got), got
    assert any(p.startswith(f"{cfg}:5:34:") and "rule file not found" in p for p in got), got


def test_duplicate_ids_in_a_rule_file(tmp_path: Path) -> None:
    f = write(tmp_path, "rules:\n  - {id: a, kind: comm_loss}\n  - {id: a, kind: comm_loss}\n", "r.yaml")
    with pytest.raises(ConfigError) as info:
        load_rule_file(f)
    assert str(info.value.problems[0]).startswith(f"{f}:3:6: duplicate rule id 'a'")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{id: a, kind: threshold, quantity: soc}", "exactly one of `high` or `low`"),
        ("{id: a, kind: threshold, quantity: soc, high: 1, low: 0}", "exactly one of `high` or `low`"),
        ("{id: a, kind: state, quantity: breaker}", "exactly one of `unsafe` or `safe`"),
        ("{id: a, kind: rate, quantity: soc}", "needs `rise`, `fall` or both"),
        ("{id: a, kind: disagreement, quantity: soc, versus: coulomb_soc}", "needs `tolerance` or `tolerance_pct`"),
        ("{id: a, kind: disagreement, quantity: soc, versus: sum:cells, tolerance: 1}", "unknown quantity 'sum:cells'"),
        ("{id: a, kind: comm_loss, message: 'lost {valeu}'}", "unknown field(s) ['valeu']"),
        ("{id: a, kind: thresold, quantity: soc, high: 1}", "does not match any of the expected tags"),
        ("{id: a, kind: comm_loss, severity: fatal}", "'critical', 'major', 'minor' or 'warning'"),
    ],
)
def test_rule_mistakes(tmp_path: Path, rule: str, message: str) -> None:
    cfg = write(tmp_path, HEAD + f"alarms:\n  rules:\n    - {rule}\n")
    got = problems(cfg)
    assert any(message in p and p.startswith(f"{cfg}:6:") for p in got), got


def test_commands_need_an_mqtt_sink(tmp_path: Path) -> None:
    cfg = write(tmp_path, HEAD + "alarms:\n  commands: {enabled: true}\n")
    (p,) = problems(cfg)
    assert p.startswith(f"{cfg}:5:") and "no MQTT sink is configured" in p
    cfg = write(tmp_path, HEAD + """\
sinks:
  m1: {type: mqtt, host: localhost}
alarms:
  commands: {enabled: true, mqtt_sink: m2}
""")  # fmt: skip
    (p,) = problems(cfg)
    assert "mqtt_sink 'm2' is no MQTT sink" in p


def test_validate_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, HEAD + "alarms:\n  overrides:\n    stale: {max_age: 20}\n")
    assert main(["validate", "-c", str(good)]) == 0
    bad = write(tmp_path, HEAD + "alarms:\n  rules:\n    - {id: x, kind: threshold, quantity: cel_voltage, high: 3}\n")
    assert main(["validate", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:6:" in err and "unknown quantity 'cel_voltage'" in err


def test_rules_cli_prints_the_effective_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, HEAD + "alarms:\n  overrides:\n    cell_over_voltage: {high: 3.7}\n")
    assert main(["alarms", "rules", "-c", str(cfg), "-v"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("cell_over_voltage"))
    assert '"high": 3.7' in line and "critical" in line
    assert "overridden at" in out


def test_rule_file_schema(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["alarms", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "bms-gateway alarm rule file"
    kinds = {d["properties"]["kind"]["const"] for d in schema["$defs"].values() if "kind" in d.get("properties", {})}
    assert {"threshold", "spread", "disagreement", "bms_bits"} <= kinds


def test_command_topic_needs_one_rack_level(tmp_path: Path) -> None:
    cfg = write(tmp_path, HEAD + """\
sinks:
  m: {type: mqtt, host: localhost}
alarms:
  commands: {enabled: true, topic: "site/#"}
""")  # fmt: skip
    (p,) = problems(cfg)
    assert p.startswith(f"{cfg}:7:") and "exactly one `+` level" in p
