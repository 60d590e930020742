"""`bms-gateway tail` and `bms-gateway export`: read what the local store holds.

Rows that cannot be decoded are skipped, each named once on stderr (the daemon quarantines them). The
site tag is `--site`, else the configuration's, else the one the store records (the daemon writes it).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.model import BatchKind

_REL = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_time(text: str) -> int:
    """ISO 8601 (UTC if no zone), a Unix time in seconds, or a duration ago (30s, 10m, 2h, 7d) → ns."""
    m = _REL.match(text)
    if m:
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return time.time_ns() - int(float(m.group(1)) * mult * 1e9)
    try:
        return int(float(text) * 1e9)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (ISO 8601, Unix seconds, or 10m/2h/7d)") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1e9)


def _store_path(args: argparse.Namespace) -> tuple[Path, str | None]:
    """The store file and the site tag (None: the store's own, see `_site`)."""
    if args.store is not None:
        return Path(args.store), args.site
    from gateway.cli.main import load_or_exit

    loaded = load_or_exit(args)
    return loaded.config.store.path, args.site or loaded.config.site.name


def _site(box: Any, site: str | None) -> str:
    """The site tag: the one given, else the site the store was written for (its meta)."""
    if site is not None:
        return site
    stored = box.get_meta("site")
    if stored:
        return str(stored)
    print("warning: the store does not record its site (written before it did): samples tagged 'site'; "
          "give --site", file=sys.stderr)  # fmt: skip
    return "site"


def _open(path: Path) -> Any:
    """The store, read-only: a reading tool never writes, checks or switches the file (the daemon may be
    setting it up right now); damaged rows are skipped and named, left for the daemon."""
    import sqlite3

    from gateway.store.outbox import Outbox

    if not path.exists():
        print(f"error: no store at {path}", file=sys.stderr)
        raise SystemExit(2)
    box = None
    try:
        box = Outbox(path, readonly=True)
        box.last_seq()
    except sqlite3.DatabaseError as exc:
        if box is not None:
            box.close()
        print(f"error: cannot read the store at {path} (not set up yet, or not a store): {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return box


def _report_damaged(box: Any, told: set[int]) -> None:
    """Name each damaged row skipped since the last call, once."""
    for seq, error in sorted(box.damaged.items()):
        if seq not in told:
            told.add(seq)
            print(f"skipped damaged row seq {seq}: {error}", file=sys.stderr)


def sample_dict(site: str, source: str, s: Any) -> dict[str, Any]:
    return {
        "t": datetime.fromtimestamp(s.ts / 1e9, UTC).isoformat(timespec="microseconds"),
        "ts": s.ts,
        "site": site,
        "rack": s.rack,
        "module": s.module,
        "cell": s.cell,
        "quantity": s.quantity,
        "value": s.value,
        "unit": s.unit,
        "quality": s.quality,
        "source": source,
    }


FIELDS = ["t", "ts", "site", "rack", "module", "cell", "quantity", "value", "unit", "quality", "source"]


def cmd_export(args: argparse.Namespace) -> int:
    path, given_site = _store_path(args)
    box = _open(path)
    site = _site(box, given_site)
    out = sys.stdout
    writer = csv.DictWriter(out, FIELDS) if args.format == "csv" else None
    if writer is not None:
        writer.writeheader()
    n = 0
    for row in box.query(args.since or 0, args.until):
        b = row.batch
        if b.kind != BatchKind.SAMPLES:
            if args.format == "jsonl" and args.all_kinds:
                for rec in b.records:
                    out.write(json.dumps({"kind": str(b.kind), **rec}, ensure_ascii=False) + "\n")
            continue
        if args.format == "lp":
            from gateway.sinks.influx.lineproto import encode_batches

            if args.rack:
                b = b.take([i for i, k in enumerate(b.keys.rows) if k.rack == args.rack])
                b.status = None
            for line in encode_batches([b], site, "ns"):
                out.write(line + "\n")
            n += b.n
            continue
        for s in b.samples():
            if args.rack and s.rack != args.rack:
                continue
            d = sample_dict(site, b.source, s)
            if writer is not None:
                writer.writerow(d)
            else:
                out.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
    _report_damaged(box, set())
    skipped = f" ({len(box.damaged)} damaged rows skipped)" if box.damaged else ""
    print(f"exported {n} samples{skipped}", file=sys.stderr)
    box.close()
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    path, _site = _store_path(args)
    box = _open(path)
    after = max(0, box.last_seq() - args.batches)
    told: set[int] = set()
    try:
        while True:
            for row in box.query(0, None, after_seq=after):
                after = row.seq
                for s in row.batch.samples():
                    if args.quantity and not s.quantity.startswith(args.quantity):
                        continue
                    if args.rack and s.rack != args.rack:
                        continue
                    print(_tail_line(s), flush=True)
                if row.batch.status is not None:
                    st = row.batch.status
                    print(f"-- {st.device} {st.state} {st.reason}", flush=True)
            _report_damaged(box, told)
            if not args.follow:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        box.close()
    return 0


def _tail_line(s: Any) -> str:
    t = datetime.fromtimestamp(s.ts / 1e9, UTC).strftime("%H:%M:%S.%f")[:-3]
    where = s.rack + (f"/m{s.module}" if s.module is not None else "") + (f"/c{s.cell}" if s.cell is not None else "")
    q = "" if s.quality == "good" else f" [{s.quality}]"
    return f"{t} {where:16} {s.quantity:28} {s.value} {s.unit}{q}"


def register(sub: Any) -> None:
    from gateway.cli.main import add_config_arg

    p = sub.add_parser("export", help="write stored samples as JSON lines, CSV or line protocol")
    add_config_arg(p)
    p.add_argument("--store", type=Path, help="store file (instead of the config's store.path)")
    p.add_argument("--site", help="site tag (default: the config's site name; with --store, the store's)")
    p.add_argument("--since", type=parse_time, help="ISO time, Unix seconds or 10m/2h/7d ago")
    p.add_argument("--until", type=parse_time)
    p.add_argument("--rack", help="only this rack")
    p.add_argument("--format", choices=["jsonl", "csv", "lp"], default="jsonl")
    p.add_argument("--all-kinds", action="store_true", help="jsonl: include alarm and status records")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("tail", help="show the newest samples in the store (follow with -f)")
    add_config_arg(p)
    p.add_argument("--store", type=Path)
    p.add_argument("--site")
    p.add_argument("-f", "--follow", action="store_true", help="keep showing new samples")
    p.add_argument("-n", "--batches", type=int, default=2, help="batches to show from history")
    p.add_argument("--rack")
    p.add_argument("--quantity", help="only quantities starting with this")
    p.set_defaults(func=cmd_tail)
