"""Configuration loading: positions in errors, env overrides, secrets, schema, validate exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.cli.main import main
from gateway.config.base import credential_path, read_secret
from gateway.config.settings import load_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


GOOD = """\
site:
  name: s1
sources:
  - type: simulated
    name: rack-01
    interval: 0.5
"""


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, GOOD))
    cfg = loaded.config
    assert cfg.site.name == "s1"
    assert cfg.sources[0].type == "simulated"
    assert cfg.sources[0].rack_tag == "rack-01"
    assert cfg.store.commit_interval == 0.02
    assert cfg.http.host == "127.0.0.1"
    assert loaded.profiles_dir == tmp_path / "profiles"


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD)).config
    with pytest.raises(Exception, match="frozen"):
        cfg.site.name = "other"  # type: ignore[misc]


def test_unknown_key_names_file_line_col(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "    intervall: 2\n")
    [p] = problems(path)
    assert p.startswith(f"{path}:7:5: ")
    assert "sources.0.intervall" in p
    assert "unknown key" in p


def test_wrong_type_names_file_line_col(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("interval: 0.5", "interval: fast"))
    [p] = problems(path)
    assert p.startswith(f"{path}:6:5: ")
    assert "sources.0.interval" in p and "'fast'" in p


def test_yaml_syntax_error_names_file_line_col(tmp_path: Path) -> None:
    path = write(tmp_path, "site:\n  name: [unclosed\nsources: []\n")
    [p] = problems(path)
    assert p.startswith(f"{path}:3:")
    assert "YAML syntax error" in p


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "site:\n  name: a\n  name: b\n")
    [p] = problems(path)
    assert str(path) in p and "name" in p


def test_unknown_source_type_lists_the_choices(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  - type: profibus\n    name: x\n")
    [p] = problems(path)
    assert p.startswith(f"{path}:2:")
    assert "simulated" in p and "modbus" in p and "can" in p


def test_several_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "site:\n  name: s\n  colour: red\nsources:\n  - type: simulated\n    name: r1\n    modules: many\n",
    )
    found = problems(path)
    assert len(found) == 2
    assert any(":3:3:" in p and "colour" in p for p in found)
    assert any(":7:5:" in p and "modules" in p for p in found)


def test_duplicate_rack_and_source_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "sources:\n  - {type: simulated, name: a, rack: r1}\n  - {type: simulated, name: b, rack: r1}\n",
    )
    [p] = problems(path)
    assert "duplicate rack 'r1'" in p
    path = write(tmp_path, "sources:\n  - {type: simulated, name: a}\n  - {type: simulated, name: a}\n")
    [p] = problems(path)
    assert "duplicate source name 'a'" in p


def test_missing_profile_names_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "sources:\n  - type: modbus\n    name: r1\n    host: 127.0.0.1\n    profile: no-such-profile\n",
    )
    [p] = problems(path)
    assert p.startswith(f"{path}:5:")
    assert "profile 'no-such-profile' not found" in p


def test_profile_with_unknown_protocol_names_the_profile_file(tmp_path: Path) -> None:
    write(tmp_path, "protocol: carrier-pigeon\npoints: []\n", "profiles/odd.yaml")
    path = write(tmp_path, "sources:\n  - {type: modbus, name: r1, host: 127.0.0.1, profile: odd}\n")
    [p] = problems(path)
    assert p.startswith(f"{tmp_path / 'profiles' / 'odd.yaml'}:1:")
    assert "unknown protocol" in p


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = GOOD + "sinks:\n  mqtt:\n    type: mqtt\n    host: from-file\n    port: 8883\n"
    monkeypatch.setenv("BMS_GATEWAY__SINKS__MQTT__HOST", "from-env")
    monkeypatch.setenv("BMS_GATEWAY__LOGGING__LEVEL", "debug")
    cfg = load_config(write(tmp_path, text)).config
    mqtt = cfg.sinks["mqtt"]
    assert mqtt.type == "mqtt"
    assert mqtt.host == "from-env"
    assert mqtt.port == 8883  # the rest of the entry still comes from the file
    assert cfg.logging.level == "debug"


def test_secrets_from_file_and_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret-token\n")
    got = read_secret(None, secret, None)
    assert got is not None and got.get_secret_value() == "s3cret-token"
    assert "s3cret" not in repr(got) and "s3cret" not in str(got)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("pw")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    got = read_secret(None, None, "mqtt-password")
    assert got is not None and got.get_secret_value() == "pw"
    assert credential_path(None, "mqtt-password") == creds / "mqtt-password"
    assert read_secret(SecretStr("inline"), None, None) == SecretStr("inline")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is unset"):
        read_secret(None, None, "mqtt-password")
    with pytest.raises(ConfigError, match="cannot read secret file") as info:
        read_secret(None, tmp_path / "absent", None)
    assert "s3cret" not in str(info.value)


def test_inline_secret_is_not_printed_in_the_config_repr(tmp_path: Path) -> None:
    text = GOOD + "sinks:\n  influx:\n    type: influxdb\n    url: https://x:8086\n    token: hunter2hunter2\n"
    cfg = load_config(write(tmp_path, text)).config
    assert "hunter2" not in repr(cfg)
    assert "hunter2" not in cfg.model_dump_json()


def test_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, GOOD)
    assert main(["validate", "-c", str(good)]) == 0
    assert "valid" in capsys.readouterr().out
    bad = write(tmp_path, GOOD + "    intervall: 2\n", "bad.yaml")
    assert main(["validate", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:7:5:" in err


def test_schema_has_descriptions_and_source_types(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    text = json.dumps(schema)
    assert "Unique name of this source" in text
    for kind in ("SimulatedSourceConfig", "ModbusSourceConfig", "CanSourceConfig"):
        assert kind in schema["$defs"]
    assert schema["additionalProperties"] is False


EXAMPLES = sorted((ROOT / "config").glob("**/*.yaml"))
EXAMPLES = [p for p in EXAMPLES if "profiles" not in p.parts and "grafana" not in p.parts]


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_every_example_config_validates(path: Path) -> None:
    # A subprocess, as a user runs it: exit 0 and no hardware touched (validate opens no connection).
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_there_are_example_configs() -> None:
    assert any(p.name == "gateway.yaml" for p in EXAMPLES)


def test_missing_key_inside_a_union_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  - type: modbus\n    name: r1\n    host: 127.0.0.1\n")
    [p] = problems(path)
    assert p.startswith(f"{path}:2:")
    assert "sources.0.profile: required key is missing" in p


def test_an_empty_configuration_is_an_error_naming_the_file(tmp_path: Path) -> None:
    for text in ("", "# only a comment\n", "{}\n", "---\n"):
        path = write(tmp_path, text)
        [p] = problems(path)
        assert p.startswith(f"{path}: empty configuration: expected at least `site:`"), p
    assert main(["validate", "-c", str(path)]) == 2


def test_the_embedded_demo_configuration_is_valid() -> None:
    from gateway.cli.demo import demo_config_path

    assert load_config(demo_config_path()).config.site.name == "demo"


STAGES = """\
site:
  name: "bad name"
