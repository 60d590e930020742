"""Pure CAN decoding: a frame-id → decoder table built once from a DBC, and frame hygiene.

`FrameTable` is the DBC level (used by `bms-gateway can decode`): which message a frame is, and its
signals as cantools decodes them (value tables as names). `compile_rack` (in `gateway.can.plan`)
builds on it to map signals to catalog samples.

Keys: a frame id with bit 31 set for extended (29-bit) ids; for J1939 tables, the PGN part of the id
(priority and source address masked; also the destination address for PDU1 frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cantools.database.namedsignalvalue import NamedSignalValue

EXTENDED = 1 << 31
# Reasons a frame is counted instead of decoded (or flagged).
UNKNOWN_ID = "unknown_id"
SHORT = "short_frame"
ERROR_FRAME = "error_frame"
REMOTE = "remote_frame"
DECODE_ERROR = "decode_error"
OUT_OF_RANGE = "out_of_range"
WRONG_SOURCE = "wrong_source_address"
REASONS = (UNKNOWN_ID, SHORT, ERROR_FRAME, REMOTE, DECODE_ERROR, OUT_OF_RANGE, WRONG_SOURCE)


def frame_key(arbitration_id: int, is_extended: bool) -> int:
    return (arbitration_id & 0x1FFFFFFF) | EXTENDED if is_extended else arbitration_id & 0x7FF


def j1939_key(arbitration_id: int) -> int:
    """The PGN part of a 29-bit J1939 id: priority and source address (and PDU1 destination) masked."""
    pf = (arbitration_id >> 16) & 0xFF
    mask = 0x03FF0000 if pf < 240 else 0x03FFFF00
    return (arbitration_id & mask) | EXTENDED


def message_key(message: Any, id_offset: int = 0, j1939: bool = False) -> int:
    fid = message.frame_id + id_offset
    if j1939 and message.is_extended_frame:
        return j1939_key(fid)
    return frame_key(fid, bool(message.is_extended_frame))


def plain(value: Any) -> float | int | str:
    """A decoded signal value for output: value-table entries as their names."""
    if isinstance(value, NamedSignalValue):
        return str(value.name)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return value
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Decoded:
    message: Any  # cantools Message
    signals: dict[str, Any]  # name -> value (NamedSignalValue for value-table entries)


class FrameTable:
    """Frame id → cantools message, compiled once; `decode` never raises on bad input."""

    def __init__(
        self,
        db: Any,
        *,
        id_offset: int = 0,
        j1939: bool = False,
        source_address: int | None = None,
        only: set[str] | None = None,
    ) -> None:
        self.j1939 = j1939
        self.source_address = source_address
        self.messages: dict[int, Any] = {}
        for msg in db.messages:
            if only is not None and msg.name not in only:
                continue
            self.messages[message_key(msg, id_offset, j1939)] = msg

    def key(self, arbitration_id: int, is_extended: bool) -> int:
        if self.j1939 and is_extended:
            return j1939_key(arbitration_id)
        return frame_key(arbitration_id, is_extended)

    def lookup(self, arbitration_id: int, is_extended: bool) -> Any | None:
        return self.messages.get(self.key(arbitration_id, is_extended))

    def decode(
        self,
        arbitration_id: int,
        is_extended: bool,
        data: bytes | bytearray,
        *,
        is_error: bool = False,
        is_remote: bool = False,
    ) -> Decoded | str:
        """The decoded message, or the reason it was not decoded."""
        if is_error:
            return ERROR_FRAME
        msg = self.lookup(arbitration_id, is_extended)
        if msg is None:
            return UNKNOWN_ID
        if is_remote:
            return REMOTE
        if (
            self.j1939
            and self.source_address is not None
            and is_extended
            and (arbitration_id & 0xFF) != self.source_address
        ):
            return WRONG_SOURCE
        if len(data) < msg.length:
            return SHORT
        try:
            signals = msg.decode(bytes(data), decode_choices=True, scaling=True, allow_excess=True)
        except Exception:  # cantools raises DecodeError, KeyError (unknown mux value), ValueError, ...
            return DECODE_ERROR
        return Decoded(msg, signals)
