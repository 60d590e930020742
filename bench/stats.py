"""Pure helpers of the bench: percentiles, medians with their runs' range, ratios, linear drift and the
result table."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    k = (len(xs) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (k - lo))


def median(values: Iterable[float]) -> float:
    xs = [v for v in values if not math.isnan(v)]
    return percentile(xs, 50) if xs else math.nan


def ratio(a: float, b: float) -> float:
    """a / b, NaN when either is missing or b is zero."""
    if math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (NaN with fewer than two points)."""
    n = len(xs)
    if n < 2:
        return math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def schedule_jitter(times: Sequence[float], interval: float) -> tuple[list[float], float]:
    """Cycle start deviations from a drift-free schedule, and the drift.

    `times` are cycle start times (s). The ideal k-th start is t0 + k*interval (k from the rounded
    elapsed time, so a skipped cycle is not counted as jitter). Returns (|deviation| per cycle after
    removing the median offset, in s; drift in s per hour: the slope of the deviation)."""
    if len(times) < 2:
        return [], math.nan
    t0 = times[0]
    ks = [round((t - t0) / interval) for t in times]
    dev = [t - (t0 + k * interval) for t, k in zip(times, ks, strict=True)]
    off = median(dev)
    jit = [abs(d - off) for d in dev]
    drift = slope([k * interval for k in ks], dev) * 3600.0
    return jit, drift


class Fig(float):
    """A median across runs that keeps the runs' range: the table prints `median [min–max]`.
    Arithmetic on it gives a plain float (a derived figure has no range of its own)."""

    __slots__ = ("hi", "lo", "n")
    lo: float
    hi: float
    n: int

    def __new__(cls, values: Iterable[float]) -> Fig:
        xs = [v for v in values if not math.isnan(v)]
        fig = super().__new__(cls, median(xs))
        fig.lo = min(xs) if xs else math.nan
        fig.hi = max(xs) if xs else math.nan
        fig.n = len(xs)
        return fig

    @property
    def spread(self) -> bool:
        """More than one run, and they differ."""
        return self.n > 1 and self.lo != self.hi


@dataclass
class Row:
    """One line of the result table: a metric of the gateway beside the naive baseline's."""

    scenario: str
    metric: str
    gateway: float = math.nan
    baseline: float = math.nan
    target: str = ""
    better: str = "higher"  # higher | lower: which way the ratio is read; "": no ratio (not comparable)
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        """How many times better the gateway is than the baseline (>1 is better)."""
        if self.better == "higher":
            return ratio(self.gateway, self.baseline)
        if self.better == "lower":
            return ratio(self.baseline, self.gateway)
        return math.nan


def fmt(v: float) -> str:
    """A figure with about three significant digits; a median of differing runs with its range."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, Fig) and v.spread and fmt(v.lo) != fmt(v.hi):
        return f"{fmt(float(v))} [{fmt(v.lo)}–{fmt(v.hi)}]"
    a = abs(v)
    if a >= 10_000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table (also valid Markdown)."""
    head = ["scenario", "metric", "gateway", "naive", "ratio", "target", "met", "note"]
    body = [
        [
            r.scenario,
            r.metric,
            fmt(r.gateway),
            fmt(r.baseline),
            "-" if math.isnan(r.ratio) else f"{r.ratio:.1f}x",
            r.target,
            {True: "yes", False: "NO", None: ""}[r.met],
            r.note,
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for b in body:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) + " |")
    return "\n".join(lines)


@dataclass
class Runs:
    """Repeated measurements of named figures; medians across runs, each with its range."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, **figures: float) -> None:
        for k, v in figures.items():
            self.values.setdefault(k, []).append(float(v))

    def med(self, key: str) -> float:
        """The median, as a `Fig` that carries the runs' range into the table."""
        return Fig(self.values.get(key, []))

    def max(self, key: str) -> float:
        xs = [v for v in self.values.get(key, []) if not math.isnan(v)]
        return max(xs) if xs else math.nan