sources:
  - {type: modbus, name: mb-1, rack: rack-a, host: 127.0.0.1, profile: misnamed, intervall: 2}
  - {type: modbus, name: mb-2, host: 127.0.0.1, unit_id: 2, profile: overlapping}
  - {type: can, name: can-1, profile: dbc-missing, interface: virtual, channel: c}
  - {type: simulated, name: sim}
  - {type: simulated, name: sim, rack: sim-2}
sinks:
  mqtt: {type: mqtt, host: broker, port: many}
store:
  max_bytes: 10
alarms:
  rules:
    - {id: hot, kind: threshold, quantity: cell_temperature, high: 50, racks: [rack-a, mb-2]}
  commands: {enabled: true}
"""


def test_validate_reports_every_stage_at_once_without_cascades(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Errors of every stage in one file: YAML model (a site key, a source key, a sink key, a section),
    # profiles (a quantity), read plans (overlapping registers), DBC files (missing), cross-references
    # (a duplicate name). One run shows them all.
    write(tmp_path, "protocol: modbus\npoints:\n  - {quantity: cell_volts, address: 0}\n", "profiles/misnamed.yaml")
    write(
        tmp_path,
        "protocol: modbus\npoints:\n  - {quantity: soc, address: 0}\n  - {quantity: soh, address: 0}\n",
        "profiles/overlapping.yaml",
    )
    write(
        tmp_path,
        "protocol: can\ndbc: absent.dbc\npoints:\n  - {signal: SoC, quantity: soc}\n",
        "profiles/dbc-missing.yaml",
    )
    path = write(tmp_path, STAGES)
    found = problems(path)
    text = "\n".join(found)
    expected = [
        (f"{path}:2:3: site.name:", "pattern"),
        (f"{path}:4:", "sources.0.intervall: unknown key"),
        (f"{tmp_path / 'profiles' / 'misnamed.yaml'}:3:", "cell_volts"),
        (f"{tmp_path / 'profiles' / 'overlapping.yaml'}:", "soh"),
        (f"{tmp_path / 'profiles' / 'dbc-missing.yaml'}:2:", f"not found: searched {tmp_path / '..' / 'dbc'}"),
        (f"{path}:8:", "duplicate source name 'sim'"),
        (f"{path}:10:", "sinks.mqtt.port"),
        (f"{path}:12:", "store.max_bytes"),
    ]
    for where, what in expected:
        assert any(p.startswith(where) and what in p for p in found), f"{where} {what} missing in:\n{text}"
    # Nothing that only follows from another problem: the rule's racks and the commands' MQTT sink
    # are entries with errors of their own, not missing ones.
    assert "no source has rack" not in text
    assert "no MQTT sink" not in text
    assert "is not a Modbus profile" not in text and "is not a CAN profile" not in text
    assert len(found) == len(expected), text
    assert main(["validate", "-c", str(path)]) == 2
    assert capsys.readouterr().err.count("error: ") == len(expected)
