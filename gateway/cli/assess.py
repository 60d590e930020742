"""`bms-gateway assess`: measure the battery from its recorded telemetry, independently of the BMS.

One streaming pass over the window (the store, or a file of `export` JSON lines) per run, every rack at
once (gateway.assess.rackpass); a JSON report (`--json`, its schema printed by `--schema`), a
self-contained HTML page (`--html`) and a console summary. Exit 0 when at least one rack was assessed,
1 when the window holds no sample of the racks asked for or the input cannot be read, 2 for a usage or
configuration error. Lines of an export that are not samples and store rows that cannot be decoded are
skipped, counted and named (on stderr and in the report), never a crash.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gateway.cli.store import parse_time
from gateway.model import Batch
from gateway.textsafe import printable

STORE_SLACK_NS = 60 * 1_000_000_000  # rows are found by creation time; their samples are filtered by their own


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return v


def in_window(batches: Iterable[Batch], since: int | None, until: int | None) -> Iterator[Batch]:
    """The points of each batch with since <= ts <= until (a batch with none of them is left out)."""
    if since is None and until is None:
        yield from batches
        return
    lo, hi = since if since is not None else -(2**63), until if until is not None else 2**63 - 1
    for b in batches:
        keep = (b.ts >= lo) & (b.ts <= hi)
        if keep.all():
            yield b
        elif keep.any():
            yield b.take(np.flatnonzero(keep))


def _fail(message: str, code: int) -> int:
    print(f"error: {printable(message)}", file=sys.stderr)
    return code


def cmd_assess(args: argparse.Namespace) -> int:
    if args.schema:
        from gateway.assess.schema import Report
        from gateway.cli.main import print_schema

        return print_schema(Report, "bms-gateway assessment report (assess --json)")
    if args.since is not None and args.until is not None and args.since > args.until:
        return _fail("--since is after --until", 2)
    loaded = None
    if args.config is not None or (args.store is None and args.input is None):
        from gateway.cli.main import load_or_exit

        loaded = load_or_exit(args)  # a ConfigError: printed by main, exit 2
    store = args.store if args.store is not None else (loaded.config.store.path if args.input is None and loaded
                                                       else None)  # fmt: skip
    path = args.input if args.input is not None else store
    assert path is not None
    if not path.exists():
        return _fail(f"no {'input file' if args.input is not None else 'store'} at {path}", 2)
    journal = args.journal
    if journal is None and store is not None:
        journal = (loaded.config.alarms.journal.path if loaded else None) or store
    try:
        return _assess(args, loaded, path, store is not None and args.input is None, journal)
    except (OSError, sqlite3.Error, UnicodeDecodeError) as exc:
        return _fail(f"{path}: cannot be read: {exc}", 1)


def _assess(args: argparse.Namespace, loaded: Any, path: Path, is_store: bool, journal: Path | None) -> int:
    from gateway.assess import schema
    from gateway.assess.alarmhistory import read_journal
    from gateway.assess.html import page
    from gateway.assess.ocvtable import OcvTableError, load_ocv_table
    from gateway.assess.rackpass import Window, assess_window, infer_period
    from gateway.assess.readers import ReadReport, batches_from_jsonl, batches_from_store
    from gateway.assess.report import rack_report, rack_span, span, summary_lines
    from gateway.assess.setup import Options, hints_from_config, rack_settings
    from gateway.cli.main import _version

    table_path = args.ocv_table or (loaded.config.assess.ocv_table if loaded is not None else None)
    try:
        table = load_ocv_table(table_path) if table_path is not None else None
    except OcvTableError as exc:
        return _fail(str(exc), 2)
    read = ReadReport()
    lo = 0 if args.since is None else max(0, args.since - STORE_SLACK_NS)
    hi = None if args.until is None else args.until + STORE_SLACK_NS
    if is_store:
        raw: Iterator[Batch] = batches_from_store(path, lo, hi, read)
    else:
        raw = batches_from_jsonl(_lines(path), None, 5000, read, str(path))
    batches = in_window(raw, args.since, args.until)
    inferred: dict[str, float] = {}
    if args.period is None:
        inferred, batches = infer_period(batches)
    typical = float(np.median(list(inferred.values()))) if inferred else None
    hints = hints_from_config(loaded) if loaded is not None else {}
    opts = Options(args.nominal_ah, args.full_v, args.empty_v, args.period, args.chemistry, args.margin_v, table)
    window = Window(args.since, args.until)
    only = frozenset(args.rack) if args.rack else None
    passes = assess_window(batches, lambda r: rack_settings(opts, hints.get(r), inferred.get(r, typical)), window, only)
    check, histories = read_journal(journal, {r: rack_span(p) for r, p in passes.items()})
    racks = [rack_report(p, histories[r], check) for r, p in passes.items()]
    info = schema.InputInfo(kind="store" if is_store else "export", path=str(path), skipped_lines=read.skipped_lines,
                            errors=read.errors, damaged_rows={str(k): v for k, v in read.damaged_rows.items()},
                            late_points=sum(p.builder.late_points for p in passes.values()),
                            unknown_points=sum(p.builder.unknown_points for p in passes.values()))  # fmt: skip
    report = schema.Report(generated=datetime.now(UTC).isoformat(timespec="seconds"), gateway_version=_version(),
                           window=span(args.since, None if args.until is None else args.until + 1), input=info,
                           journal=check, racks=racks)  # fmt: skip
    if args.json is not None:
        text = report.model_dump_json(indent=1) + "\n"
        if str(args.json) == "-":
            sys.stdout.write(text)
        else:
            args.json.write_text(text, encoding="utf-8")
    html = page(report, passes) if args.html is not None or args.package is not None else ""
    if args.html is not None:
        args.html.write_text(html, encoding="utf-8")
    out = sys.stderr if str(args.json) == "-" else sys.stdout
    for line in summary_lines(report):
        print(printable(line), file=out)
    _tell_skipped(read)
    if args.package is not None:
        from gateway.assess.package import PackageError

        def again() -> Iterator[Batch]:  # the window's samples read a second time, for the package
            if is_store:
                return batches_from_store(path, lo, hi)
            return batches_from_jsonl(_lines(path), None, 5000, None, str(path))

        try:
            _package(args, report.model_dump_json(indent=1) + "\n", html, again, journal, frozenset(passes))
        except PackageError as exc:
            return _fail(str(exc), 2)
    missing = sorted((only or frozenset()) - set(passes))
    if missing or not passes:
        what = f"rack {', '.join(missing)}" if missing else "any rack"
        return _fail(f"no sample of {what} in the window", 1)
    return 0


def of_racks(batches: Iterable[Batch], racks: frozenset[str]) -> Iterator[Batch]:
    """The points of each batch that belong to one of `racks`."""
    for b in batches:
        keep = [i for i, k in enumerate(b.keys.rows) if k.rack in racks]
        if len(keep) == b.n:
            yield b
        elif keep:
            yield b.take(keep)


def _package(args: argparse.Namespace, report_json: str, html: str, read: Callable[[], Iterator[Batch]],
             journal: Path | None, racks: frozenset[str]) -> None:  # fmt: skip
    """The evidence package (gateway.cli.package): the reports, the window's samples of the racks assessed
    (a second pass over the input), the journal's entries of the window (of those racks, and the
    gateway's own)."""
    from gateway.assess.package import Window
    from gateway.cli.package import write_from_args

    lines: list[str] = []
    if journal is not None and journal.exists():
        from gateway.alarms.journal import Journal
        from gateway.cli.alarms import journal_lines

        j = Journal(journal, readonly=True)
        try:
            lines = [x for x in journal_lines(j, args.since or 0, args.until) if json.loads(x).get("rack") in
                     (None, "", *racks)]  # fmt: skip
        finally:
            j.close()
    samples = of_racks(in_window(read(), args.since, args.until), racks)
    out = write_from_args(args, report_json.encode(), html.encode(), samples, "".join(lines).encode(),
                          Window(args.since, args.until, tuple(sorted(racks))))  # fmt: skip
    print(f"evidence package: {printable(out)}", file=sys.stderr)


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace") as f:
        yield from f


