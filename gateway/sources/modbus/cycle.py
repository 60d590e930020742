"""The columns of one poll cycle of one device, segment by segment, and the key tables of its shapes.

A cycle is a sequence of segments, one per block read (or left out): the block's decoded columns,
or value-less rows of one quality (bad, stale, comm_loss). A block gives the same rows either way, so
a cycle's key table depends only on which blocks it holds; `ShapeKeys` keeps one `Keys` per shape.
Points scaled by another register are scaled when the batch is made, from the registers the whole
cycle read (`aux`); `read` keeps each decoded block for that and for the device's fault log.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from gateway.model import F64, QUALITY_CODE, U8, Batch, DeviceStatus, Key, Keys, Quality, Value
from gateway.sources.modbus.decode import BlockDecoder, Decoded, Words
from gateway.sources.modbus.refs import RegKey

BAD = QUALITY_CODE[Quality.BAD]


class Segment(NamedTuple):
    """A block the cycle read: its first row in the cycle, its decoder and what it decoded."""

    base: int
    decoder: BlockDecoder
    decoded: Decoded


class Cycle:
    """The columns of one cycle, appended segment by segment; `bad` when any row has quality bad."""

    __slots__ = ("aux", "bad", "decoders", "objects", "quality", "read", "rows", "stamps", "values")

    def __init__(self) -> None:
        self.decoders: list[BlockDecoder] = []
        self.stamps: list[int] = []
        self.values: list[F64] = []
        self.quality: list[U8] = []
        self.objects: dict[int, Value] = {}
        self.rows = 0
        self.bad = False
        self.aux: dict[RegKey, int] = {}  # registers read for other points (scale factors, the clock)
        self.read: list[Segment] = []

    def decoded(self, decoder: BlockDecoder, words: Words, ts: int) -> None:
        d = decoder(words)
        self.read.append(Segment(self.rows, decoder, d))
        if d.aux:
            self.aux.update(d.aux)
        if d.objects:
            base = self.rows
            self.objects.update({base + i: v for i, v in d.objects.items()})
        self.bad = self.bad or d.bad
        self._add(decoder, ts, d.values, d.quality)

    def lost(self, decoder: BlockDecoder, ts: int, quality: str) -> None:
        """The block's rows without values, of one quality."""
        n = len(decoder)
        code = QUALITY_CODE[quality]
        self.bad = self.bad or code == BAD
        self._add(decoder, ts, np.full(n, math.nan), np.full(n, code, dtype=np.uint8))

    def _add(self, decoder: BlockDecoder, ts: int, values: F64, quality: U8) -> None:
        self.decoders.append(decoder)
        self.stamps.append(ts)
        self.values.append(values)
        self.quality.append(quality)
        self.rows += len(decoder)

    def batch(self, source: str, keys: Keys, status: DeviceStatus | None, created: int) -> Batch:
        """The cycle as the batch of device `source` over its key table."""
        sizes = [len(d) for d in self.decoders]
        ts = np.repeat(np.asarray(self.stamps, dtype=np.int64), sizes)
        values = np.concatenate(self.values) if self.values else np.zeros(0)
        quality = np.concatenate(self.quality) if self.quality else np.zeros(0, dtype=np.uint8)
        for seg in self.read:
            if seg.decoder.scaled is not None:
                seg.decoder.scaled.apply(seg.base, self.aux, values, quality)
        objects = self.objects or None
        return Batch(source, keys, ts, values, quality, None, objects, device=source, status=status, created=created)


class ShapeKeys:
    """One interned `Keys` per cycle shape (the blocks it holds, in order) of one device's rack."""

    LIMIT = 64  # shapes remembered (a device whose intervals come due in ever new combinations starts over)

    def __init__(self, rack: str) -> None:
        self.rack = rack
        self.by_shape: dict[tuple[BlockDecoder, ...], Keys] = {}

    def clear(self) -> None:
        """Forget every shape (the plan changed)."""
        self.by_shape.clear()

    def of(self, decoders: Sequence[BlockDecoder]) -> Keys:
        shape = tuple(decoders)
        keys = self.by_shape.get(shape)
        if keys is None:
            if len(self.by_shape) >= self.LIMIT:
                self.by_shape.clear()
            keys = self.by_shape[shape] = keys_of(shape, self.rack)
        return keys


def keys_of(decoders: Sequence[BlockDecoder], rack: str) -> Keys:
    """The interned key table of these blocks' rows, in order, on one rack."""
    return Keys.of(Key(k.quantity, k.unit, rack, k.module, k.cell) for d in decoders for k in d.rows)
