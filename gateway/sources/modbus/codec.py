"""Pure register codecs: 16-bit Modbus registers <-> typed values, for every byte and word order.

Byte and word order are named after the bytes of a 32-bit value `0xAABBCCDD` as they appear on the
wire: `ABCD` big-endian (the Modbus default), `CDAB` word-swapped (common on PLCs and BMSs), `BADC`
byte-swapped inside each register, `DCBA` fully little-endian. The same two rules extend to 16 and 64
bits: `BADC`/`DCBA` swap the two bytes of every register, `CDAB`/`DCBA` reverse the order of the
registers. Strings only follow the byte swap (their registers are always read first to last).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, Literal

ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]
BYTE_ORDERS: Final[tuple[ByteOrder, ...]] = ("ABCD", "DCBA", "BADC", "CDAB")

DataType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string", "bit", "bool"
]

# Width in registers of each fixed-width type; `string` takes its width from the profile, `bit` is
# one bit of one register, `bool` is one coil or discrete input.
WIDTH: Final[dict[str, int]] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "int64": 4,
    "uint64": 4,
    "float32": 2,
    "float64": 4,
    "bit": 1,
    "bool": 1,
}

_STRUCT: Final[dict[str, str]] = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "int64": ">q",
    "uint64": ">Q",
    "float32": ">f",
    "float64": ">d",
}


def _swaps(order: ByteOrder) -> tuple[bool, bool]:
    """(swap bytes inside each register, reverse the register order)."""
    return order in ("BADC", "DCBA"), order in ("CDAB", "DCBA")


def to_bytes(regs: Sequence[int], order: ByteOrder = "ABCD", *, reverse_words: bool = True) -> bytes:
    """The big-endian byte string of registers as read from the wire, put in ABCD order."""
    swap_bytes, swap_words = _swaps(order)
    words = list(regs)
    if swap_words and reverse_words:
        words.reverse()
    out = bytearray()
    for w in words:
        hi, lo = (w >> 8) & 0xFF, w & 0xFF
        out += bytes((lo, hi)) if swap_bytes else bytes((hi, lo))
    return bytes(out)


def from_bytes(data: bytes, order: ByteOrder = "ABCD", *, reverse_words: bool = True) -> list[int]:
    """The registers to put on the wire for a big-endian byte string (inverse of `to_bytes`)."""
    swap_bytes, swap_words = _swaps(order)
    words = []
    for i in range(0, len(data), 2):
        hi, lo = data[i], data[i + 1]
        words.append((lo << 8) | hi if swap_bytes else (hi << 8) | lo)
    if swap_words and reverse_words:
        words.reverse()
    return words


def text(regs: Sequence[int], order: ByteOrder = "ABCD") -> str:
    """The text of a string's registers (read first to last; only the byte swap applies), up to its first NUL."""
    data = to_bytes(regs, order, reverse_words=False)
    return data.split(b"\x00", 1)[0].decode("latin-1").rstrip(" ")


def encode(value: int | float | str, dtype: str, order: ByteOrder = "ABCD", width: int | None = None) -> list[int]:
    """Encode one value into registers (the inverse of the block decoder); ints are clamped to the type's range."""
    if dtype == "string":
        n = width if width is not None else max(1, (len(str(value)) + 1) // 2)
        data = str(value).encode("latin-1", "replace")[: 2 * n].ljust(2 * n, b"\x00")
        return from_bytes(data, order, reverse_words=False)
    fmt = _STRUCT.get(dtype)
    if fmt is None:
        raise ValueError(f"cannot encode a value as {dtype!r}")
    if dtype.startswith("float"):
        data = struct.pack(fmt, float(value))
    else:
        lo, hi = int_range(dtype)
        data = struct.pack(fmt, min(hi, max(lo, int(value))))
    return from_bytes(data, order)


def int_range(dtype: str) -> tuple[int, int]:
    """Smallest and largest value of an integer type."""
    bits = 16 * WIDTH[dtype]
    if dtype.startswith("u"):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
