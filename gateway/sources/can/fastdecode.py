"""Where each signal of a message sits, as integer shifts and masks (what the generated samplers read).

`message_bits(message, mux_signal)` gives a message's layout when shifts and masks can decode it, or
None when it needs cantools: a container, nested or scaled multiplexers, a mux with a value table.
`MessageBits.spec(name)` gives one signal's `Spec`, or None for a float signal (cantools decodes it).
The frame is read as one integer per byte order: little-endian over the whole frame (excess bytes land
above every signal), big-endian over the message's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from cantools.database.conversion import IdentityConversion, LinearConversion, LinearIntegerConversion

IDENT, LINEAR, OTHER = 0, 1, 2  # the kinds of conversion: raw as is, raw * scale + offset, cantools' own


class Spec(NamedTuple):
    """One integer signal: raw = (frame integer >> shift) & mask, minus mask + 1 when its sign bit is set."""

    name: str
    big: bool  # read from the big-endian integer of the frame
    shift: int
    mask: int
    sign: int  # the sign bit (0: unsigned)
    kind: int  # IDENT, LINEAR or OTHER
    scale: Any
    offset: Any
    conv: Any  # the conversion's raw_to_scaled(raw, decode_choices)


def _spec(sig: Any, length: int) -> Spec | None:
    if sig.is_float or sig.length <= 0:
        return None
    n = sig.length
    if sig.byte_order == "little_endian":
        big = False
        shift = sig.start
    else:
        big = True
        msb = 8 * (sig.start // 8) + (7 - sig.start % 8)  # sawtooth → network bit number
        shift = length * 8 - msb - n
    if shift < 0 or shift + n > length * 8:
        return None
    conv = sig.conversion
    kind = OTHER
    if type(conv) is IdentityConversion:
        kind = IDENT
    elif type(conv) in (LinearConversion, LinearIntegerConversion):
        kind = LINEAR
    sign = 1 << (n - 1) if sig.is_signed else 0
    return Spec(sig.name, big, shift, (1 << n) - 1, sign, kind, conv.scale, conv.offset, conv.raw_to_scaled)


@dataclass(frozen=True, slots=True)
class MessageBits:
    """What a message's fast decoding needs: its length, signals by name, and the multiplexer's spec."""

    length: int
    signals: dict[str, Any]
    mux: Spec | None
    mux_ids: frozenset[int]

    def spec(self, name: str) -> Spec | None:
        return _spec(self.signals[name], self.length)


def message_bits(message: Any, mux_signal: str | None) -> MessageBits | None:
    """The message's bit layout when shifts and masks can decode it, else None (cantools must)."""
    if getattr(message, "is_container", False):
        return None
    length = int(message.length)
    sigs = {s.name: s for s in message.signals}
    for s in message.signals:
        if s.multiplexer_signal is not None and s.multiplexer_signal != mux_signal:
            return None  # nested multiplexers
        if s.is_multiplexer and s.name != mux_signal:
            return None  # a second multiplexer
    mux_spec: Spec | None = None
    mux_ids: frozenset[int] = frozenset()
    if mux_signal is not None:
        ms = sigs[mux_signal]
        if ms.choices or type(ms.conversion) is not IdentityConversion:
            return None
        mux_spec = _spec(ms, length)
        if mux_spec is None:
            return None
        mux_ids = frozenset(i for s in message.signals for i in (s.multiplexer_ids or ()))
    return MessageBits(length, sigs, mux_spec, mux_ids)
