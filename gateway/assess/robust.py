"""Robust statistics shared by the estimators: median/MAD z-scores and a bounded uniform sample."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from gateway.model import F64

MAD_SD = 1.4826  # MAD × this estimates the standard deviation of normal data


@contextmanager
def quiet() -> Iterator[None]:
    """No warnings from numpy for empty or all-NaN slices and NaN arithmetic: NaN is the answer there."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def robust_sd(x: F64) -> float:
    """1.4826 × the median absolute deviation of the finite values (NaN when there are none)."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan")
    return float(MAD_SD * np.median(np.abs(x - np.median(x))))


def robust_z(x: F64, floor: float = 0.0) -> F64:
    """(x - median) / max(robust sd, floor) per value; NaN stays NaN. `floor` keeps a tight family
    (a MAD near zero) from making a tiny difference look large."""
    finite = x[np.isfinite(x)]
    if len(finite) == 0:
        return np.full(len(x), np.nan)
    sd = max(robust_sd(finite), floor, 1e-300)
    return (x - float(np.median(finite))) / sd


class Reservoir:
    """A uniform random sample of at most `size` values of a stream (Vitter's algorithm R, seeded, so
    the same stream gives the same sample): medians and MADs of a long window in bounded memory."""

    def __init__(self, size: int = 100_000, seed: int = 15) -> None:
        self.size = size
        self.seen = 0
        self._buf = np.empty(size, dtype=np.float64)
        self._rng = np.random.default_rng(seed)

    def add(self, values: F64) -> None:
        values = values[np.isfinite(values)]
        room = self.size - min(self.seen, self.size)
        head = values[:room]
        self._buf[self.seen : self.seen + len(head)] = head
        self.seen += len(head)
        rest = values[len(head) :]
        if len(rest) == 0:
            return
        # The i-th value of the stream (0-based) replaces a random slot with probability size/(i+1).
        seen = self.seen + np.arange(len(rest))
        j = (self._rng.random(len(rest)) * (seen + 1)).astype(np.int64)
        keep = j < self.size
        self._buf[j[keep]] = rest[keep]
        self.seen += len(rest)

    def values(self) -> F64:
        return self._buf[: min(self.seen, self.size)]
