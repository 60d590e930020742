"""Where signals sit in a CAN frame, and which of them share a bit.

A frame holds at most 64 bytes (512 bits). `OverlapFinder` keeps, for each group of signals that can
be in one frame together (a message's plain signals; those under each value of a multiplexer), the
first two owners of every bit. The first earlier signal that overlaps a new one is then found by
visiting the new signal's own bits: the work grows with the number of signal bits, never with pairs
of signals (a message of 20,000 signals is checked in one pass).

Two signals can be in one frame unless, at the deepest multiplexer both sit under (directly, or through
a nested multiplexer), their values have none in common: signals under different values of one
multiplexer never overlap, whatever their bits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.sources.can.dbcrepair import Repair


def signal_bits(sig: Any) -> set[int]:
    """The bit positions (0 = LSB of byte 0) a signal occupies, in either byte order."""
    if sig.byte_order == "little_endian":
        return set(range(sig.start, sig.start + sig.length))
    bits = set()
    pos = sig.start
    for _ in range(sig.length):
        bits.add(pos)
        pos = pos + 15 if pos % 8 == 0 else pos - 1
    return bits


@dataclass(slots=True)
class _Owners:
    """The first signal on a bit, and the first one with another name (duplicates never overlap themselves)."""

    order: int
    name: str
    other_order: int = -1
    other_name: str = ""

    def first_other_than(self, name: str) -> int:
        return self.order if self.name != name else self.other_order

    def add(self, order: int, name: str) -> None:
        if self.other_order < 0 and name != self.name:
            self.other_order, self.other_name = order, name


_Group = dict[int, _Owners]  # bit -> its first owners
MuxPath = Sequence[tuple[str, Sequence[int]]]  # (multiplexer, its values) from the top one down to the signal's


class OverlapFinder:
    """Signals of one message, added in file order; `add` names the first earlier one it overlaps.

    A signal's place is its multiplexer path: (multiplexer, values) from the message's top multiplexer
    down to its own (empty for a plain signal). Two signals can share a frame unless, at the deepest
    multiplexer both sit under, their values have none in common. An earlier signal is kept, per
    multiplexer value it sits under, in the group of the next multiplexer on its path (None: none),
    so the groups a new signal looks in are exactly those of the signals it can share a frame with.
    """

    def __init__(self) -> None:
        self.visits = 0  # bit lookups and updates done: the work, for tests
        self._names: list[str] = []
        self._every: _Group = {}  # every signal so far: a plain signal can be in a frame with any
        self._plain: _Group = {}  # plain signals (and multiplexers that are not multiplexed themselves)
        self._root: dict[str, _Group] = {}  # top multiplexer -> every signal under it
        self._node: dict[tuple[str, int, str | None], _Group] = {}  # (mux, value, next mux on the path)
        self._next: dict[tuple[str, int], dict[str | None, None]] = {}  # (mux, value) -> next muxes seen

    def add(self, name: str, bits: Iterable[int], path: MuxPath = ()) -> str | None:
        """Record a signal; the name of the first earlier signal sharing a bit with it in some frame, or None."""
        bits = tuple(bits)
        steps = [(mux, tuple(dict.fromkeys(ids))) for mux, ids in path]
        first = self._first(self._groups_to_check(steps), bits, name)
        order = len(self._names)
        self._names.append(name)
        targets = [self._every]
        if not steps:
            targets.append(self._plain)
        else:
            targets.append(self._root.setdefault(steps[0][0], {}))
        for j, (mux, ids) in enumerate(steps):
            after = steps[j + 1][0] if j + 1 < len(steps) else None
            for v in ids:
                self._next.setdefault((mux, v), {})[after] = None
                targets.append(self._node.setdefault((mux, v, after), {}))
        for group in targets:
            self._put(group, bits, order, name)
        return None if first < 0 else self._names[first]

    def _groups_to_check(self, steps: list[tuple[str, tuple[int, ...]]]) -> list[_Group]:
        if not steps:
            return [self._every]
        groups = [self._plain, *(g for m, g in self._root.items() if m != steps[0][0])]
        for j, (mux, ids) in enumerate(steps):
            mine = steps[j + 1][0] if j + 1 < len(steps) else ""  # "" excludes nothing at the last level
            for v in ids:
                for after in self._next.get((mux, v), ()):
                    if after != mine:  # not under the next multiplexer of this signal's own path
                        groups.append(self._node[(mux, v, after)])
        return groups

    def _first(self, groups: list[_Group], bits: tuple[int, ...], name: str) -> int:
        best = -1
        for group in groups:
            self.visits += len(bits)
            for b in bits:
                owners = group.get(b)
                if owners is not None:
                    o = owners.first_other_than(name)
                    if o >= 0 and (best < 0 or o < best):
                        best = o
        return best

    def _put(self, group: _Group, bits: tuple[int, ...], order: int, name: str) -> None:
        self.visits += len(bits)
        for b in bits:
            owners = group.get(b)
            if owners is None:
                group[b] = _Owners(order, name)
            else:
                owners.add(order, name)


def mux_path(sig: Any, by_name: dict[str, Any]) -> list[tuple[str, Sequence[int]]]:
    """(multiplexer, values) from the top multiplexer down to the signal's own (empty: a plain signal)."""
    out: list[tuple[str, Sequence[int]]] = []
    seen: set[str] = set()
    while sig is not None and sig.multiplexer_signal is not None and sig.multiplexer_signal not in seen:
        seen.add(sig.multiplexer_signal)
        out.append((sig.multiplexer_signal, sig.multiplexer_ids or ()))
        sig = by_name.get(sig.multiplexer_signal)
    out.reverse()
    return out


