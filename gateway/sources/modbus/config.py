"""Configuration of a Modbus source instance (`type: modbus`): one unit id on a TCP endpoint, an RTU
serial bus, an RTU-over-TCP converter or a Modbus/TCP Security (TLS) endpoint.

A key that belongs to another transport (a serial setting on a TCP source, `host` on a serial one, a
TLS file without TLS) is an error at its own line: the field validators below run only for keys that
are given, and `transport` is declared before them, so each sees the transport it belongs to.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.config.base import ReconnectingSource

Transport = Literal["tcp", "rtu", "rtu_over_tcp", "tls"]
SERIAL_KEYS = ("baudrate", "parity", "stopbits", "bytesize", "frame_gap")
TLS_KEYS = ("ca_file", "cert_file", "key_file", "key_credential", "server_name", "check_server_name")
DEFAULT_PORTS: dict[str, int] = {"tcp": 502, "rtu_over_tcp": 502, "tls": 802}  # 802: Modbus/TCP Security
DEFAULT_BAUDRATE = 19200  # the Modbus serial line's default: 19200 baud, 8 data bits, even parity, 1 stop bit
DEFAULT_PARITY = "E"


class ModbusSourceConfig(ReconnectingSource):
    """One Modbus device (unit id); devices on the same endpoint or serial port share one link."""

    RENAMED: ClassVar[Mapping[str, str]] = {"backoff_initial": "reconnect_initial", "backoff_max": "reconnect_max"}

    type: Literal["modbus"] = "modbus"
    profile: str = Field(description="Profile name (file stem under the profiles directory)")
    transport: Transport = Field(
        "tcp",
        description="tcp (Modbus TCP), rtu (a serial port), rtu_over_tcp (RTU frames over a TCP socket: "
        "RS485-to-Ethernet converters), tls (Modbus/TCP Security: Modbus TCP over TLS)",
    )
    host: str | None = Field(None, description="Host name or IP address of the endpoint (not with transport rtu)")
    port: int | str | None = Field(
        None,
        description="TCP port (default 502; 802 with tls), or with transport rtu the serial device, e.g. /dev/ttyUSB0",
    )
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit id (slave id) of the device")
    interval: float | None = Field(None, gt=0, description="Poll interval in seconds; overrides the profile's")
    timeout: float = Field(
        1.0, gt=0, description="Seconds to wait for a response (rtu: plus the frames' time on the wire)"
    )
    retries: int = Field(1, ge=0, le=10, description="Retries of a failed request within one cycle")
    offline_after: int = Field(1, ge=1, description="Failed cycles in a row before the device is marked offline")
    pause_after_connect: float = Field(
        0.0, ge=0, description="Workaround: seconds to wait after connecting before the first request"
    )
    pause_between_requests: float = Field(
        0.0, ge=0, description="Workaround: seconds between two requests on the endpoint"
    )
    close_after_cycle: bool = Field(False, description="Workaround: close the connection after every poll cycle")
    one_request_per_point: bool = Field(
        False, description="Workaround: read every point on its own (devices that refuse block reads)"
    )
    # transport rtu: the serial line (every device on one port must give the same settings)
    baudrate: int | None = Field(
        None, ge=300, le=4_000_000, description="rtu: bits per second, 300..4000000 (default 19200)"
    )
    parity: Literal["N", "E", "O"] | None = Field(None, description="rtu: parity, N, E or O (default E)")
    stopbits: Literal[1, 2] | None = Field(None, description="rtu: stop bits, 1 or 2 (default 1)")
    bytesize: Literal[7, 8] | None = Field(None, description="rtu: data bits, 7 or 8 (default 8)")
    frame_gap: float | None = Field(
        None,
        ge=0,
        le=1.0,
        description="rtu: seconds of silence kept on the bus before each request, at most 1 (default 3.5 "
        "characters at the baud rate, at least 1.75 ms)",
    )
    # transport tls: certificates from files (relative paths from the configuration's directory)
    ca_file: Path | None = Field(None, description="tls: CA bundle that signed the device's certificate")
    cert_file: Path | None = Field(None, description="tls: the gateway's client certificate")
    key_file: Path | None = Field(None, description="tls: the key of the client certificate")
    key_credential: str | None = Field(None, description="tls: systemd credential name holding the client key")
    server_name: str | None = Field(
        None, description="tls: the name the device's certificate must carry (default: host)"
    )
    check_server_name: bool | None = Field(
        None, description="tls: check the certificate's name against server_name (default true)"
    )

    @field_validator("host")
    @classmethod
    def _host_on_network(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("transport") == "rtu":
            raise ValueError("transport rtu reads a serial port: give its device as port (e.g. /dev/ttyUSB0), no host")
        return value

    @field_validator("port")
    @classmethod
    def _port_of_transport(cls, value: int | str | None, info: ValidationInfo) -> int | str | None:
        transport = info.data.get("transport")
        if transport == "rtu":
            if not isinstance(value, str) or not value.strip():
                raise ValueError("with transport rtu, port is the serial device, e.g. /dev/ttyUSB0")
        elif transport is not None:
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if not isinstance(value, int) or not 1 <= value <= 65535:
                raise ValueError(f"with transport {transport}, port is a TCP port 1..65535")
        return value

    @field_validator(*SERIAL_KEYS)
    @classmethod
    def _serial_only(cls, value: Any, info: ValidationInfo) -> Any:
        transport = info.data.get("transport")
        if transport is not None and transport != "rtu":
            raise ValueError(f"a serial line setting: only with transport rtu (this source's transport is {transport})")
        return value

    @field_validator(*TLS_KEYS)
    @classmethod
    def _tls_only(cls, value: Any, info: ValidationInfo) -> Any:
        transport = info.data.get("transport")
        if transport is not None and transport != "tls":
            raise ValueError(f"a TLS setting: only with transport tls (this source's transport is {transport})")
        return value

    @model_validator(mode="after")
    def _endpoint_given(self) -> ModbusSourceConfig:
        if self.transport == "rtu" and self.port is None:
            raise ValueError("port: the serial device is required with transport rtu (e.g. port: /dev/ttyUSB0)")
        if self.transport != "rtu" and not self.host:
            raise ValueError(f"host: required with transport {self.transport}")
        return self

    # -- effective settings ---------------------------------------------------------------------

    @property
    def tcp_port(self) -> int:
        """The TCP port of a network transport (its default when not given)."""
        return self.port if isinstance(self.port, int) else DEFAULT_PORTS.get(self.transport, 502)

    @property
    def serial_port(self) -> str:
        """The serial device of transport rtu."""
        return str(self.port)

    @property
    def bus(self) -> tuple[str, str, int]:
        """What devices share one link by: (transport, host or serial device, TCP port or 0)."""
        if self.transport == "rtu":
            return ("rtu", self.serial_port, 0)
        return (self.transport, self.host or "", self.tcp_port)

    @property
    def endpoint_label(self) -> str:
        """The link's name in logs and metrics: host:port, or the serial device."""
        return self.serial_port if self.transport == "rtu" else f"{self.host}:{self.tcp_port}"
