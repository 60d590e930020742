"""Register-read responses decoded in one step, registered on each pymodbus client.

pymodbus decodes a read-registers response with one `struct.unpack` and one slice per register and
formats the whole register list for a debug line it builds for every response; for a 125-register
block that is most of the cost of a read after the socket itself. These subclasses give the same
registers (unsigned 16-bit, in wire order) as a numpy array over the response's bytes (no int object
per register: the block decoder takes the array as it is) and a short debug text. Requests are
pymodbus's own, so only the read function codes 3 and 4 are touched and the read-only guard
(`trace_pdu`) still sees every request that leaves.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

Registers = npt.NDArray[np.uint16]  # big-endian words, as on the wire
_WORD = np.dtype(">u2")


def unpack_registers(data: bytes) -> Registers:
    """The registers of a read-registers response PDU body (byte count, then big-endian words).

    As pymodbus's own decoder: an odd byte count gives its whole registers, a byte count beyond the
    data is an error (a ValueError here, which pymodbus turns into an undecodable-frame
    `ModbusIOException` for the request, as its own `ModbusIOException`)."""
    n = data[0]
    if n >= len(data):
        raise ValueError(f"register byte count {n} does not fit a packet of {len(data)} bytes")
    return np.frombuffer(data, dtype=_WORD, count=n // 2, offset=1)


class _FastRegisters:
    """Mixin over pymodbus's register responses: decode in one call, a debug text without the values."""

    dev_id: int
    transaction_id: int
    registers: Registers

    def decode(self, data: bytes) -> None:
        self.registers = unpack_registers(data)

    def __str__(self) -> str:
        name, n = type(self).__name__, len(self.registers)
        return f"{name}(dev_id={self.dev_id}, transaction_id={self.transaction_id}, registers={n})"


# pymodbus types `registers` as a list of ints: here it is an array of the same words (indexing, len and
# iteration give the same numbers)
class HoldingRegistersResponse(_FastRegisters, ReadHoldingRegistersResponse):  # type: ignore[misc]
    """Function code 3 response."""


class InputRegistersResponse(_FastRegisters, ReadInputRegistersResponse):  # type: ignore[misc]
    """Function code 4 response."""


FAST_RESPONSES = (HoldingRegistersResponse, InputRegistersResponse)
