"""`validate` names the secret and certificate files a configuration needs and this machine lacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gateway.config.secretcheck import missing_secrets, secret_refs
from gateway.config.settings import load_config

CONFIG = """site: {name: t}
sources:
  - {type: simulated, name: r1}
store: {path: store.db}
http: {password_file: secrets/http-password}
sinks:
  influx:
    type: influxdb
    url: https://influx.example:8086
    token_credential: influx-token
    ca_file: /nonexistent/ca.pem
  mqtt:
    type: mqtt
    host: broker.example
    password_file: mqtt-password
"""


def write(tmp_path: Path) -> Path:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(CONFIG)
    return cfg


def test_refs_are_found_and_resolved_against_the_config(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path))
    refs = {r.key: r for r in secret_refs(loaded, {"CREDENTIALS_DIRECTORY": "/run/creds"})}
    assert refs["http.password_file"].path == tmp_path / "secrets" / "http-password"
    assert refs["sinks.influx.token_credential"].path == Path("/run/creds/influx-token")
    assert refs["sinks.influx.ca_file"].path == Path("/nonexistent/ca.pem")
    assert refs["sinks.mqtt.password_file"].path == tmp_path / "mqtt-password"
    assert set(refs) == {"http.password_file", "sinks.influx.token_credential", "sinks.influx.ca_file",
                         "sinks.mqtt.password_file"}  # fmt: skip


def test_missing_ones_are_reported_and_present_ones_are_not(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path))
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "http-password").write_text("x")
    msgs = missing_secrets(loaded, {})
    assert not any(m.startswith("http.password_file") for m in msgs)
    assert any(m.startswith("sinks.mqtt.password_file") and "does not exist" in m for m in msgs)
    assert any(m.startswith("sinks.influx.ca_file") for m in msgs)
    assert any(m.startswith("sinks.influx.token_credential") and "not checked" in m for m in msgs)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "influx-token").write_text("t")
    msgs = missing_secrets(loaded, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert not any(m.startswith("sinks.influx.token_credential") for m in msgs)


def validate(cfg: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    argv = [sys.executable, "-m", "gateway", "validate", "-c", str(cfg), *extra]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def test_validate_warns_and_validate_secrets_fails(tmp_path: Path) -> None:
    cfg = write(tmp_path)
    plain = validate(cfg)
    assert plain.returncode == 0, plain.stderr
    assert "warning: sinks.mqtt.password_file" in plain.stderr and "valid" in plain.stdout
    strict = validate(cfg, "--secrets")
    assert strict.returncode == 2
    assert "error: sinks.influx.ca_file: /nonexistent/ca.pem does not exist" in strict.stderr
    assert "note: sinks.influx.token_credential" in strict.stderr
