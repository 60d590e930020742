"""A Modbus device simulator built from a profile, served by a real pymodbus server: Modbus TCP, RTU over
TCP or TLS on a port (`start`), or RTU on a serial device or a new pseudo-terminal (`start_serial`).

Each unit id holds a `RackModel` (the battery simulator) whose values are encoded into a register
image exactly as the profile says, so gateway -> simulator -> gateway returns the model's truth.
Faults can be injected while it runs: unit ids that do not answer, a delay before every answer,
exception codes on chosen addresses, dropped connections, and "one client only". The server also
records every function code it receives (a test can prove the gateway only reads).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer, ModbusTlsServer
from pymodbus.server.requesthandler import ServerRequestHandler

from gateway.sources.modbus import sunspec
from gateway.sources.modbus.image import Image, fill, truth_map
from gateway.sources.modbus.plan import FUNCTION_CODES, Point, compile_points, unreadable_ranges
from gateway.sources.modbus.profile import ModbusProfile
from gateway.sources.modbus.transport import SerialLine
from gateway.sources.sim.battery import RackModel, RackParams
from gateway.tools.modbusline import Pty, Serving, fd_connection, open_pty

log = structlog.get_logger("modbus.simulator")

TABLE_OF = {v: k for k, v in FUNCTION_CODES.items()}


@dataclass
class Faults:
    """Faults injected into the simulator; change them while it runs."""

    silent: set[int] = field(default_factory=set)  # unit ids that never answer
    delay: float = 0.0  # seconds before every answer
    exceptions: dict[tuple[str, int], int] = field(default_factory=dict)  # (table, address) -> exception code
    one_client: bool = False  # refuse a second simultaneous connection
    drop_every: float = 0.0  # seconds between dropping every client connection (0: never)


@dataclass
class SimDevice:
    """One unit id: a rack model (or a replayed recording) and its register image."""

    unit_id: int
    points: list[Point]
    model: RackModel | None = None
    image: Image = field(default_factory=Image)
    overrides: dict[tuple[str, int | None, int | None], object] = field(default_factory=dict)
    codes: dict[tuple[str, int], int] = field(default_factory=dict)  # (table, address) -> exception (replay)
    unreadable: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # answered "illegal address"

    def refresh(self, dt: float) -> None:
        if self.model is None:
            return
        self.model.step(dt)
        truth = truth_map(self.model.samples(time.time_ns(), ""))
        truth.update(self.overrides)  # type: ignore[arg-type]
        fill(self.image, self.points, truth, self.unit_id)


def rack_params(points: Iterable[Point], seed: int) -> RackParams:
    """Rack dimensions that match the profile's cell and sensor arrays."""
    pts = list(points)
    cells = [p for p in pts if p.quantity == "cell_voltage"]
    temps = [p for p in pts if p.quantity == "cell_temperature"]
    modules = max([p.module or 1 for p in cells + temps], default=1)
    cpm = max([p.cell or 1 for p in cells], default=max(1, len(cells)))
    spm = max([p.cell or 1 for p in temps], default=len(temps)) if temps else 0
    return RackParams(
        modules=modules,
        cells_per_module=max(1, cpm),
        sensors_per_module=spm,
        current_amplitude=140.0,
        current_period=600.0,
        seed=seed,
    )


def sunspec_device(unit_id: int, modules: int, cells: int, base: int = 40000, seed: int = 1) -> SimDevice:
    """A simulated SunSpec battery: the chain's fixed words (markers, ids, lengths, scale factors) once,
    the model's values through the same points the gateway derives from the chain."""
    models = sunspec.build_chain(base, modules, cells)
    points = sunspec.points_from_models(models, 1.0)
    params = RackParams(modules=modules, cells_per_module=cells, sensors_per_module=cells, seed=seed + unit_id)
    params.current_amplitude = 140.0
    dev = SimDevice(unit_id, points, RackModel(params))
    dev.overrides[("bms_state", None, None)] = "connected"  # SunSpec 802 State names
    for address, words in sunspec.chain_words(base, models):
        dev.image.write("holding", address, words)
    dev.refresh(0.0)
    return dev


def device_from_profile(profile: ModbusProfile, unit_id: int, seed: int = 1) -> SimDevice:
    """A simulated device for a profile, its rack model sized from the profile's cell arrays."""
    if profile.sunspec:
        return sunspec_device(unit_id, 4, 12, profile.sunspec_bases[0], seed)
    points, _ = compile_points(profile)
    dev = SimDevice(unit_id, points, RackModel(rack_params(points, seed + unit_id)))
    dev.unreadable = unreadable_ranges(profile)
    dev.refresh(0.0)
    return dev


class _Context(ModbusServerContext):
    """The pymodbus datastore hook: every read goes to the simulator (no deprecated data blocks)."""

    def __init__(self, sim: ModbusSimulator) -> None:  # the base class init would build data blocks
        self.sim = sim
        self.old_simulator = True
        self.simdevices = []

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        return await self.sim.read(device_id, func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int, values: object) -> ExcCodes | None:
        self.sim.writes += 1
        return ExcCodes.ILLEGAL_FUNCTION  # a BMS image is read-only

    def device_ids(self) -> list[int]:
        return sorted(self.sim.devices)


class _Handler(ServerRequestHandler):
    def callback_connected(self) -> None:
        super().callback_connected()
        server = self.server
        sim: ModbusSimulator = server.context.sim
        sim.connections += 1
        if sim.faults.one_client and len(server.active_connections) > 1:
            sim.refused += 1
            self.transport.close()


