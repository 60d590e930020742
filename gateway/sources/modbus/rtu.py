"""Modbus RTU replies found in received bytes: pure framing and timing of the serial line.

An RTU frame has no header to tell its length and no delimiter but silence: unit id, function code,
data, CRC-16 (low byte first). The length of a read reply follows from its function code (1-4: a byte
count, then that many bytes; an exception, code + 0x80: one byte), so `scan_reply` looks at every
offset of what was received for a frame of that shape whose CRC holds. What comes before it (line
noise, a late answer, the tail of an earlier frame) is skipped: the scan resynchronises on garbage by
itself. A frame shaped as the answer to the read in flight (its unit id, function code and byte
count) whose CRC does not hold is the device's answer damaged on the way: a `bad_crc` mismatch.

Whether a frame answers the request is `replies.check_reply`, as for Modbus TCP: one set of checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.sources.modbus.replies import BAD_CRC, Frame, Mismatch, Request, check_reply

MIN_GAP = 0.00175  # the Modbus serial line spec: above 19,200 baud a fixed 1.75 ms silent interval


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc16(data: bytes) -> bytes:
    """The Modbus CRC-16 of `data` as it is sent after it (low byte first)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc.to_bytes(2, "little")


def encode(unit_id: int, pdu: bytes) -> bytes:
    """One RTU frame: unit id, PDU, CRC."""
    body = bytes([unit_id]) + pdu
    return body + crc16(body)


def char_time(baudrate: int, bytesize: int = 8, parity: str = "E", stopbits: int = 1) -> float:
    """Seconds one character takes on the line: start bit, data bits, parity bit, stop bits."""
    return (1 + bytesize + (0 if parity == "N" else 1) + stopbits) / baudrate


def silent_interval(baudrate: int, bytesize: int = 8, parity: str = "E", stopbits: int = 1) -> float:
    """The silence that separates two frames: 3.5 characters, at least 1.75 ms (the spec's value above
    19,200 baud)."""
    return max(3.5 * char_time(baudrate, bytesize, parity, stopbits), MIN_GAP)


def reply_size(data: bytes, at: int = 0) -> int | None:
    """Bytes of the read reply that would start at `at`: 0 while too few bytes have come to tell, None
    when no read reply (function 1-4 or an exception) can start there."""
    if len(data) - at < 2:
        return 0
    fc = data[at + 1]
    if not 1 <= fc & 0x7F <= 4:
        return None
    if fc & 0x80:
        return 5  # unit, code + 0x80, exception code, CRC
    if len(data) - at < 3:
        return 0
    return 5 + data[at + 2]  # unit, code, byte count, data, CRC


def _shaped_as_answer(request: Request, frame: bytes) -> bool:
    """Whether a frame has the unit id, function code and size of the answer to the request."""
    unit, fc = frame[0], frame[1]
    if unit != request.unit_id:
        return False
    if fc == request.function_code | 0x80:
        return True
    return fc == request.function_code and len(frame) == 5 + request.data_bytes


@dataclass(frozen=True, slots=True)
class Scan:
    """What the bytes received so far hold for the read in flight.

    `used`: the bytes done with (the frame found or rejected, and everything before it; without one,
    the bytes that cannot start a reply). `frame`: a whole frame with a good CRC. `bad_crc`: the
    answer's shape with a CRC that does not hold; `final` when no later frame could still be coming
    (otherwise it is kept in case the real answer follows). `skipped`: bytes passed over that were no
    answer (noise, late answers)."""

    used: int
    skipped: int = 0
    frame: Frame | None = None
    bad_crc: Mismatch | None = None
    final: bool = False


def scan_reply(data: bytes, request: Request, late: Request | None = None) -> Scan:
    """Look for the answer to `request` in received bytes. A good frame that answers `late` (the read
    before, which timed out) and not this one is a late answer and is skipped."""
    pending: list[int] = []  # offsets where a frame may start whose bytes have not all come
    damaged: Mismatch | None = None
    damaged_at = damaged_end = 0
    i = 0
    while i < len(data):
        size = reply_size(data, i)
        if size is None:
            i += 1
            continue
        if size == 0 or i + size > len(data):
            pending.append(i)
            i += 1
            continue
        raw = data[i : i + size]
        if crc16(raw[:-2]) == raw[-2:]:
            unit, pdu = raw[0], raw[1:-2]
            if late is not None and check_reply(late, unit, pdu) is None and check_reply(request, unit, pdu):
                i += size  # a late answer to the read before
                continue
            return Scan(i + size, skipped=i, frame=Frame(size, 0, unit, pdu))
        if damaged is None and _shaped_as_answer(request, raw):
            got, want = raw[-2:].hex(), crc16(raw[:-2]).hex()
            damaged = Mismatch(BAD_CRC, f"CRC {got}, computed {want}: {raw[:16].hex(' ')}")
            damaged_at, damaged_end = i, i + size
        i += 1
    if damaged is not None:
        if any(p >= damaged_end for p in pending):
            return Scan(0, bad_crc=damaged)  # something after it may still be the answer
        return Scan(damaged_end, skipped=damaged_at, bad_crc=damaged, final=True)
    used = pending[0] if pending else len(data)
    return Scan(used, skipped=used)
