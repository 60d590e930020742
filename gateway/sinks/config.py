"""Configuration of the sinks: InfluxDB (v2 write API) and MQTT (the Sparkplug sink's is in its package)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from gateway import catalog
from gateway.config.base import SecretText, SinkBase, Strict

GLOB = frozenset("*?[")  # a deadband pattern with one of these is an fnmatch pattern
PERCENT = r"^\s*\d+(\.\d+)?\s*%\s*$"  # a deadband in percent of the last sent value: "1%", "0.5 %"
Deadband = Annotated[float, Field(ge=0)] | Annotated[str, Field(pattern=PERCENT)]


def _pattern(pattern: str) -> str:
    """A deadband's pattern; a quantity written out (no * ? [) must be one: a typo would never match."""
    parts = pattern.split("/")
    if not pattern.strip() or any(not part for part in parts):
        raise ValueError(f"empty pattern or pattern part in {pattern!r}")
    quantity = parts[1] if len(parts) > 1 else pattern
    if not GLOB & set(quantity) and not catalog.is_valid(quantity):
        raise ValueError(
            f"deadband {pattern!r}: unknown quantity {quantity!r}: expected a catalog name (see "
            "`bms-gateway catalog`), raw.<name>, alarm.<name>, warning.<name>, or a pattern with * ? ["
        )
    return pattern


Pattern = Annotated[str, AfterValidator(_pattern)]


class DeadbandRule(Strict):
    """A deadband with a heartbeat of its own."""

    deadband: Deadband = Field(
        description="Change that is sent: absolute in the quantity's unit (0.005), or percent of the last sent "
        "value ('1%'); 0 sends every change"
    )
    heartbeat: float | None = Field(None, gt=0, description="Seconds; defaults to the section's heartbeat")


class ReportByException(Strict):
    """Report by exception on the way to this sink: a sample of a key with a deadband is sent only when it
    changed by the deadband, its quality changed, or its key was last sent a heartbeat ago. The local
    store keeps every sample."""

    heartbeat: float = Field(300.0, gt=0, description="Seconds: a key with a deadband is sent at least this often")
    deadbands: dict[Pattern, Deadband | DeadbandRule] = Field(
        default_factory=dict,
        description="Pattern -> deadband. A pattern without '/' matches the quantity (cell_voltage, alarm.*); "
        "one with '/' matches <rack>/<quantity>[/<module>][/<cell>] (rack-01/cell_voltage/3/*). The first "
        "pattern that matches, in the order written, applies; keys that none matches are all sent",
    )
    max_keys: int = Field(200_000, ge=1, description="Keys remembered at most; keys past it are all sent (logged once)")


class UplinkSinkBase(SinkBase):
    """Fields of a sink toward an uplink (InfluxDB, MQTT): the delivery policy and report by exception."""

    report_by_exception: ReportByException | None = Field(
        None, description="Deadbands and a heartbeat per key on the way to this sink (off when absent)"
    )


class InfluxSinkConfig(UplinkSinkBase):
    """InfluxDB v2 write API (InfluxDB 2.x, 3.x, 1.8+ compatibility endpoint, VictoriaMetrics)."""

    type: Literal["influxdb"] = "influxdb"
    url: str = Field(description="Base URL, e.g. https://influx.example:8086")
    org: str = Field("", description="Organisation")
    bucket: str = Field("bms", description="Bucket (database/retention policy for 1.8)")
    token: SecretText | None = Field(None, description="API token inline (prefer token_file or token_credential)")
    token_file: Path | None = Field(None, description="File holding the API token")
    token_credential: str | None = Field(None, description="systemd credential name holding the token")
    ca_file: Path | None = Field(None, description="CA bundle to verify the server's certificate")
    verify_tls: bool = Field(True, description="Verify the server certificate (keep on)")
    precision: Literal["s", "ms", "us", "ns"] = Field("ms", description="Timestamp precision of writes")
    gzip: bool = Field(True, description="Compress writes with gzip")
    timeout: float = Field(10.0, gt=0, description="Seconds per write request")
    clock_guard: bool = Field(
        True, description="Tag points clock_step=<n> when the clock stepped back, so no stored point is overwritten"
    )


class MqttConnection(SinkBase):
    """How a sink reaches an MQTT broker (the MQTT and Sparkplug sinks): address, TLS and credentials."""

    host: str = Field(description="Broker host")
    port: int = Field(8883, ge=1, le=65535, description="Broker port (8883 for TLS, 1883 plain)")
    client_id: str | None = Field(None, description="Client id; defaults to bms-gateway-<site>-<sink name>")
    tls: bool = Field(True, description="Use TLS")
    ca_file: Path | None = Field(None, description="CA bundle to verify the broker")
    cert_file: Path | None = Field(None, description="Client certificate")
    key_file: Path | None = Field(None, description="Client key")
    key_credential: str | None = Field(None, description="systemd credential name holding the client key")
    username: str | None = Field(None, description="User name")
    password: SecretText | None = Field(None, description="Password inline (prefer password_file)")
    password_file: Path | None = Field(None, description="File holding the password")
    password_credential: str | None = Field(None, description="systemd credential name holding the password")
    keepalive: int = Field(30, ge=5, description="Keepalive seconds")
    timeout: float = Field(10.0, gt=0, description="Seconds to connect and to wait for the PUBACKs of one batch")


class MqttSinkConfig(MqttConnection, UplinkSinkBase):
    """MQTT broker; telemetry, retained state and availability under `<prefix>/<site>/...`."""

    type: Literal["mqtt"] = "mqtt"
    prefix: str = Field("bms", description="Topic prefix")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of telemetry")
    batch_max_age: float = Field(
        0.005,
        gt=0,
        description="Seconds a partial batch may wait (MQTT sends one message per stored batch anyway: this only "
        "groups the waits for PUBACKs)",
    )
    batch_max_samples: int = Field(
        20_000, ge=1, description="Most samples read for one write (their PUBACKs are awaited together)"
    )
    clean_session: bool = Field(
        True,
        description="true: the broker drops any session left under the client id (e.g. a stale subscription) "
        "at connect; false: a persistent session (a publisher gains nothing from it)",
    )
    retain_state: bool = Field(True, description="Publish the retained per-rack state topic")
    levels: list[Literal["rack", "module", "cell"]] = Field(
        ["rack", "module", "cell"],
        description="Quantity levels published in telemetry and state (e.g. [rack] on a slow uplink)",
        min_length=1,
    )
    ha_discovery: bool = Field(False, description="Publish Home Assistant MQTT discovery for rack-level quantities")
    ha_prefix: str = Field("homeassistant", description="Home Assistant discovery prefix")
