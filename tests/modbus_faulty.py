"""A Modbus TCP server on loopback that misbehaves on demand: replies that do not answer their
request, garbage, dropped connections. It answers reads only (function codes 1-4); every other
request closes the connection (the gateway never sends one)."""

from __future__ import annotations

import asyncio
import struct

from tests.servers import free_port

# The faults of `FaultyServer.fault`, each named for the error kind the gateway counts.
FAULTS = {
    "wrong_function": "a function-6 PDU answering the read",
    "other_table": "a well-formed function-3 answer to a function-4 read",
    "short_count": "one register less than asked, byte count to match",
    "long_count": "a byte count 40 bytes beyond the data",
    "wrong_unit": "the right PDU from another unit id",
    "garbage": "bytes that are no Modbus TCP frame",
}
KIND = {
    "wrong_function": "wrong_function",
    "other_table": "wrong_function",
    "short_count": "wrong_byte_count",
    "long_count": "wrong_byte_count",
    "wrong_unit": "wrong_unit_id",
    "garbage": "malformed",
}

# A device of four points in three reads (fc 2, 3 and 4): the faults hit the fc-4 read.
PROFILE = """\
protocol: modbus
table: input
interval: 0.1
points:
  - {quantity: rack_voltage, address: 0, scale: 0.1}
  - {quantity: soc, address: 1, scale: 0.1}
  - {quantity: raw.fan_speed, table: holding, address: 0}
  - {quantity: interlock_door, table: discrete, address: 0, type: bool}
"""
WORD = 500  # every register's value: rack_voltage and soc read 50.0


def frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def answer(fc: int, count: int, word: int = WORD) -> bytes:
    """The correct PDU of a read of `count` registers (all `word`) or bits (all 0)."""
    if fc in (1, 2):
        n = (count + 7) // 8
        return bytes([fc, n]) + bytes(n)
    return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *[word] * count)


class FaultyServer:
    """Answers reads correctly, or with `fault` (one of FAULTS) for the function codes in `functions`;
    with `drop_every` N, closes each connection after N answers, or instead of the N-th answer when
    `drop_instead` is set."""

    def __init__(self) -> None:
        self.fault = ""
        self.functions = {4}
        self.drop_every = 0
        self.drop_instead = False
        self.port = 0
        self.requests = 0
        self.connections = 0
        self.drops = 0
        self.hold: asyncio.Event | None = None  # when set here: each answer waits until the event is set
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int | None = None) -> None:
        self.port = port or self.port or free_port()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()
            self._server = None

    def reply(self, tid: int, unit: int, fc: int, address: int, count: int) -> bytes:
        fault = self.fault if fc in self.functions else ""
        if fault == "wrong_function":
            return frame(tid, unit, struct.pack(">BHH", 6, address, 10))
        if fault == "other_table":
            return frame(tid, unit, answer(3, count))
        if fault == "short_count":
            return frame(tid, unit, answer(fc, count - 1))
        if fault == "long_count":
            pdu = answer(fc, count)
            return frame(tid, unit, pdu[:1] + bytes([pdu[1] + 40]) + pdu[2:])
        if fault == "wrong_unit":
            return frame(tid, unit + 1, answer(fc, count))
        if fault == "garbage":
            return b"\xde\xad\xbe\xef" * 4
        return frame(tid, unit, answer(fc, count))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        answered = 0
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1)
                fc, address, count = struct.unpack(">BHH", pdu[:5])
                self.requests += 1
                if fc not in (1, 2, 3, 4):
                    return
                last = bool(self.drop_every) and answered + 1 >= self.drop_every
                if last and self.drop_instead:
                    self.drops += 1
                    return
                if self.hold is not None:
                    await self.hold.wait()
                writer.write(self.reply(tid, unit, fc, address, count))
                await writer.drain()
                answered += 1
                if last:
                    self.drops += 1
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
