"""Which points of a batch share a line-protocol line, and in what order (pure).

A line is one (time unit of the precision, series, quality): points with the same level and tags,
read in the same millisecond (say), share it, unless one field would come twice in it (then only the
points of the same nanosecond do; the clock guard moves the later one a unit on). Lines come in the
order their first points do; a line's points keep the batch's order.

What a batch's lines are depends only on its key table, which of its points hold a value, their
qualities and which of its time runs (the points of one block read share a time) fall in one unit.
In steady state every batch of a device has the same of all four, so its `LineGroups` is kept
(`GroupsCache`: a few per rack shape, shared by the key tables of the racks of that shape, whose
batches take turns with the same few) and found again from the batch's time runs: where they start,
and which runs that hold a series in common share a unit (runs that share no series cannot share a
line, so when they fall in one millisecond the lines are still the same).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from gateway.lru import LruCache
from gateway.model import I64, QUALITIES, U8
from gateway.sinks.columns import Texts, every, occurrences

IntArr = npt.NDArray[np.intp]
Bools = npt.NDArray[np.bool_]

MAX_RUNS = 64  # a batch with more time runs (a CAN window: a time per frame) is laid out each time
# Points of line groupings kept per rack shape (the time-run patterns its racks' batches take turns with):
# 8 groupings of a 1,000-point rack, 2 of a 4,000-point CAN window; at least one.
KEPT_POINTS = 8192


class RunKey(NamedTuple):
    """What the lines of a batch with every point written and one quality depend on."""

    quality: int
    points: int
    starts: bytes  # where its time runs start
    same_unit: bytes  # which runs holding a series in common share a unit of the precision (packed bits)
    same_time: bytes  # ... and which share a nanosecond


@dataclass(frozen=True, slots=True)
class LineGroups:
    """The lines of a batch: its points with a value in line order, and where each line starts and ends."""

    members: IntArr  # the points that are written, a line's points together, lines in order
    firsts: IntArr  # each line's first point
    starts: IntArr | None  # each line's first position in `members`; None: every line has one point
    ends: IntArr | None  # each line's last position in `members`
    heads: Texts  # per member: its field, ` <field>=` when it is the first of its line, else `,<field>=`
    whole: bool  # `members` is every point of the batch in order (and each its own line)
    distinct: bool  # no two lines have the same series and quality (the clock guard's check)


def line_groups(
    series: I64,
    field_ids: I64,
    heads: Texts,
    idx: IntArr,
    quality: U8,
    times: I64,
    div: int,
    commas: Texts | None = None,
) -> LineGroups:
    """The lines of the points `idx` (their qualities and times given) of a table whose points have the
    series numbers `series`, field numbers `field_ids` and fields `heads` (` <field>=`); `commas`, the
    same fields as a line's later field (`,<field>=`), made here when not given."""
    first, inverse = _group_points(series, field_ids, idx, quality, times, div)
    firsts_at = np.sort(first)  # lines in the order of their first points
    firsts = idx[firsts_at]
    n_lines = len(firsts)
    key = series[firsts] * len(QUALITIES) + quality[firsts_at]
    ordered = np.sort(key)
    distinct = not bool((ordered[1:] == ordered[:-1]).any())
    if n_lines == len(idx):  # (idx is every point in order when it is as long as the table)
        whole = len(idx) == len(series)
        return LineGroups(idx, firsts, None, None, heads if whole else heads[idx], whole, distinct)
    rank = np.empty(n_lines, dtype=np.intp)
    rank[np.argsort(first, kind="stable")] = np.arange(n_lines)
    line_of = rank[inverse]
    members = idx[np.argsort(line_of, kind="stable")]
    ends = np.cumsum(np.bincount(line_of, minlength=n_lines)) - 1
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.intp)
    later = np.ones(len(members), dtype=np.bool_)
    later[starts] = False
    member_heads = heads[members]
    member_heads[later] = (comma_heads(heads) if commas is None else commas)[members[later]]
    return LineGroups(members, firsts, starts, ends.astype(np.intp), member_heads, False, distinct)


def comma_heads(heads: Texts) -> Texts:
    """Each field as a line's later field: `,<field>=` for ` <field>=`."""
    out = np.empty(len(heads), dtype=object)
    out[:] = [sys.intern("," + h[1:]) for h in heads.tolist()]
    return out


