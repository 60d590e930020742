"""`float.__repr__` with a cache: the shortest repr of a float costs ten times a dict lookup, and BMS
readings repeat the same few thousand values (a uint16 register times a scale, a CAN signal's steps).

Only finite non-zero floats are cached (0.0 and -0.0 are equal keys with different reprs; NaN is
never equal to itself), so a value found is finite; the cache is bounded and starts over when full.
"""

from __future__ import annotations

from collections.abc import Sequence

CACHE_MAX = 32_768
_reprs: dict[float, str] = {}
float_reprs_cache = _reprs  # `.get(v)` of a float: its repr, or None (then use float_repr)
_repr = float.__repr__


def float_repr(v: float) -> str:
    """`float.__repr__(v)` of a float `v` (the caller checked its type: the cache would take 1 for 1.0)."""
    r = _reprs.get(v)
    if r is None:
        r = _repr(v)
        if v and v - v == 0.0:  # finite, not zero
            if len(_reprs) >= CACHE_MAX:
                _reprs.clear()
            _reprs[v] = r
    return r


def float_reprs(values: Sequence[float]) -> list[str]:
    """`[float.__repr__(v) for v in values]` of floats (the caller checked their types)."""
    out: list[str | None] = list(map(_reprs.get, values))
    if None in out:
        for i, r in enumerate(out):
            if r is None:
                out[i] = float_repr(values[i])
    return out  # type: ignore[return-value]  # every None was replaced
