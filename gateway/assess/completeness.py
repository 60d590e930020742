"""Completeness of the record: how much of the window holds good data, and where it does not."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.assess.series import RackChunk

GAPS_KEPT = 1000


@dataclass(frozen=True, slots=True)
class Gap:
    start_ns: int  # the first step without a sample
    end_ns: int  # the next step with a sample (or the window's end)
    seconds: float


@dataclass(frozen=True, slots=True)
class CompletenessResult:
    coverage: float | None  # good samples present / expected, 0..1
    expected_steps: int
    good_steps: float  # sum over steps of the good fraction
    gaps: tuple[Gap, ...]  # the first GAPS_KEPT gaps
    gap_count: int
    gap_seconds: float
    comm_loss_seconds: float
    stale_seconds: float
    insufficient: str | None


@dataclass
class Completeness:
    """Expected against present good samples.

    Method: the window (`start_ns`..`end_ns`, default the first to the last step with a sample) holds
    `(end - start) / period` expected steps; each step counts the fraction of its core points (every
    cell voltage, the rack current, the pack voltage) that arrived good, and `coverage` is their sum over
    the expected steps. A **gap** is a run of at least `min_gap_steps` steps without any sample of the
    rack (before the first sample and after the last too, when the window is given); `comm_loss` and
    `stale` seconds count the steps where a sample had that quality (they are present, not gaps, but not
    good). Insufficient when the window holds no sample of the rack, or no step at all.
    """

    period_s: float
    start_ns: int | None = None
    end_ns: int | None = None  # exclusive
    min_gap_steps: int = 2
    _first: int | None = None
    _last: int | None = None  # the last step with a sample
    _good: float = 0.0
    _comm: int = 0
    _stale: int = 0
    _gaps: list[Gap] = field(default_factory=list)
    _gap_count: int = 0
    _gap_steps: int = 0

    def _steps(self, start: int, end: int) -> int:
        """The steps of a hole from `start` to `end`, or 0 when it is too short to be a gap."""
        steps = round((end - start) / (self.period_s * 1e9))
        return steps if steps >= self.min_gap_steps else 0

    def _gap(self, start: int, end: int) -> None:
        steps = self._steps(start, end)
        if steps == 0:
            return
        self._gap_count += 1
        self._gap_steps += steps
        if len(self._gaps) < GAPS_KEPT:
            self._gaps.append(Gap(start, end, steps * self.period_s))

    def update(self, chunk: RackChunk) -> None:
        t = chunk.t
        inside = np.ones(chunk.n, dtype=np.bool_)
        if self.start_ns is not None:
            inside &= t >= self.start_ns
        if self.end_ns is not None:
            inside &= t < self.end_ns
        present = chunk.present & inside
        rows = np.flatnonzero(present)
        if len(rows) == 0:
            return
        self._good += float(chunk.good[present].sum())
        self._comm += int((chunk.comm_loss & present).sum())
        self._stale += int((chunk.stale & present).sum())
        times = t[rows]
        period = chunk.period_ns
        if self._first is None:
            self._first = int(times[0])
            if self.start_ns is not None:
                self._gap(self.start_ns, int(times[0]))
        else:
            assert self._last is not None
            self._gap(self._last + period, int(times[0]))
        jumps = np.flatnonzero(np.diff(times) > period)
        for k in jumps.tolist():
            self._gap(int(times[k]) + period, int(times[k + 1]))
        self._last = int(times[-1])

    def result(self) -> CompletenessResult:
        p = self.period_s
        if self._first is None or self._last is None:
            return CompletenessResult(None, 0, 0.0, (), 0, 0.0, 0.0, 0.0, "no sample of the rack in the window")
        start = self.start_ns if self.start_ns is not None else self._first
        end = self.end_ns if self.end_ns is not None else self._last + int(p * 1e9)
        gaps, count, gap_steps = list(self._gaps), self._gap_count, self._gap_steps
        tail = 0 if self.end_ns is None else self._steps(self._last + int(p * 1e9), self.end_ns)
        if tail:
            count, gap_steps = count + 1, gap_steps + tail
            if len(gaps) < GAPS_KEPT:
                gaps.append(Gap(self._last + int(p * 1e9), self.end_ns or 0, tail * p))
        expected = round((end - start) / (p * 1e9))
        if expected <= 0:
            return CompletenessResult(None, 0, 0.0, (), 0, 0.0, 0.0, 0.0, "the window holds no step")
        coverage = min(1.0, self._good / expected)
        return CompletenessResult(coverage, expected, self._good, tuple(gaps), count, gap_steps * p,
                                  self._comm * p, self._stale * p, None)  # fmt: skip
