"""Per-message fast decoders: the signals a rack plan reads, extracted with integer shifts and masks.

`fast_decoder(plan)` returns a function `data -> signals` (the same values cantools'
`Message.decode(data, decode_choices=True, scaling=True, allow_excess=True)` gives for the signals
the plan reads, plus the multiplexer), or None when the message needs cantools: a float signal, a
container, nested or scaled multiplexers, a mux with a value table. The function returns None for a
frame it does not take (a mux value the DBC does not define): the caller then decodes with cantools,
which reports the error exactly as before. The caller checks the length first (shorter: SHORT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cantools.database.conversion import IdentityConversion, LinearConversion, LinearIntegerConversion

Spec = tuple[str, bool, int, int, int, int, Any, Any, Any]  # name, big, shift, mask, sign, kind, scale, offset, conv
FastDecoder = Callable[[bytes | bytearray], dict[str, Any] | None]
_IDENT, _LINEAR, _OTHER = 0, 1, 2


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
    kind = _OTHER
    if type(conv) is IdentityConversion:
        kind = _IDENT
    elif type(conv) in (LinearConversion, LinearIntegerConversion):
        kind = _LINEAR
    sign = 1 << (n - 1) if sig.is_signed else 0
    return (sig.name, big, shift, (1 << n) - 1, sign, kind, conv.scale, conv.offset, conv.raw_to_scaled)


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


def fast_decoder(
    message: Any, mux_signal: str | None, plain: list[str], by_mux: dict[int, list[str]]
) -> FastDecoder | None:
    """A decoder of the named signals of `message` (plain ones, and per mux value), or None."""
    bits = message_bits(message, mux_signal)
    if bits is None:
        return None
    length, mux_spec, mux_ids = bits.length, bits.mux, bits.mux_ids

    def specs(names: list[str]) -> list[Spec] | None:
        out: list[Spec] = []
        for name in dict.fromkeys(names):
            if name == mux_signal:
                continue
            sp = bits.spec(name)
            if sp is None:
                return None
            out.append(sp)
        return out

    plain_specs = specs(plain)
    if plain_specs is None:
        return None
    mux_specs: dict[int, list[Spec]] = {}
    for mux, names in by_mux.items():
        sp = specs(names)
        if sp is None:
            return None
        mux_specs[mux] = sp
    need_big = any(s[1] for s in plain_specs) or any(s[1] for v in mux_specs.values() for s in v)
    need_big = need_big or (mux_spec is not None and mux_spec[1])
    empty: list[Spec] = []

    def decode(data: bytes | bytearray) -> dict[str, Any] | None:
        d = data[:length]
        le = int.from_bytes(d, "little")
        be = int.from_bytes(d, "big") if need_big else 0
        out: dict[str, Any] = {}
        todo = plain_specs
        if mux_spec is not None:
            name, big, shift, mask, sign, _k, _s, _o, _c = mux_spec
            raw = ((be if big else le) >> shift) & mask
            if sign and raw & sign:
                raw -= mask + 1
            if raw not in mux_ids:
                return None  # cantools raises "expected multiplexer id ...": let it
            out[name] = raw
            extra = mux_specs.get(raw, empty)
            if extra:
                todo = todo + extra if todo else extra
        for name, big, shift, mask, sign, kind, scale, offset, conv in todo:
            raw = ((be if big else le) >> shift) & mask
            if sign and raw & sign:
                raw -= mask + 1
            if kind == _LINEAR:
                out[name] = raw * scale + offset
            elif kind == _IDENT:
                out[name] = raw
            else:
                out[name] = conv(raw, True)
        return out

    return decode
