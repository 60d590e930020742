"""A Modbus TCP endpoint for the bench: one pymodbus server process holding several unit ids, each
with `registers` holding registers (cell voltages in mV, then temperatures in 0.1 °C).

    python -m bench.modbus_server --port P --units 10 --registers 1000 --voltages 800
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


def registers(n: int, voltages: int, seed: int) -> list[int]:
    volts = [3300 + (seed * 7 + i * 13) % 50 for i in range(voltages)]
    temps = [250 + (seed + i * 3) % 40 for i in range(n - voltages)]
    return volts + temps


async def serve(port: int, units: int, n: int, voltages: int) -> None:
    devices = [
        SimDevice(id=u, simdata=[SimData(0, values=registers(n, voltages, u), datatype=DataType.REGISTERS)])
        for u in range(1, units + 1)
    ]
    server = ModbusTcpServer(devices, address=("127.0.0.1", port))
    await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--units", type=int, default=10)
    ap.add_argument("--registers", type=int, default=1000)
    ap.add_argument("--voltages", type=int, default=800)
    a = ap.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    asyncio.run(serve(a.port, a.units, a.registers, a.voltages))


if __name__ == "__main__":
    main()