_BLOCK = re.compile(r"\s*BO_\s+\d+\s+(\w+)\s*:")
_SG = re.compile(r"SG_\s+(\w+)")


def signal_lines(text: str) -> dict[str, tuple[int, dict[str, list[int]]]]:
    """Message name -> (line of its BO_, signal name -> lines of its SG_ statements), in one pass.

    A message defined twice keeps its first block (cantools keeps the first, too)."""
    out: dict[str, tuple[int, dict[str, list[int]]]] = {}
    current: dict[str, list[int]] | None = None
    for i, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        m = _BLOCK.match(line)
        if m is not None or stripped.startswith("BO_ "):
            current = None
            if m is not None and m.group(1) not in out:
                current = {}
                out[m.group(1)] = (i, current)
        elif current is not None:
            m = _SG.match(stripped)
            if m is not None:
                current.setdefault(m.group(1), []).append(i)
    return out


def find_defects(db: Any, text: str) -> list[Repair]:
    """Every signal defect strict loading rejects and lenient loading repairs, message by message."""
    places = signal_lines(text)
    out: list[Repair] = []
    for msg in db.messages:
        mline, lines = places.get(msg.name, (0, {}))

        def line_of(name: str, nth: int = 1, mline: int = mline, lines: dict[str, list[int]] = lines) -> int:
            found = lines.get(name, ())
            return found[nth - 1] if len(found) >= nth else mline

        counts: dict[str, int] = {}
        for sig in msg.signals:
            n = counts[sig.name] = counts.get(sig.name, 0) + 1
            if n > 1:
                out.append(
                    Repair(
                        msg.name, sig.name, "duplicate signal name", f"renamed {sig.name}__{n}", line_of(sig.name, n)
                    )
                )
        nbits = 8 * msg.length
        finder = OverlapFinder()
        by_name: dict[str, Any] = {}
        for sig in msg.signals:
            by_name.setdefault(sig.name, sig)
        for sig in msg.signals:
            bits = signal_bits(sig)
            if any(b < 0 or b >= nbits for b in bits):
                fit = f"does not fit in the {msg.length}-byte frame (start {sig.start}, length {sig.length})"
                out.append(Repair(msg.name, sig.name, fit, "dropped", line_of(sig.name)))
                continue
            other = finder.add(sig.name, bits, mux_path(sig, by_name))
            if other is not None:
                out.append(Repair(msg.name, sig.name, f"overlaps signal {other}", "both kept", line_of(sig.name)))
    return out
