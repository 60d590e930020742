"""Helpers for the alarm tests: rule specs from dicts, scripted sample series, event extraction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from gateway.alarms.evaluator import AlarmEngine
from gateway.alarms.ruleset import RULE
from gateway.model import Batch, BatchKind, Quality, Sample

S = 1_000_000_000  # ns per second
RACK = "rack-01"


def rule(**fields: Any) -> Any:
    fields.setdefault("id", "r")
    return RULE.validate_python(fields)


def engine(*rules: Any, racks: Sequence[str] = (RACK,)) -> AlarmEngine:
    return AlarmEngine(rules, {r: r for r in racks})


def sample(
    t: float,
    quantity: str,
    value: Any,
    *,
    rack: str = RACK,
    module: int | None = None,
    cell: int | None = None,
    quality: str = Quality.GOOD,
    unit: str = "",
) -> Sample:
    return Sample(int(t * S), quantity, value, unit, quality, rack, module, cell)


def batch(*samples: Sample, device: str = RACK) -> Batch:
    return Batch(device, list(samples), device=device, created=samples[0].ts if samples else 0)


def events(batches: Iterable[Batch]) -> list[dict[str, Any]]:
    return [r for b in batches if b.kind == BatchKind.ALARM for r in b.records if r["type"] == "event"]


def states(batches: Iterable[Batch]) -> list[tuple[str, str]]:
    return [(e["previous"], e["state"]) for e in events(batches)]


def run_series(eng: AlarmEngine, quantity: str, series: Sequence[tuple[float, Any]], **tags: Any) -> list[Any]:
    """Feed (t seconds, value) pairs one batch each; return per step the state transitions it made."""
    out: list[Any] = []
    for t, v in series:
        out.append(states(eng.process([batch(sample(t, quantity, v, **tags))])))
    return out


def transitions(eng: AlarmEngine, quantity: str, series: Sequence[tuple[float, Any]], **tags: Any) -> list[str]:
    """The new states, in order, over a series: the compact form of a rule table."""
    return [new for step in run_series(eng, quantity, series, **tags) for (_, new) in step]
