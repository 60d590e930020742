"""A value's text is `repr(float)`, made once per distinct value of a column; the texts of values seen
lately are kept in a bounded table, so the next poll's readings (mostly the same values) are not
formatted again."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.sinks import columns
from gateway.sinks.columns import number_texts


def poll(seed: int) -> np.ndarray:
    i = np.arange(1000)
    return np.where(i < 800, 3.3 + ((i * 13 + seed) % 50) / 1000, 25 + ((i * 3 + seed) % 40) / 10)


def test_the_next_poll_s_values_are_not_formatted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    formatted: list[float] = []

    def counted(v: float) -> str:
        formatted.append(v)
        return float.__repr__(v)

    monkeypatch.setattr(columns, "_texts", {})
    monkeypatch.setattr(columns, "_repr", counted)
    first = number_texts(poll(0))
    assert len(formatted) == 90 and first.tolist() == [float.__repr__(v) for v in poll(0).tolist()]
    second = number_texts(poll(1))  # the same values at other points
    assert len(formatted) == 90 and second.tolist() == [float.__repr__(v) for v in poll(1).tolist()]


def test_the_table_is_bounded_and_zeros_keep_their_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns, "TEXTS_MAX", 100)
    monkeypatch.setattr(columns, "_texts", {})
    for k in range(20):
        values = np.arange(40, dtype=np.float64) + k * 40 + 0.5
        assert number_texts(np.repeat(values, 2)).tolist() == [repr(float(v)) for v in np.repeat(values, 2)]
        assert len(columns._texts) <= 100 + 40
    zeros = np.array([0.0] * 10 + [-0.0] * 10 + [1.5] * 10)
    for _ in range(2):  # 0.0 and -0.0 share a key in the table: each keeps its own text
        assert number_texts(zeros).tolist() == ["0.0"] * 10 + ["-0.0"] * 10 + ["1.5"] * 10