class _Serving:
    trace_packet: Any
    trace_pdu: Any
    trace_connect: Any

    def callback_new_connection(self) -> _Handler:
        return _Handler(self, self.trace_packet, self.trace_pdu, self.trace_connect)  # type: ignore[no-untyped-call]


class _Server(_Serving, ModbusTcpServer):
    """Modbus TCP, or RTU frames over TCP."""


class _TlsServer(_Serving, ModbusTlsServer):
    """Modbus/TCP Security."""


class _SerialServer(_Serving, ModbusSerialServer):
    """RTU on a serial device or a pty."""


class ModbusSimulator:
    """Serves one or more simulated devices on a loopback (or any) TCP port."""

    def __init__(self, devices: list[SimDevice]) -> None:
        self.devices = {d.unit_id: d for d in devices}
        self.faults = Faults()
        self.function_codes: list[int] = []  # every request's function code, in order
        self.requests = 0
        self.requests_by_unit: dict[int, int] = {}
        self.reads: list[tuple[int, int, int, int]] = []  # unit, function code, address, count
        self.writes = 0
        self.connections = 0
        self.refused = 0
        self.server: Any = None  # the pymodbus server
        self.port = 0
        self.tty = ""  # the serial device or pty served (start_serial)
        self.pty: Pty | None = None
        self.serving = Serving()  # how `modbusserve.serve` starts it

    @classmethod
    def from_profile(cls, profile: ModbusProfile, unit_ids: Iterable[int], seed: int = 1) -> ModbusSimulator:
        return cls([device_from_profile(profile, u, seed) for u in unit_ids])

    @classmethod
    def sunspec(
        cls, unit_ids: Iterable[int], modules: int = 4, cells: int = 12, base: int = 40000, seed: int = 1
    ) -> ModbusSimulator:
        """A SunSpec battery (models 1, 802 and one 805 per module) at `base`."""
        return cls([sunspec_device(u, modules, cells, base, seed) for u in unit_ids])

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.function_codes.append(int(getattr(pdu, "function_code", 0)))
        return pdu

    async def read(self, unit: int, fc: int, address: int, count: int) -> list[int] | list[bool] | ExcCodes:
        self.requests += 1
        self.requests_by_unit[unit] = self.requests_by_unit.get(unit, 0) + 1
        self.reads.append((unit, fc, address, count))
        dev = self.devices.get(unit)
        if dev is None or unit in self.faults.silent:
            raise NoSuchIdException(f"unit {unit} does not answer")  # with ignore_missing_devices: no reply
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        table = TABLE_OF.get(fc)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if address + count > 0x10000:
            return ExcCodes.ILLEGAL_ADDRESS
        for lo, hi in dev.unreadable.get(table, []):
            if lo <= address + count - 1 and address <= hi:
                return ExcCodes.ILLEGAL_ADDRESS
        for (t, a), code in [*self.faults.exceptions.items(), *dev.codes.items()]:
            if t == table and address <= a < address + count:
                return ExcCodes(code)
        words = dev.image.read(table, address, count)
        if fc in (1, 2):
            return [bool(w) for w in words]
        return words

    async def start(
        self, port: int, host: str = "127.0.0.1", *, transport: str = "tcp", sslctx: ssl.SSLContext | None = None
    ) -> None:
        """Serve on a TCP port: `transport` tcp, rtu_over_tcp, or tls (with the server's `sslctx`)."""
        self.port = port
        common: dict[str, Any] = {"address": (host, port), "ignore_missing_devices": True, "trace_pdu": self._trace}
        if transport == "tls":
            self.server = _TlsServer(_Context(self), sslctx=sslctx, **common)
        else:
            framer = FramerType.RTU if transport == "rtu_over_tcp" else FramerType.SOCKET
            self.server = _Server(_Context(self), framer=framer, **common)
        await self.server.serve_forever(background=True)
        log.info("modbus simulator listening", host=host, port=port, transport=transport, units=sorted(self.devices))

    async def start_serial(self, device: str | None = None, line: SerialLine | None = None) -> str:
        """Serve RTU on a serial device, or with None on a new pseudo-terminal; returns the name a
        client opens (the pty's, e.g. /dev/pts/7)."""
        line = line or SerialLine()
        self.pty = open_pty() if device is None else None
        self.tty = device or (self.pty.name if self.pty is not None else "")
        self.server = _SerialServer(
            _Context(self),
            framer=FramerType.RTU,
            port=self.tty,
            baudrate=line.baudrate,
            parity=line.parity,
            stopbits=line.stopbits,
            bytesize=line.bytesize,
            ignore_missing_devices=True,
            trace_pdu=self._trace,
        )
        if self.pty is not None:
            loop = asyncio.get_running_loop()
            self.server.call_create = fd_connection(loop, self.server.handle_new_connection, self.pty.master)
        await self.server.serve_forever(background=True)
        log.info("modbus simulator on a serial line", port=self.tty, units=sorted(self.devices))
        return self.tty

    def drop_connections(self) -> None:
        """Close every client connection (the listener stays)."""
        if self.server is not None:
            for conn in list(self.server.active_connections.values()):
                conn.close()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
        if self.pty is not None:
            self.pty.close()
            self.pty = None

    async def drop_periodically(self) -> None:
        """Drop every client connection each `faults.drop_every` seconds, until cancelled."""
        while self.faults.drop_every > 0:
            await asyncio.sleep(self.faults.drop_every)
            self.drop_connections()

    async def run_models(self, interval: float = 0.1, speed: float = 1.0) -> None:
        """Step every device's model on a fixed schedule until cancelled."""
        start = time.monotonic()
        k = 0
        while True:
            k += 1
            await asyncio.sleep(max(0.0, start + k * interval - time.monotonic()))
            for d in self.devices.values():
                d.refresh(interval * speed)
