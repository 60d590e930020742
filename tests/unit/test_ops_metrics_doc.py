"""The metrics the Operations manual lists exist in the gateway's registry (the manual cannot drift)."""

from __future__ import annotations

import re

import gateway.runtime.core  # noqa: F401
from gateway import app
from gateway.metrics import REGISTRY
from tests.support.manual import manual_text

# Every area's metrics are created when its module is imported: load every part the daemon can run.
for _ref in [*app.SOURCES.values(), *app.SINKS.values(), *app.RUNTIME_PARTS]:
    app.load(_ref)


def documented() -> set[str]:
    text = manual_text()
    section = text[text.index("## Metrics") : text.index("## Reload")]
    table = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    names = {m for line in table for m in re.findall(r"`([a-z_]+)(?:\{[^}]*\})?`", line.split("|")[2])}
    return {f"bms_gateway_{n}" for n in names if not n.endswith("_")}


def registered() -> set[str]:
    out: set[str] = set()
    for family in REGISTRY.collect():
        out.add(family.name)
        out |= {s.name for s in family.samples}
    out |= {family.name + "_total" for family in REGISTRY.collect() if family.type == "counter"}
    return out


def test_every_documented_metric_exists() -> None:
    names = documented()
    assert len(names) > 30
    assert sorted(names - registered()) == []
