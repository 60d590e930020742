"""Where an assessment reads its window: the store, or a file in `bms-gateway export`'s JSON-lines format.

Both give time-ordered `Batch`es, one bounded batch at a time, for `series.chunks_from_batches`:
- `batches_from_store`: the store's rows by time (as `export` reads them); rows that cannot be decoded
  are skipped and listed in `ReadReport.damaged_rows` (the daemon quarantines them, a reader does not).
- `batches_from_jsonl`: the lines of an export, `max_samples` at a time; a line that is not a sample
  (bad JSON, a field missing or of the wrong type, another record kind) is skipped and counted, the
  first few named by line number in `ReadReport.errors`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gateway.model import QUALITY_CODE, Batch, BatchKind, Sample, Value

ERRORS_KEPT = 20


@dataclass(slots=True)
class ReadReport:
    """What a reader skipped: counts, and the first few places named."""

    skipped_lines: int = 0
    errors: list[str] = field(default_factory=list)
    damaged_rows: dict[int, str] = field(default_factory=dict)

    def note(self, place: str, error: str) -> None:
        self.skipped_lines += 1
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(f"{place}: {error}")


def batches_from_store(
    path: Path, since_ns: int = 0, until_ns: int | None = None, report: ReadReport | None = None
) -> Iterator[Batch]:
    """The store's sample batches created in [since_ns, until_ns], oldest first."""
    from gateway.store.outbox import Outbox

    box = Outbox(path, readonly=True)  # a reading tool: damaged rows are skipped and named, left for the daemon
    try:
        for row in box.query(since_ns, until_ns):
            if row.batch.kind == BatchKind.SAMPLES:
                yield row.batch
    finally:
        if report is not None:
            report.damaged_rows.update(box.damaged)
        box.close()


def _sample(line: str) -> Sample | str:
    """The sample on one export line, or why it is not one."""
    try:
        d = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg})"
    except ValueError:
        return "not JSON"
    if not isinstance(d, dict):
        return "not an object"
    if "kind" in d:
        return f"a {d['kind']!s:.20} record"
    ts, quantity, unit, quality = d.get("ts"), d.get("quantity"), d.get("unit", ""), d.get("quality", "good")
    module, cell, value = d.get("module"), d.get("cell"), d.get("value")
    if type(ts) is not int or not isinstance(quantity, str) or not isinstance(unit, str):
        return "ts (integer ns), quantity and unit expected"
    if quality not in QUALITY_CODE:
        return f"unknown quality {quality!s:.20}"
    if not all(x is None or type(x) is int for x in (module, cell)):
        return "module and cell must be integers or null"
    v: Value = value if value is None or isinstance(value, (int, float, str, bool)) else None
    if isinstance(v, float) and not math.isfinite(v):
        v = None
    return Sample(ts, quantity, v, unit, quality, str(d.get("rack", "")), module, cell)


def batches_from_jsonl(
    lines: Iterable[str],
    rack: str | None = None,
    max_samples: int = 5000,
    report: ReadReport | None = None,
    name: str = "input",
) -> Iterator[Batch]:
    """Batches of up to `max_samples` samples from export lines (only `rack`'s, when given)."""
    report = report if report is not None else ReadReport()
    pending: list[Sample] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        s = _sample(line)
        if isinstance(s, str):
            report.note(f"{name}:{number}", s)
            continue
        if rack is not None and s.rack != rack:
            continue
        pending.append(s)
        if len(pending) >= max_samples:
            yield Batch.of_samples("export", pending)
            pending = []
    if pending:
        yield Batch.of_samples("export", pending)