def _tell_skipped(read: Any) -> None:
    for e in read.errors:
        print(f"skipped {printable(e)}", file=sys.stderr)
    if read.skipped_lines > len(read.errors):
        print(f"skipped {read.skipped_lines} input lines in all", file=sys.stderr)
    for seq, error in sorted(read.damaged_rows.items()):
        print(f"skipped damaged row seq {seq}: {printable(error)}", file=sys.stderr)


def register(sub: Any) -> None:
    from gateway.cli.main import add_config_arg

    p = sub.add_parser("assess", help="measure the battery from recorded telemetry (capacity, cells, sensors, "
                       "completeness, alarm history): JSON and HTML report")  # fmt: skip
    add_config_arg(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--store", type=Path, help="store file (instead of the config's store.path)")
    src.add_argument("--input", type=Path, help="a file of `bms-gateway export` JSON lines instead of the store")
    p.add_argument("--journal", type=Path, help="alarm journal file (default: the config's, else the store)")
    p.add_argument("--since", type=parse_time, help="ISO time, Unix seconds or 10m/2h/7d ago")
    p.add_argument("--until", type=parse_time)
    p.add_argument("--rack", action="append", help="only this rack (repeat for more; default: every rack found)")
    p.add_argument("--nominal-ah", type=_positive, help="nominal capacity, Ah (default: the profile's "
                   "nominal_capacity_ah, a simulated source's capacity_ah)")  # fmt: skip
    p.add_argument("--chemistry", choices=["lfp", "nmc"], default="lfp", help="default cell limits (lfp)")
    p.add_argument("--full-v", type=_positive, help="upper cell voltage: the rack is full there")
    p.add_argument("--empty-v", type=_positive, help="cutoff cell voltage: the rack is empty there")
    p.add_argument("--margin-v", type=float, help="a cell this close to a limit is at it, V (default: 5 mV per "
                   "second of the period for hard limits, 0 for the chemistry defaults)")  # fmt: skip
    p.add_argument("--ocv-table", type=Path, help="OCV table of the chemistry (CSV or YAML rows soc_pct, "
                   "voltage): usable capacity from partial cycles between rest points "
                   "(default: the config's assess.ocv_table)")  # fmt: skip
    p.add_argument("--period", type=_positive, help="expected sample period, s (default: config, else inferred)")
    p.add_argument("--json", type=Path, help="write the JSON report here ('-': standard output)")
    p.add_argument("--html", type=Path, help="write the HTML report (one self-contained page) here")
    p.add_argument("--schema", action="store_true", help="print the JSON Schema of the report and exit")
    from gateway.cli.package import add_package_options

    add_package_options(p)
    p.set_defaults(func=cmd_assess)
