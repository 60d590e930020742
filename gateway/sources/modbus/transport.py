"""How a Modbus link reaches its devices: the settings of one TCP endpoint, TLS endpoint, RTU-over-TCP
converter or serial RTU bus, and the checking framer of each (`link.make_client` makes the client;
no client is imported here, so `validate` and the tools' command line load none).

`LinkSettings.of(cfg)` takes what the devices of one link share from the first one's configuration
(`checks` makes sure the others agree). The TLS context is made at each connect from the files, so a
missing or bad file is a failed connect (logged once, retried with backoff), never a crash; the
device's certificate and its name are checked unless `check_server_name: false`.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from gateway.config.base import credential_path, warn_if_exposed
from gateway.sources.modbus.config import DEFAULT_BAUDRATE, DEFAULT_PARITY, ModbusSourceConfig
from gateway.sources.modbus.framing import CheckedFramer, CheckedRtuFramer
from gateway.sources.modbus.rtu import char_time, silent_interval

RTU_TRANSPORTS = frozenset({"rtu", "rtu_over_tcp"})


@dataclass(frozen=True, slots=True)
class SerialLine:
    """The settings of a serial RTU line."""

    baudrate: int = DEFAULT_BAUDRATE
    parity: str = DEFAULT_PARITY
    stopbits: int = 1
    bytesize: int = 8
    frame_gap: float | None = None  # None: 3.5 characters at the baud rate

    @property
    def gap(self) -> float:
        """Seconds of silence before each request."""
        if self.frame_gap is not None:
            return self.frame_gap
        return silent_interval(self.baudrate, self.bytesize, self.parity, self.stopbits)

    def wire_time(self, nbytes: int) -> float:
        """Seconds `nbytes` take on the line."""
        return nbytes * char_time(self.baudrate, self.bytesize, self.parity, self.stopbits)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where a TLS link's certificates come from, and which name the device's must carry."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_credential: str | None = None
    server_name: str | None = None
    check_server_name: bool = True

    def context(self, base_dir: Path | None) -> ssl.SSLContext:
        """A client context that verifies the device's certificate (raises OSError or ssl.SSLError)."""

        def path(p: Path | None) -> str | None:
            if p is None:
                return None
            return str(p if p.is_absolute() or base_dir is None else base_dir / p)

        ctx = ssl.create_default_context(cafile=path(self.ca_file))  # verification on
        ctx.check_hostname = self.check_server_name
        if self.cert_file is not None:
            key = path(credential_path(self.key_file, self.key_credential))
            if self.key_file is not None and key is not None:
                warn_if_exposed(Path(key))
            ctx.load_cert_chain(path(self.cert_file) or "", key)
        return ctx


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """One link: its transport, where it goes, and its line or TLS settings."""

    transport: str
    host: str
    port: int  # TCP port; 0 for a serial port
    device: str = ""  # serial device of transport rtu
    line: SerialLine = SerialLine()
    tls: TlsFiles = TlsFiles()
    base_dir: Path | None = None  # relative TLS paths are from here (the configuration's directory)

    @classmethod
    def of(cls, cfg: ModbusSourceConfig, base_dir: Path | None = None) -> LinkSettings:
        line = SerialLine(
            cfg.baudrate or DEFAULT_BAUDRATE,
            cfg.parity or DEFAULT_PARITY,
            cfg.stopbits or 1,
            cfg.bytesize or 8,
            cfg.frame_gap,
        )
        tls = TlsFiles(
            cfg.ca_file,
            cfg.cert_file,
            cfg.key_file,
            cfg.key_credential,
            cfg.server_name,
            cfg.check_server_name is not False,
        )
        if cfg.transport == "rtu":
            return cls("rtu", "", 0, cfg.serial_port, line, base_dir=base_dir)
        return cls(cfg.transport, cfg.host or "", cfg.tcp_port, tls=tls, base_dir=base_dir)

    def moved(self, host: str, port: int) -> LinkSettings:
        """The same link toward another host and port (the demo's simulator on a free port)."""
        return replace(self, host=host, port=port)

    @property
    def label(self) -> str:
        return self.device if self.transport == "rtu" else f"{self.host}:{self.port}"

    @property
    def rtu(self) -> bool:
        return self.transport in RTU_TRANSPORTS

    @property
    def serial(self) -> bool:
        return self.transport == "rtu"


def checked_framer(settings: LinkSettings, on_discard: Callable[[int], None]) -> CheckedFramer | CheckedRtuFramer:
    """The framer that checks every reply of this link against its request (and guards what leaves)."""
    return CheckedRtuFramer(on_discard) if settings.rtu else CheckedFramer()
