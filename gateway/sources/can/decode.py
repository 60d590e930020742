"""Pure CAN decoding: a frame-id → decoder table built once from a DBC, and frame hygiene.

`FrameTable` is the DBC level (used by `bms-gateway can decode`): which message a frame is, and its
signals as cantools decodes them (value tables as names). `compile_rack` (in `gateway.sources.can.plan`)
builds on it to map signals to catalog samples.

Keys: a frame id with bit 31 set for extended (29-bit) ids; for J1939 tables, the PGN part of the id
(priority and source address masked; also the destination address for PDU1 frames). A J1939 PGN that
the DBC defines more than once (once per source address), or that a profile takes from one source
address (`messages.<name>.source_address`), is keyed by PGN and source address: bit 30 set and the
address in the low byte (`BY_SOURCE`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cantools.database.namedsignalvalue import NamedSignalValue

EXTENDED = 1 << 31
BY_SOURCE = 1 << 30  # a J1939 key of one source address (in the key's low byte)
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


def message_key(message: Any, id_offset: int = 0, j1939: bool = False, source_address: int | None = None) -> int:
    fid = message.frame_id + id_offset
    if j1939 and message.is_extended_frame:
        key = j1939_key(fid)
        return key if source_address is None else key | BY_SOURCE | source_address
    return frame_key(fid, bool(message.is_extended_frame))


def message_keys(
    messages: Iterable[Any], id_offset: int = 0, j1939: bool = False, sources: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Message name → key. J1939: a PGN defined by several messages is keyed by each one's source address
    (its frame id's low byte); `sources` gives a message's source address explicitly."""
    messages = list(messages)
    sources = sources or {}
    per_pgn = Counter(message_key(m, id_offset, j1939) for m in messages)
    out: dict[str, int] = {}
    for m in messages:
        sa = sources.get(m.name)
        if j1939 and m.is_extended_frame and sa is None and per_pgn[message_key(m, id_offset, j1939)] > 1:
            sa = (m.frame_id + id_offset) & 0xFF
        out.setdefault(m.name, message_key(m, id_offset, j1939, sa))
    return out


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
    """Frame id → cantools message, compiled once; `decode` never raises on bad input.

    `clashes`: (kept, left out) pairs of messages the frames cannot tell apart (the same key)."""

    def __init__(
        self,
        db: Any,
        *,
        id_offset: int = 0,
        j1939: bool = False,
        source_address: int | None = None,
        only: set[str] | None = None,
        sources: Mapping[str, int] | None = None,
    ) -> None:
        self.j1939 = j1939
        self.source_address = source_address
        self.keys = message_keys(db.messages, id_offset, j1939, sources)
        self.messages: dict[int, Any] = {}
        self.clashes: list[tuple[Any, Any]] = []
        for msg in db.messages:
            if only is not None and msg.name not in only:
                continue
            key = self.keys[msg.name]
            kept = self.messages.setdefault(key, msg)
            if kept is not msg:
                self.clashes.append((kept, msg))
        self.by_source = {k & ~(BY_SOURCE | 0xFF) for k in self.messages if k & BY_SOURCE}  # their PGN keys

    def key(self, arbitration_id: int, is_extended: bool) -> int:
        if self.j1939 and is_extended:
            key = j1939_key(arbitration_id)
            return key | BY_SOURCE | (arbitration_id & 0xFF) if key in self.by_source else key
        return frame_key(arbitration_id, is_extended)

    def unmatched(self, key: int) -> str:
        """Why no message has this key: a PGN read from other source addresses, or an unknown id."""
        return WRONG_SOURCE if key & BY_SOURCE else UNKNOWN_ID

    def accepts(self, key: int, arbitration_id: int, is_extended: bool) -> bool:
        """The rack's `source_address` (J1939): messages keyed by their own source address pass."""
        sa = self.source_address
        return sa is None or not (self.j1939 and is_extended) or bool(key & BY_SOURCE) or arbitration_id & 0xFF == sa

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
        key = self.key(arbitration_id, is_extended)
        msg = self.messages.get(key)
        if msg is None:
            return self.unmatched(key)
        if is_remote:
            return REMOTE
        if not self.accepts(key, arbitration_id, is_extended):
            return WRONG_SOURCE
        if len(data) < msg.length:
            return SHORT
        try:
            signals = msg.decode(bytes(data), decode_choices=True, scaling=True, allow_excess=True)
        except Exception:  # cantools raises DecodeError, KeyError (unknown mux value), ValueError, ...
            return DECODE_ERROR
        return Decoded(msg, signals)
