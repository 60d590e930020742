"""Inline SVG charts for the assessment report, drawn in Python (no script, no font, no external file).

Every text that reaches the SVG is escaped (`html.escape`). Series come downsampled (gateway.assess.traces):
a min/max pair per time bucket is drawn as a vertical stroke from min to max joined to the next, so
spikes stay visible however many samples a bucket holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

import numpy as np

from gateway.model import F64, I64

W, H = 900, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 26, 34
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    lo: F64
    hi: F64
    color: str = COLORS[0]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]


def _label(v: float) -> str:
    return f"{v:.4g}"


def _time_label(ns: int, span_ns: int) -> str:
    dt = datetime.fromtimestamp(ns / 1e9, UTC)
    return dt.strftime("%m-%d %H:%M" if span_ns > 2 * 86_400e9 else "%H:%M:%S" if span_ns < 600e9 else "%H:%M")


class Frame:
    """A chart's plotting area: data ranges to pixels, axes and a title."""

    def __init__(self, title: str, x0: float, x1: float, y0: float, y1: float, width: int = W, height: int = H):
        self.title, self.w, self.h = title, width, height
        if x1 <= x0:
            x1 = x0 + 1
        if not (math.isfinite(y0) and math.isfinite(y1)):
            y0, y1 = 0.0, 1.0
        pad = (y1 - y0) * 0.05 or max(abs(y0) * 0.05, 0.05)
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0 - pad, y1 + pad
        self.parts: list[str] = []

    def px(self, x: F64 | float) -> F64:
        return LEFT + (np.asarray(x, dtype=np.float64) - self.x0) / (self.x1 - self.x0) * (self.w - LEFT - RIGHT)

    def py(self, y: F64 | float) -> F64:
        return self.h - BOTTOM - (np.asarray(y, dtype=np.float64) - self.y0) / (self.y1 - self.y0) * (
            self.h - TOP - BOTTOM)  # fmt: skip

    def axes(self, y_unit: str, x_ticks: Sequence[tuple[float, str]], y_ticks: bool = True) -> None:
        p = self.parts
        bottom, right = self.h - BOTTOM, self.w - RIGHT
        p.append(f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" class="plot"/>')
        for v in nice_ticks(self.y0, self.y1) if y_ticks else []:
            y = float(self.py(v))
            p.append(f'<line x1="{LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(_label(v))}</text>')  # fmt: skip
        for x, text in x_ticks:
            xp = float(self.px(x))
            p.append(f'<line x1="{xp:.1f}" x2="{xp:.1f}" y1="{TOP}" y2="{bottom}" class="grid"/>'
                     f'<text x="{xp:.1f}" y="{bottom + 16}" text-anchor="middle">{escape(text)}</text>')  # fmt: skip
        p.append(f'<text x="{LEFT}" y="16" class="title">{escape(self.title)}</text>'
                 f'<text x="{LEFT - 6}" y="16" text-anchor="end">{escape(y_unit)}</text>')  # fmt: skip

    def polyline(self, x: F64, y: F64, color: str, width: float = 1.2, opacity: float = 1.0) -> None:
        """Segments between NaNs as polylines."""
        ok = np.isfinite(x) & np.isfinite(y)
        xs, ys = self.px(x), self.py(y)
        cuts = np.flatnonzero(np.diff(ok.astype(np.int8)) != 0) + 1
        for seg in np.split(np.arange(len(x)), cuts):
            if len(seg) == 0 or not ok[seg[0]]:
                continue
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs[seg].tolist(), ys[seg].tolist(), strict=True))
            if len(seg) == 1:
                pts += f" {xs[seg[0]] + 1:.1f},{ys[seg[0]]:.1f}"
            self.parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}" '
                              f'stroke-opacity="{opacity}"/>')  # fmt: skip

    def legend(self, items: Sequence[tuple[str, str]]) -> None:
        x = self.w - RIGHT
        for label, color in reversed(items):
            text = escape(label)
            x -= 14 + 7 * len(label)
            self.parts.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{color}"/>'
                              f'<text x="{x + 13}" y="17">{text}</text>')  # fmt: skip

    def svg(self, css_class: str = "chart") -> str:
        body, label = "".join(self.parts), escape(self.title)
        return (f'<svg class="{css_class}" width="{self.w}" height="{self.h}" viewBox="0 0 {self.w} {self.h}" '
                f'role="img" aria-label="{label}">{body}</svg>')  # fmt: skip


def time_ticks(t0: int, t1: int, n: int = 6) -> list[tuple[float, str]]:
    if t1 <= t0:
        return [(float(t0), _time_label(t0, 0))]
    return [(float(t), _time_label(int(t), t1 - t0)) for t in np.linspace(t0, t1, n)]


