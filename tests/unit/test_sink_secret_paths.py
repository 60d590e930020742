"""Secret files of the sinks are relative to the configuration file, like every other path in it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import SinkError
from gateway.sinks.config import InfluxSinkConfig, MqttSinkConfig
from gateway.sinks.influx.sink import InfluxSink
from gateway.sinks.mqtt.sink import MqttSink


def test_influx_token_file_is_read_relative_to_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "influx.token").write_text("tok-relative\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the config's directory
    cfg = InfluxSinkConfig(url="http://127.0.0.1:9", token_file=Path("secrets/influx.token"))
    client = InfluxSink("influx", cfg, "s", tmp_path)._new_client(gzip=False)
    assert client.token == "tok-relative"
    client.close()
    with pytest.raises(SinkError, match="cannot read secret file"):
        InfluxSink("influx", cfg, "s", elsewhere)._new_client(gzip=False)


async def test_mqtt_password_file_is_read_relative_to_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mqtt.password").write_text("pw-relative\n")
    monkeypatch.chdir(os.path.dirname(tmp_path))
    cfg = MqttSinkConfig(host="127.0.0.1", tls=False, username="u", password_file=Path("mqtt.password"))
    client = MqttSink("mqtt", cfg, "s", tmp_path)._make_client()
    assert client._client._password == b"pw-relative"  # paho keeps it as bytes
