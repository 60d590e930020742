"""Whether a Modbus reply answers its request: pure checks on the bytes of one frame (the same for
Modbus TCP, TLS and RTU; `rtu` finds RTU frames and checks their CRC, `bad_crc`).

A reply answers a read when it carries the request's unit id and function code (or that function's
exception: the code + 0x80 and one exception byte), and a byte count equal to the bytes of the
registers or bits asked for, followed by exactly that many data bytes. Bytes that cannot start a
Modbus TCP frame (a protocol id other than 0, an impossible length) are `malformed`. The transaction
id is pymodbus's to match: a frame with another id answers an earlier request and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

WRONG_FUNCTION = "wrong_function"
WRONG_BYTE_COUNT = "wrong_byte_count"
WRONG_UNIT_ID = "wrong_unit_id"
MALFORMED = "malformed"
BAD_CRC = "bad_crc"
KINDS = (WRONG_FUNCTION, WRONG_BYTE_COUNT, WRONG_UNIT_ID, MALFORMED, BAD_CRC)

HEADER = 7  # MBAP: transaction id (2), protocol id (2), length (2), unit id (1)
MAX_LENGTH = 254  # the MBAP length counts the unit id and a PDU of at most 253 bytes
BIT_READS = frozenset({1, 2})


@dataclass(slots=True)
class Request:
    """What a reply must answer: one read as it left (made for every request, and never changed: not
    frozen, since a frozen dataclass takes three times as long to make)."""

    unit_id: int
    function_code: int
    address: int
    count: int

    @property
    def data_bytes(self) -> int:
        """Bytes of the values asked for: 2 per register, 1 per 8 bits."""
        return (self.count + 7) // 8 if self.function_code in BIT_READS else 2 * self.count


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Why a reply was not taken: one of `KINDS`, and what was received."""

    kind: str
    detail: str


class Frame(NamedTuple):
    """One Modbus TCP frame: its size in bytes, header fields and PDU (function code first)."""

    size: int
    transaction_id: int
    unit_id: int
    pdu: bytes


def next_frame(data: bytes) -> Frame | Mismatch | None:
    """The first frame of received bytes; None while its bytes are incomplete; a `malformed` Mismatch
    when the header cannot start a Modbus TCP frame (nothing after it can be trusted either)."""
    if len(data) < HEADER + 1:
        return None
    protocol = int.from_bytes(data[2:4], "big")
    length = int.from_bytes(data[4:6], "big")
    if protocol != 0:
        return Mismatch(MALFORMED, f"protocol id {protocol} (Modbus is 0): {data[:HEADER].hex(' ')}")
    if not 2 <= length <= MAX_LENGTH:
        return Mismatch(MALFORMED, f"frame length {length} (2..{MAX_LENGTH})")
    size = 6 + length
    if len(data) < size:
        return None
    return Frame(size, int.from_bytes(data[0:2], "big"), data[6], data[HEADER:size])


def check_reply(request: Request, unit_id: int, pdu: bytes) -> Mismatch | None:
    """None when the reply (its unit id and PDU) answers the request; else what is wrong with it."""
    if unit_id != request.unit_id:
        return Mismatch(WRONG_UNIT_ID, f"unit id {unit_id}, asked {request.unit_id}")
    fc, asked = pdu[0], request.function_code
    if fc & 0x80:
        if fc & 0x7F != asked:
            return Mismatch(WRONG_FUNCTION, f"exception reply of function {fc & 0x7F}, asked {asked}")
        if len(pdu) != 2:
            return Mismatch(MALFORMED, f"exception reply of {len(pdu)} bytes (2)")
        return None
    if fc != asked:
        return Mismatch(WRONG_FUNCTION, f"function {fc}, asked {asked}")
    want = request.data_bytes
    count, data = (pdu[1], len(pdu) - 2) if len(pdu) > 1 else (-1, 0)
    if count != want or data != want:
        what = "registers" if asked not in BIT_READS else "bits"
        return Mismatch(
            WRONG_BYTE_COUNT, f"byte count {count} with {data} data bytes, asked {request.count} {what} ({want} bytes)"
        )
    return None