def empty(title: str, why: str) -> str:
    f = Frame(title, 0, 1, 0, 1, height=70)
    f.parts.append(f'<text x="{LEFT}" y="16" class="title">{escape(title)}</text>'
                   f'<text x="{LEFT}" y="44" class="why">insufficient data: {escape(why)}</text>')  # fmt: skip
    return f.svg()


def time_chart(title: str, unit: str, t: I64, series: Sequence[Series], width_ns: int) -> str:
    """Min/max envelopes over time (see the module docstring)."""
    finite = [np.concatenate([s.lo[np.isfinite(s.lo)], s.hi[np.isfinite(s.hi)]]) for s in series]
    values = np.concatenate(finite) if finite else np.zeros(0)
    if len(t) == 0 or len(values) == 0:
        return empty(title, "no values in the window")
    t1 = int(t[-1]) + width_ns
    f = Frame(title, float(t[0]), float(t1), float(values.min()), float(values.max()))
    f.axes(unit, time_ticks(int(t[0]), t1))
    mid = t.astype(np.float64) + width_ns / 2
    x = np.repeat(mid, 2)
    for s in series:
        y = np.column_stack([s.lo, s.hi]).ravel()
        f.polyline(x, y, s.color)
    if len(series) > 1:
        f.legend([(s.label, s.color) for s in series])
    return f.svg()


def cell_chart(title: str, lines: Sequence[tuple[F64, str, float]], n_cells: int, why: str) -> str:
    """Per-cell values (x: the cell's position in the rack), one line per (values, color, opacity)."""
    vals = np.concatenate([v[np.isfinite(v)] for v, _, _ in lines]) if lines else np.zeros(0)
    if len(vals) == 0:
        return empty(title, why)
    f = Frame(title, 1, max(2, n_cells), float(vals.min()), float(vals.max()))
    ticks = nice_ticks(1, n_cells, 8)
    f.axes("V", [(v, f"{v:g}") for v in ticks if 1 <= v <= n_cells])
    x = np.arange(1, n_cells + 1, dtype=np.float64)
    for v, color, opacity in lines:
        f.polyline(x, v, color, 1.0, opacity)
    return f.svg()


def bar_chart(title: str, unit: str, labels: Sequence[str], values: Sequence[float], ref: float | None,
              ref_label: str, why: str) -> str:  # fmt: skip
    """One bar per value, with a reference line (e.g. the nominal capacity)."""
    if not values:
        return empty(title, why)
    top = max([*values, ref or 0.0])
    f = Frame(title, 0, len(values), 0.0, top)
    f.axes(unit, [(k + 0.5, lab) for k, lab in enumerate(labels)] if len(labels) <= 20 else [])
    width = float(f.px(1) - f.px(0)) * 0.7
    for k, v in enumerate(values):
        x, y = float(f.px(k + 0.15)), float(f.py(v))
        tip = escape(f"{labels[k]}: {v:.2f} {unit}")
        f.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{float(f.py(0)) - y:.1f}" '
                       f'fill="{COLORS[0]}"><title>{tip}</title></rect>')  # fmt: skip
    if ref is not None:
        y = float(f.py(ref))
        f.parts.append(f'<line x1="{LEFT}" x2="{f.w - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{COLORS[1]}" '
                       'stroke-dasharray="6 4"/>')  # fmt: skip
        f.legend([(ref_label, COLORS[1])])
    return f.svg()


def timeline(title: str, t: I64, width_ns: int, state: dict[str, F64], window: tuple[int, int]) -> str:
    """The record per bucket, as fractions of its steps stacked: good (green), comm loss (red), stale
    (amber), present but neither (grey); the rest is empty (white: a gap)."""
    t0, t1 = window
    f = Frame(title, float(t0), float(max(t1, t0 + 1)), 0.0, 1.0, height=110)
    f.y0, f.y1 = 0.0, 1.0
    f.axes("", time_ticks(t0, t1), y_ticks=False)
    top, bottom = float(f.py(1.0)), float(f.py(0.0))
    w = max(0.5, float(f.px(t0 + width_ns) - f.px(t0))) + 0.5  # overlapping a little: no hairline between
    for k in range(len(t)):
        x = float(f.px(float(t[k])))
        y = top
        for name, color in (("good", "#2ca02c"), ("comm_loss", "#d62728"), ("stale", "#ffbf00"), ("other", "#999999")):
            frac = float(min(1.0, max(0.0, state[name][k])))
            if frac <= 0:
                continue
            h = min(frac * (bottom - top), bottom - y)
            if h <= 0:
                break
            f.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.2f}" height="{h:.1f}" fill="{color}"/>')
            y += h
    f.legend([("good", "#2ca02c"), ("comm loss", "#d62728"), ("stale", "#ffbf00"), ("other", "#999999")])
    return f.svg("chart timeline")
