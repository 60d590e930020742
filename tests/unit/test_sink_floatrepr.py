"""The cached float repr is `float.__repr__`, also for zeros of either sign, NaN and after starting over."""

from __future__ import annotations

import random

import pytest

from gateway.sinks import floatrepr
from gateway.sinks.floatrepr import float_repr, float_reprs


def test_same_as_repr_for_odd_floats() -> None:
    odd = [0.0, -0.0, 0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e308, 5e-324, 0.1, 1 / 3, 3.2]
    for _ in range(2):  # cold and cached
        assert float_reprs(odd) == [float.__repr__(v) for v in odd]
        assert [float_repr(v) for v in odd] == [float.__repr__(v) for v in odd]
    assert 0.0 not in floatrepr._reprs


def test_bounded_and_same_after_starting_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(floatrepr, "CACHE_MAX", 100)
    rnd = random.Random(1)
    values = [round(rnd.uniform(2.5, 4.2), 3) for _ in range(1000)]
    assert float_reprs(values) == [float.__repr__(v) for v in values]
    assert len(floatrepr._reprs) <= 100
    assert float_reprs(values) == [float.__repr__(v) for v in values]
