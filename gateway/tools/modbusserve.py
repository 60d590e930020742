"""Serving simulated Modbus devices: for a config's sources, for `modbus simulate`, and inside the demo.

Each simulator serves one link: a TCP port (Modbus TCP, RTU over TCP, TLS) or a serial line (a serial
device, or a new pseudo-terminal whose name is printed: the gateway's `port`), as its `Serving` says.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.profile import ModbusProfile
from gateway.tools.modbusline import Serving
from gateway.tools.modbussim import ModbusSimulator, SimDevice, device_from_profile

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig
    from gateway.runtime.core import Runtime

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def modbus_sources(loaded: LoadedConfig, names: Sequence[str] | None = None) -> list[ModbusSourceConfig]:
    srcs = [s for s in loaded.enabled_sources if isinstance(s, ModbusSourceConfig)]
    if names:
        unknown = set(names) - {s.name for s in srcs}
        if unknown:
            raise ConfigError(f"no enabled modbus source named {sorted(unknown)} in {loaded.path}")
        srcs = [s for s in srcs if s.name in names]
    return srcs


def simulators_for(
    loaded: LoadedConfig, sources: Sequence[ModbusSourceConfig], serving: Serving | None = None
) -> dict[int | str, ModbusSimulator]:
    """One simulator per link (a TCP port, or a serial port) serving every listed source's unit id with
    its profile, on the link's transport (TLS and serial settings from `serving`)."""
    by_link: dict[int | str, list[SimDevice]] = {}
    transports: dict[int | str, str] = {}
    for i, src in enumerate(sources):
        profile = loaded.profiles[src.profile]
        assert isinstance(profile, ModbusProfile)  # the modbus start-up check made sure
        key: int | str = src.serial_port if src.transport == "rtu" else src.tcp_port
        by_link.setdefault(key, []).append(device_from_profile(profile, src.unit_id, i))
        transports[key] = src.transport
    base = serving or Serving()
    sims = {key: ModbusSimulator(devs) for key, devs in by_link.items()}
    for key, sim in sims.items():
        sim.serving = Serving(transports[key], base.device, base.line, base.sslctx)
    return sims


async def serve(
    sims: dict[int | str, ModbusSimulator],
    host: str,
    interval: float,
    speed: float,
    started: Callable[[], None] | None = None,
    replay_task: Callable[[ModbusSimulator], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Serve the simulators until cancelled, stepping their rack models (or replaying)."""
    try:
        for port, sim in sims.items():
            how = sim.serving
            if how.transport == "rtu":
                await sim.start_serial(how.device, how.line)
            else:
                assert isinstance(port, int)
                await sim.start(port, host, transport=how.transport, sslctx=how.sslctx)
        if started is not None:
            started()
        async with asyncio.TaskGroup() as tg:
            for port, sim in sims.items():
                job = replay_task(sim) if replay_task is not None else sim.run_models(interval, speed)
                tg.create_task(job, name=f"modbus-sim:{port}")
                if sim.faults.drop_every > 0:
                    tg.create_task(sim.drop_periodically(), name=f"modbus-sim-drop:{port}")
    finally:
        for sim in sims.values():
            await sim.stop()


def _free_port(port: int) -> int:
    """`port` when nothing listens on it on loopback, else a free port the system picks."""
    for candidate in (port, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free loopback port")


def demo_hook(rt: Runtime) -> None:
    """Serve the demo's loopback Modbus racks from their profiles, inside the demo process.

    A configured port that is taken (another demo, a test) is replaced by a free one, so the demo
    never fails or waits on a port."""
    from gateway.sources.modbus.poller import ModbusEndpoint

    srcs = [s for s in modbus_sources(rt.loaded) if s.transport == "tcp" and s.host in LOOPBACK]
    if not srcs:
        return
    configured = simulators_for(rt.loaded, srcs)
    sims: dict[int | str, ModbusSimulator] = {}
    gate = asyncio.Event()
    for port, sim in configured.items():
        assert isinstance(port, int)
        actual = _free_port(port)
        sims[actual] = sim
        for src in rt.sources:
            if isinstance(src, ModbusEndpoint) and src.host in LOOPBACK and src.port == port:
                src.move(src.host, actual)
                src.gate = gate  # the poller connects once the simulator listens

    async def service() -> None:
        await serve(sims, "127.0.0.1", 0.5, 30.0, started=gate.set)

    rt.services.append(("modbus-simulator", service))