def _group_points(
    series_of: I64, field_ids: I64, idx: IntArr, quality: U8, times: I64, div: int
) -> tuple[IntArr, IntArr]:
    """A line per (time, series, quality): each line's first point (as `np.unique`'s `return_index`, a
    position in `idx`) and each point's line. If one field would come twice in a line, the time is
    taken to the nanosecond instead; if it still would (two frames of one CAN message in one batch
    window share its time), the line is split: the k-th reading of a field goes to the k-th line of
    that series and time, which the clock guard moves k units on. No value overwrites another."""
    series = series_of[idx]
    width = int(series_of.max()) + 1
    while True:
        time_no = np.unique(times // div, return_inverse=True)[1].reshape(-1)
        group = (time_no * width + series) * len(QUALITIES) + quality
        _, first, inverse = np.unique(group, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if len(first) == len(idx):
            return first, inverse
        fields = inverse * (int(field_ids.max()) + 1) + field_ids[idx]
        pairs = np.sort(fields)
        if not (pairs[1:] == pairs[:-1]).any():
            return first, inverse
        if div == 1:
            rank = occurrences(fields)
            _, first, inverse = np.unique(inverse * (int(rank.max()) + 1) + rank, return_index=True,
                                          return_inverse=True)  # fmt: skip
            return first, inverse.reshape(-1)
        div = 1


class GroupsCache:
    """What the lines of a key table depend on of its keys (series, field numbers, fields), the line
    groupings of its batches by their time runs (up to KEPT_POINTS points of them, the least recently used
    forgotten first) and which of its time runs hold a series in common, by where the runs start. The
    same for the tables of racks of one shape: one object for them all, so a 100-rack site keeps the few
    groupings its racks' batches take turns with once, not once per rack."""

    __slots__ = ("commas", "field_ids", "groups", "heads", "series", "shared")

    def __init__(self, series: I64, field_ids: I64, heads: Texts) -> None:
        self.series = series  # each point's series number
        self.field_ids = field_ids  # each point's field number
        self.heads = heads  # each point's field, ` <field>=`
        self.commas: Texts | None = None  # `comma_heads(heads)`, made the first time a line has two points
        kept = max(1, KEPT_POINTS // max(1, len(series)))
        self.groups: LruCache[RunKey, LineGroups] = LruCache(kept)
        self.shared: LruCache[bytes, Bools] = LruCache(kept)  # run starts -> runs x runs: a series in common

    def of(self, valid: Bools, quality: U8, times: I64, div: int) -> LineGroups:
        """Which points of a batch share a line (`valid`: which points are written)."""
        key = self._key(valid, quality, times, div)
        got = self.groups.get(key) if key is not None else None
        if got is None:
            idx = np.flatnonzero(valid)
            if self.commas is None:
                self.commas = comma_heads(self.heads)
            got = line_groups(self.series, self.field_ids, self.heads, idx, quality[idx], times[idx], div, self.commas)
            if key is not None:
                self.groups.put(key, got)
        return got

    def _key(self, valid: Bools, quality: U8, times: I64, div: int) -> RunKey | None:
        """What the lines of a batch with every point written and one quality depend on; None for
        other batches (laid out each time)."""
        n = len(times)
        code = int(quality[0])
        if not every(valid) or not every(quality == code):
            return None
        cut = np.flatnonzero(times[1:] != times[:-1]) + 1
        if len(cut) >= MAX_RUNS:
            return None
        starts = cut.tobytes()
        shared = self.shared.get(starts)
        if shared is None:
            run_of = np.zeros(n, dtype=np.intp)
            run_of[cut] = 1
            held = np.zeros((len(cut) + 1, int(self.series.max()) + 1), dtype=np.bool_)
            held[np.cumsum(run_of), self.series] = True
            shared = held @ held.T
            self.shared.put(starts, shared)
        at = times[np.concatenate(([0], cut))]
        units = at // div
        same_unit = np.packbits((units[:, None] == units[None, :]) & shared).tobytes()
        same_time = np.packbits((at[:, None] == at[None, :]) & shared).tobytes()
        return RunKey(code, n, starts, same_unit, same_time)
