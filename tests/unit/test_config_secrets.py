"""Secrets in the configuration: never shown whatever their type, only sent over TLS (or to loopback, or
with `allow_insecure_transport`), secret files owner-only (warned, refused by `validate --secrets`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from gateway.config import base as configbase
from gateway.config.base import read_secret
from gateway.config.redaction import is_secret_key
from gateway.config.secretcheck import exposed_secrets
from gateway.config.settings import load_config
from gateway.errors import ConfigError
from gateway.sinks.transport import is_loopback

NUMERIC = """site: {name: t}
sinks:
  influx:
    type: influxdb
    url: https://influx.example:8086
    token: 12345678
  mqtt:
    type: mqtt
    host: broker.example
    username: gw
    password: 87654321
"""


def write(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(text)
    return cfg


def problems_of(cfg: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    return [str(p) for p in info.value.problems]


def test_an_unquoted_numeric_secret_is_refused_without_showing_it(tmp_path: Path) -> None:
    cfg = write(tmp_path, NUMERIC)
    found = problems_of(cfg)
    text = "\n".join(found)
    assert "12345678" not in text and "87654321" not in text
    assert any(p.startswith(f"{cfg}:6:5: sinks.influx.token: a secret must be text: put it in quotes") for p in found)
    assert any(p.startswith(f"{cfg}:11:5: sinks.mqtt.password: a secret must be text") for p in found)
    assert "(got <redacted>: a secret)" in text


def test_a_secret_of_any_type_under_a_secret_key_is_not_echoed(tmp_path: Path) -> None:
    # A list where a string belongs: pydantic's own message, the value still not shown.
    cfg = write(tmp_path, "site: {name: t}\nhttp: {password: [hunter2]}\n")
    text = "\n".join(problems_of(cfg))
    assert "http.password" in text and "hunter2" not in text


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("token", True),
        ("password", True),
        ("api_key", True),
        ("key", True),
        ("secret", True),
        ("password_credential", True),
        ("Authorization", True),
        ("public_key", False),
        ("key_id", False),
        ("token_file", False),
        ("password_file", False),
        ("username", False),
        ("host", False),
        ("keepalive", False),
    ],
)
def test_secret_keys_by_name(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("LOCALHOST.", True),
        ("broker.example", False),
        ("10.0.0.5", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


INSECURE = """site: {name: t}
sinks:
  mqtt:
    type: mqtt
    host: broker.example
    port: 1883
    tls: false
    username: gw
    password_file: mqtt-password
  influx:
    type: influxdb
    url: http://influx.example:8086
    token_credential: influx-token
  local:
    type: mqtt
    host: 127.0.0.1
    tls: false
    password: "local-only"
  plain:
    type: mqtt
    host: broker.example
    tls: false
    username: anonymous-ish
"""


def test_credentials_without_tls_to_a_remote_host_are_refused_at_their_key(tmp_path: Path) -> None:
    cfg = write(tmp_path, INSECURE)
    found = problems_of(cfg)
    assert len(found) == 2, found
    assert found[0].startswith(f"{cfg}:9:5: sinks.mqtt.password_file: a password over plain MQTT (tls: false)")
    assert found[1].startswith(f"{cfg}:13:5: sinks.influx.token_credential: a token over http://")
    assert all("allow_insecure_transport: true" in p for p in found)


def test_allow_insecure_transport_accepts_them(tmp_path: Path) -> None:
    text = INSECURE.replace(
        "    password_file: mqtt-password\n", "    password_file: mqtt-password\n    allow_insecure_transport: true\n"
    )
    text = text.replace(
        "    token_credential: influx-token\n",
        "    token_credential: influx-token\n    allow_insecure_transport: true\n",
    )
    loaded = load_config(write(tmp_path, text))
    assert loaded.config.sinks["mqtt"].allow_insecure_transport


def test_a_password_in_an_http_url_is_refused_and_https_is_fine(tmp_path: Path) -> None:
    base = 'site: {name: t}\nsinks:\n  influx: {type: influxdb, url: URL, token: "t0k3n"}\n'
    found = problems_of(write(tmp_path, base.replace("URL", "http://user:pw@influx.example:8086")))
    assert [p.split(": ", 2)[1] for p in found] == ["sinks.influx.token", "sinks.influx.url"]
    assert "pw@" not in "\n".join(found)
    load_config(write(tmp_path, base.replace("URL", "https://influx.example:8086")))
    load_config(write(tmp_path, base.replace("URL", "http://localhost:8086")))


SECRET_FILES = """site: {name: t}
sinks:
  mqtt:
    type: mqtt
    host: broker.example
    username: gw
    password_file: mqtt-password
    ca_file: ca.pem
"""


def test_a_secret_file_open_to_group_or_others_is_warned_and_refused_with_secrets(tmp_path: Path) -> None:
    cfg = write(tmp_path, SECRET_FILES)
    (tmp_path / "mqtt-password").write_text("pw\n")
    (tmp_path / "ca.pem").write_text("not secret\n")
    os.chmod(tmp_path / "mqtt-password", 0o666)
    os.chmod(tmp_path / "ca.pem", 0o644)  # public: never reported
    found = exposed_secrets(load_config(cfg))
    assert found == [
        f"sinks.mqtt.password_file: {tmp_path / 'mqtt-password'}: secret file not owner-only, mode 0666 gives "
        f"group and others access: make it owner-only (chmod 600 {tmp_path / 'mqtt-password'})"
    ]

    def validate(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "gateway", "validate", "-c", str(cfg), *extra]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    plain = validate()
    assert plain.returncode == 0, plain.stderr
    assert f"{cfg}: warning: sinks.mqtt.password_file: {tmp_path / 'mqtt-password'}: secret file not owner-only" in (
        plain.stderr
    )
    strict = validate("--secrets")
    assert strict.returncode == 2
    assert f"{cfg}: error: sinks.mqtt.password_file:" in strict.stderr and "mode 0666" in strict.stderr
    os.chmod(tmp_path / "mqtt-password", 0o600)
    assert exposed_secrets(load_config(cfg)) == []
    fixed = validate("--secrets")
    assert fixed.returncode == 0, fixed.stderr
    assert "owner-only" not in fixed.stderr


def test_reading_a_secret_file_open_to_others_warns_once_per_change(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t\n")
    os.chmod(secret, 0o644)
    configbase._warned.clear()
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            value = read_secret(None, secret, None)
            assert value is not None and value.get_secret_value() == "s3cr3t"
        os.chmod(secret, 0o640)
        read_secret(None, secret, None)
        os.chmod(secret, 0o600)
        read_secret(None, secret, None)
        os.chmod(secret, 0o604)
        read_secret(None, secret, None)
    warnings = [e for e in logs if e["event"] == "secret file is not owner-only"]
    assert [w["problem"].split(" gives")[0] for w in warnings] == ["mode 0644", "mode 0640", "mode 0604"]
    assert all(w["log_level"] == "warning" and w["file"] == str(secret) for w in warnings)
    assert "s3cr3t" not in repr(logs)
