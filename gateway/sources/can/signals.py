"""Where a message's signals sit in its frames, and their numbers from a window of frames, vectorised.

`MessageSignals(message, names)` is compiled once per message of a rack plan from cantools' objects
(cantools stays the DBC parser): for each signal the bytes it spans and the shift of each byte.
`numbers(data, cols)` takes the frames of one message id as a 2-D uint8 array (frames × the message's
length: 8, or up to 64 for CAN FD) and gives, for the signals `cols`, the raw integer (signed where the signal is)
and the physical number as cantools' scaled decoding gives it (`raw * scale + offset`, floats as IEEE).

A byte's bit 0 lies `shift` bits above the signal's least significant bit (negative: below it), in
either byte order, so one rule reads little- and big-endian signals alike, up to 64 bits over 9 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
MAX_SPAN = 9  # bytes a signal of up to 64 bits can touch


def byte_shifts(sig: Any) -> list[tuple[int, int]]:
    """(byte index, shift of the byte's bit 0 above the signal's LSB) for every byte the signal touches."""
    n = int(sig.length)
    if sig.byte_order == "little_endian":
        first, last = sig.start // 8, (sig.start + n - 1) // 8
        return [(b, 8 * b - sig.start) for b in range(first, last + 1)]
    msb = 8 * (sig.start // 8) + 7 - sig.start % 8  # sawtooth → network bit number (0 = MSB of byte 0)
    first, last = msb // 8, (msb + n - 1) // 8
    lsb_in_byte = 7 - (msb + n - 1) % 8
    return [(b, 8 * (last - b) - lsb_in_byte) for b in range(first, last + 1)]


@dataclass(frozen=True, slots=True)
class Numbers:
    """The signals of a window of frames: one column per signal of `MessageSignals.names`."""

    raw: I64  # frames × signals: the raw integers, signed where the signal is (an unsigned 64-bit value wraps)
    phys: F64  # cantools' scaled value: raw * scale + offset (an IEEE float for a float signal)


class MessageSignals:
    """The signals of one message a plan reads, compiled for `numbers`."""

    def __init__(self, message: Any, names: list[str]) -> None:
        self.length = int(message.length)
        self.names = names
        self.index = {name: i for i, name in enumerate(names)}
        sigs = {s.name: s for s in message.signals}
        k = len(names)
        span = max((len(byte_shifts(sigs[n])) for n in names), default=1)
        self.byte = np.full((k, span), self.length, dtype=np.intp)  # `length`: the zero column
        self.left = np.zeros((k, span), dtype=np.uint64)
        self.right = np.zeros((k, span), dtype=np.uint64)
        self.mask = np.zeros(k, dtype=np.uint64)
        self.bits = np.zeros(k, dtype=np.uint64)
        self.signed = np.zeros(k, dtype=bool)
        self.scale = np.ones(k, dtype=np.float64)
        self.offset = np.zeros(k, dtype=np.float64)
        self.floats: dict[int, int] = {}  # column -> 32 or 64, of IEEE float signals
        self.fits = np.ones(k, dtype=bool)  # the signal lies inside the message's length
        self.last_byte = np.zeros(k, dtype=np.intp)  # the highest byte a signal needs (for short frames)
        # integer signals wider than a float's 53 bits with an integer conversion: column -> (scale, offset,
        # unsigned 64-bit), for comparisons that must be exact (`exact`)
        self.wide: dict[int, tuple[int, int, bool]] = {}
        for i, name in enumerate(names):
            sig = sigs[name]
            n = int(sig.length)
            spans = byte_shifts(sig)
            self.last_byte[i] = max(b for b, _ in spans)
            outside = min(b for b, _ in spans) < 0 or self.last_byte[i] >= self.length
            if n <= 0 or n > 64 or len(spans) > MAX_SPAN or outside:
                self.fits[i] = False
                continue
            for j, (b, shift) in enumerate(spans):
                self.byte[i, j] = b
                self.left[i, j] = max(shift, 0)
                self.right[i, j] = max(-shift, 0)
            self.mask[i] = np.uint64((1 << n) - 1)
            self.bits[i] = n
            self.signed[i] = bool(sig.is_signed) and not sig.is_float
            conv = sig.conversion
            self.scale[i] = float(conv.scale)
            self.offset[i] = float(conv.offset)
            if sig.is_float:
                self.floats[i] = n
            elif n > 53 and type(conv.scale) is int and type(conv.offset) is int:
                self.wide[i] = (conv.scale, conv.offset, n == 64 and not sig.is_signed)
        self.any_signed = bool(self.signed.any())
        self.scaled = bool((self.scale != 1.0).any() or (self.offset != 0.0).any())

    def numbers(self, data: U8, cols: npt.NDArray[np.intp]) -> Numbers:
        """The signals `cols` (indexes into `names`) of every frame of `data` (frames × `length` bytes)."""
        f = data.shape[0]
        wide = np.zeros((f, self.length + 1), dtype=np.uint64)  # one zero column past the frame
        wide[:, : self.length] = data[:, : self.length]
        bits, signed = self.bits[cols], self.signed[cols]
        parts = wide[:, self.byte[cols]]  # frames × signals × bytes
        raw: U64 = np.bitwise_or.reduce((parts << self.left[cols]) >> self.right[cols], axis=2) & self.mask[cols]
        values = raw.view(np.int64)
        if signed.any():
            narrow = signed & (bits < 64)
            top = np.where(narrow, bits, np.uint64(0))
            negative = ((raw >> np.maximum(bits, np.uint64(1)) - np.uint64(1)) & np.uint64(1)).astype(bool) & narrow
            values = np.where(negative, (raw - (np.uint64(1) << top)).view(np.int64), values)
        phys = values.astype(np.float64)
        unsigned64 = ~signed & (bits == 64)
        if unsigned64.any():
            phys[:, unsigned64] = raw[:, unsigned64].astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN and infinities are values here
            for j, col in enumerate(cols.tolist()):
                n = self.floats.get(col)
                if n is not None:
                    kind = np.float32 if n == 32 else np.float64
                    phys[:, j] = raw[:, j].astype(np.uint32 if n == 32 else np.uint64).view(kind)
            if self.scaled:
                phys = phys * self.scale[cols] + self.offset[cols]
        if not self.fits[cols].all():
            phys[:, ~self.fits[cols]] = np.nan
        return Numbers(np.ascontiguousarray(values), phys)

    def present(self, lengths: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
        """frames × signals: whether a (possibly short) frame of these lengths holds each signal whole."""
        return (self.last_byte[None, :] < lengths[:, None]) & self.fits[None, :]

    def exact(self, raw: I64, col: int) -> list[int]:
        """A wide integer signal's (column `col`) scaled values exactly from its raw values `raw`, as
        Python integers (cantools' own arithmetic)."""
        scale, offset, unsigned = self.wide[col]
        values: list[int] = raw.tolist()
        if unsigned:
            values = [v & 0xFFFFFFFFFFFFFFFF for v in values]
        return [v * scale + offset for v in values]
