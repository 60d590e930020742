"""The retained state of one rack (pure): the latest entry of every quantity, kept as whole texts.

An entry is `"<state key>":{"v":..,"u":..,"ql":..,"ts":..}`. The points of one key table's rack come
with every batch of that table, so the state keeps one *segment* per table: its state keys (the plan's
list) and one text holding all their entries, separated by `SEPARATOR`.
A batch of the same table replaces its segment's text; a table whose keys no segment holds adds a
segment at the end. That is what a mapping of state key → entry would hold, in the same order (first
seen first), without an object per point. Only when a table's keys overlap another's (CAN windows that
carry different frames), or a table holds a key twice (several frames of one id in a window), does the
rack fall back to that mapping, once, for good.
"""

from __future__ import annotations

from gateway.sinks.columns import SEPARATOR

MAX_SEGMENTS = 32  # more tables than that for one rack: the mapping is cheaper than matching segments


class Segment:
    __slots__ = ("keys", "text")

    def __init__(self, keys: list[str], text: str) -> None:
        self.keys = keys  # the state keys of its entries, in order
        self.text = text  # their entries, SEPARATOR between two


class RackState:
    """One rack's retained state: segments, or (after keys overlapped) a mapping state key → entry."""

    __slots__ = ("entries", "segments")

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.entries: dict[str, str] | None = None

    def update(self, keys: list[str], text: str, unique: bool = True) -> None:
        """The latest entries of `keys` (their text, SEPARATOR between two), in place of earlier ones;
        `unique`: no key is in `keys` twice."""
        if self.entries is None and unique:
            for seg in self.segments:
                if seg.keys is keys or seg.keys == keys:
                    seg.keys, seg.text = keys, text
                    return
            if len(self.segments) < MAX_SEGMENTS and all(set(keys).isdisjoint(s.keys) for s in self.segments):
                self.segments.append(Segment(keys, text))
                return
        if self.entries is None:
            self.entries = {}
            for seg in self.segments:
                self.entries.update(zip(seg.keys, seg.text.split(SEPARATOR), strict=True))
            self.segments = []
        self.entries.update(zip(keys, text.split(SEPARATOR), strict=True))

    def text(self) -> str:
        """All entries as the inside of a JSON object."""
        if self.entries is not None:
            return ",".join(self.entries.values())
        if len(self.segments) == 1:
            return self.segments[0].text.replace(SEPARATOR, ",")
        return SEPARATOR.join(s.text for s in self.segments).replace(SEPARATOR, ",")

    def __len__(self) -> int:
        if self.entries is not None:
            return len(self.entries)
        return sum(len(s.keys) for s in self.segments)
