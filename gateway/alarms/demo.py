"""`bms-gateway demo`: show alarm transitions in the live view, one line each."""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

from gateway.model import Batch, BatchKind

if TYPE_CHECKING:
    from gateway.runtime.core import Runtime


class AlarmLines:
    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout

    def __call__(self, batches: list[Batch]) -> None:
        for b in batches:
            if b.kind != BatchKind.ALARM:
                continue
            for r in b.records:
                if r.get("type") == "event":
                    who = f" (by {r['user']})" if r.get("user") else ""
                    print(f"{r['rack']!s:10} ALARM {r['severity']!s:8} {r['previous']} -> {r['state']}  "
                          f"{r['alarm_id']}: {r['message']}{who}", file=self.out, flush=True)  # fmt: skip


def show_alarms(rt: Runtime) -> None:
    rt.observers.append(AlarmLines())
