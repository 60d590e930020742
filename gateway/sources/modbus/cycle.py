"""The samples of one poll cycle of one device as they are read, and the shape they have.

A cycle is a sequence of segments, one per block read (or per block left out): the block's decoded
samples, or its value-less samples of one quality (bad, comm_loss). Which samples a segment holds
depends only on the block and on which of the two it is, so the cycle's shape, the list of
(decoder, decoded) pairs, fixes the batch's `Layout`; `Layouts` keeps one Layout object per shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.model import Layout, Quality, Sample
from gateway.sources.modbus.decode import BlockDecoder, Keys, point_keys
from gateway.sources.modbus.plan import Point

Shape = tuple[tuple[BlockDecoder, bool], ...]


class Cycle:
    """Samples of one cycle, appended segment by segment; `bad` when any of them has quality bad,
    `short` when a response held fewer registers than asked for (its samples have no fixed shape: a
    value too short to decode is one bad sample without its flags)."""

    __slots__ = ("bad", "samples", "shape", "short")

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.shape: list[tuple[BlockDecoder, bool]] = []
        self.bad = self.short = False

    def decoded(self, decoder: BlockDecoder, words: Sequence[int | bool], ts: int, rack: str) -> None:
        if decoder.into(self.samples, words, ts, rack):
            self.bad = True
        if len(words) < decoder.block.count:
            self.short = True
        self.shape.append((decoder, True))

    def quality(self, decoder: BlockDecoder, ts: int, rack: str, quality: str) -> None:
        decoder.quality_into(self.samples, ts, rack, quality)
        if quality == Quality.BAD:
            self.bad = True
        self.shape.append((decoder, False))


class Layouts:
    """One `Layout` per cycle shape of a device (and one for its offline batch), kept while its plan
    holds. Shapes with equal content share one Layout object."""

    LIMIT = 64  # shapes remembered (a device whose blocks fail in ever new combinations starts over)

    def __init__(self, rack: str) -> None:
        self.rack = rack
        self.by_shape: dict[Shape, Layout] = {}
        self.by_digest: dict[str, Layout] = {}
        self.offline: Layout | None = None

    def clear(self) -> None:
        """Forget every layout (the plan changed)."""
        self.by_shape.clear()
        self.by_digest.clear()
        self.offline = None

    def of_cycle(self, cycle: Cycle) -> Layout | None:
        """The layout of a cycle's samples; None for a cycle without samples or with a short response."""
        if not cycle.samples or cycle.short:
            return None
        shape = tuple(cycle.shape)
        layout = self.by_shape.get(shape)
        if layout is None:
            if len(self.by_shape) >= self.LIMIT:
                self.clear()
            keys: Keys = []
            segments: list[tuple[int, int]] = []
            for decoder, decoded in shape:
                start = len(keys)
                keys += decoder.decoded_keys() if decoded else decoder.quality_keys()
                segments.append((start, len(keys)))
            layout = self.by_shape[shape] = self._unique(keys, segments)
        return layout

    def of_points(self, points: Sequence[Point]) -> Layout | None:
        """The layout of `quality_samples(points)` in one segment (the offline batch of the device)."""
        if not points:
            return None
        if self.offline is None:
            keys = point_keys(points)
            self.offline = self._unique(keys, [(0, len(keys))])
        return self.offline

    def _unique(self, keys: Keys, segments: list[tuple[int, int]]) -> Layout:
        rack = self.rack
        layout = Layout([(q, u, rack, m, c) for q, u, m, c in keys], segments)
        return self.by_digest.setdefault(layout.digest, layout)
