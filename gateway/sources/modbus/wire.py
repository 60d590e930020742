"""Register-read responses decoded in one `struct` call, registered on each pymodbus client.

pymodbus decodes a read-registers response with one `struct.unpack` and one slice per register and
formats the whole register list for a debug line it builds for every response; for a 125-register
block that is most of the cost of a read after the socket itself. These subclasses give the same
`registers` (a list of unsigned 16-bit ints, in wire order) from one precompiled `Struct` and a short
debug text. Requests are pymodbus's own, so only the read function codes 3 and 4 are touched and the
read-only guard (`trace_pdu`) still sees every request that leaves.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

# One compiled Struct per byte count (at most 250 in a valid response; any count is accepted). Bounded by
# construction: the count is one byte, so there are at most 256 entries.
_WORDS: dict[int, struct.Struct] = {}


def unpack_registers(data: bytes) -> list[int]:
    """The registers of a read-registers response PDU body (byte count, then big-endian words).

    As pymodbus's own decoder: an odd byte count gives its whole registers, a byte count beyond the
    data is an error (a ValueError here, which pymodbus turns into an undecodable-frame
    `ModbusIOException` for the request, as its own `ModbusIOException`)."""
    n = data[0]
    if n >= len(data):
        raise ValueError(f"register byte count {n} does not fit a packet of {len(data)} bytes")
    words = _WORDS.get(n)
    if words is None:
        words = _WORDS[n] = struct.Struct(f">{n // 2}H")  # keyed by n: an odd count ignores its last byte
    return list(words.unpack_from(data, 1))


class _FastRegisters:
    """Mixin over pymodbus's register responses: decode in one call, a debug text without the values."""

    dev_id: int
    transaction_id: int
    registers: Sequence[int]

    def decode(self, data: bytes) -> None:
        self.registers = unpack_registers(data)

    def __str__(self) -> str:
        name, n = type(self).__name__, len(self.registers)
        return f"{name}(dev_id={self.dev_id}, transaction_id={self.transaction_id}, registers={n})"


class HoldingRegistersResponse(_FastRegisters, ReadHoldingRegistersResponse):
    """Function code 3 response."""


class InputRegistersResponse(_FastRegisters, ReadInputRegistersResponse):
    """Function code 4 response."""


FAST_RESPONSES = (HoldingRegistersResponse, InputRegistersResponse)
