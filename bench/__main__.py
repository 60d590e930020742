"""`python -m bench [scenario ...] [--runs 3] [--quick]`: run scenarios against real peers, print a table."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

from bench.common import OVERRIDES, Options, parse_override
from bench.cpu import SATURATION_PCT
from bench.stats import Fig, Row, format_table

SCENARIOS = {
    "can": "bench.can_bench",
    "modbus": "bench.modbus_bench",
    "backlog": "bench.backlog_bench",
    "memory": "bench.memory_bench",
    "startup": "bench.startup_bench",
    "assess": "bench.assess_bench",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("scenarios", nargs="*", metavar="scenario", help=f"{', '.join(SCENARIOS)} (default: all)")
    ap.add_argument("--runs", type=int, default=None, help="runs per measurement (default 3, 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="shorter durations (and 1 run unless --runs)")
    ap.add_argument(
        "--rates", type=lambda s: [int(x) for x in s.split(",")], default=[], help="CAN frame rates, comma-separated"
    )
    ap.add_argument("--duration", type=float, default=None, help="seconds per measured run (scenario default)")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "bms-bench")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a key of every generated gateway config, e.g. store.commit_interval=0.005, "
        "sources.batch_window=0.005 (every source), sinks.batch_max_age=0.002 (every sink); repeatable",
    )
    a = ap.parse_args(argv)
    try:
        OVERRIDES[:] = [parse_override(s) for s in a.set]
    except ValueError as exc:
        ap.error(str(exc))
    unknown = [n for n in a.scenarios if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {unknown[0]!r}: expected one of {', '.join(SCENARIOS)}")
    runs = a.runs or (1 if a.quick else 3)
    opts = Options(runs=runs, quick=a.quick, work=a.work, rates=a.rates, duration=a.duration)
    rows: list[Row] = []
    for name in a.scenarios or list(SCENARIOS):
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        try:
            rows += importlib.import_module(SCENARIOS[name]).run(opts)
        except Exception as exc:  # a broken scenario is reported, the others still run
            traceback.print_exc()
            rows.append(Row(name, "FAILED", note=f"{type(exc).__name__}: {exc}"[:100]))
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\nbms-gateway bench, {stamp}, {os.cpu_count()} cores, Python {platform.python_version()}"
        f"{' (quick)' if a.quick else ''}, medians of {runs} run(s)"
        f"{', [min–max] where the runs differ' if runs > 1 else ''}"
    )
    print(
        f"CPU % of the machine: {os.cpu_count()} cores = 100 %. Peers: the bench's own processes (Modbus servers,\n"
        "CAN sender, Mosquitto, VictoriaMetrics, the bench process with its MQTT subscribers). Figures measured\n"
        f"while gateway + peers used over {SATURATION_PCT:.0f} % of the machine are flagged 'saturated'.\n"
    )
    if OVERRIDES:
        print("Gateway config changed with --set: " + ", ".join(f"{k}={v}" for k, v in OVERRIDES) + "\n")
    print(format_table(rows))
    if a.json:
        a.json.write_text(json.dumps([as_json(r) for r in rows], indent=1, default=str))
    return 0


def as_json(row: Row) -> dict[str, object]:
    """A row with its figures' ranges across runs."""
    doc: dict[str, object] = dict(row.__dict__)
    for side in ("gateway", "baseline"):
        v = getattr(row, side)
        if isinstance(v, Fig):
            doc[f"{side}_min"], doc[f"{side}_max"], doc[f"{side}_runs"] = v.lo, v.hi, v.n
    return doc


if __name__ == "__main__":
    sys.exit(main())
