"""`bms-gateway sinks` (delivery status per sink) and `bms-gateway deadletter list|export|retry|delete`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.store.deadletters import DeadLetter
from gateway.store.outbox import Outbox


def _store(args: argparse.Namespace, *, readonly: bool = True) -> Outbox:
    """The store; read-only unless the command writes (it never holds up the daemon's set-up)."""
    if args.store is not None:
        path = Path(args.store)
    else:
        from gateway.cli.main import load_or_exit

        path = load_or_exit(args).config.store.path
    if not path.exists():
        print(f"error: no store at {path}", file=sys.stderr)
        raise SystemExit(2)
    return Outbox(path, check=False, readonly=readonly)


def _iso(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def status_rows(ob: Outbox) -> list[dict[str, Any]]:
    """Delivery status of every consumer: cursor, pending, lag, dropped, dead letters."""
    now = time.time_ns()
    out = []
    for c in ob.consumers():
        _rows, _samples, oldest = ob.pending(c.acked)
        dead = ob.db.execute("SELECT count(*) FROM deadletter WHERE consumer=?", (c.name,)).fetchone()[0]
        out.append(
            {
                "sink": c.name,
                "acked_seq": c.acked,
                "pending_rows": c.pending_rows,
                "pending_samples": c.pending_samples,
                "lag_seconds": 0.0 if oldest is None else round((now - oldest) / 1e9, 3),
                "dropped_samples": c.dropped,
                "dead_letters": int(dead),
            }
        )
    return out


def cmd_probe(args: argparse.Namespace) -> int:
    """Reach every enabled sink: address, TLS, credentials (nothing is stored or published)."""
    from gateway.app import build_sink
    from gateway.cli.main import load_or_exit
    from gateway.errors import GatewayError

    loaded = load_or_exit(args)
    failed = 0
    for name, cfg in loaded.config.sinks.items():
        if not cfg.enabled:
            print(f"{name}: disabled")
            continue
        sink = build_sink(name, cfg, loaded)
        try:
            print(f"{name}: ok, {asyncio.run(sink.probe())}")  # type: ignore[attr-defined]
        except GatewayError as exc:
            failed += 1
            print(f"{name}: FAILED, {exc}")
        finally:
            asyncio.run(sink.close())
    return 1 if failed else 0


def cmd_sinks(args: argparse.Namespace) -> int:
    if args.probe:
        return cmd_probe(args)
    ob = _store(args, readonly=not args.forget)
    if args.forget:
        try:
            found = ob.remove_consumer(args.forget)
        finally:
            ob.close()
        print(f"sink {args.forget!r} {'forgotten' if found else 'not in the store'}")
        return 0 if found else 1
    try:
        rows = status_rows(ob)
        repairs = [
            json.loads(v)
            for k, v in ob.db.execute("SELECT key, value FROM meta WHERE key LIKE 'repair.%' ORDER BY key")
        ]
        last = ob.last_seq()
    finally:
        ob.close()
    if args.json:
        print(json.dumps({"last_seq": last, "sinks": rows, "repairs": repairs}, indent=2))
        return 0
    print(f"{'sink':<16} {'acked':>10} {'pending':>12} {'lag s':>10} {'dropped':>10} {'dead':>6}")
    for r in rows:
        print(
            f"{r['sink']:<16} {r['acked_seq']:>10} {r['pending_samples']:>12} {r['lag_seconds']:>10} "
            f"{r['dropped_samples']:>10} {r['dead_letters']:>6}"
        )
    for rep in repairs:
        pages = rep.get("unknown_pages")
        unknown = f"an unknown number more in {pages} unreadable pages, " if pages else ""
        print(
            f"store repaired: {rep['recovered_rows']} rows kept, {rep['unreadable_rows']} unreadable, {unknown}"
            f"damaged file kept at {rep['damaged_file']}"
        )
    return 0


def _letters(ob: Outbox, args: argparse.Namespace) -> list[DeadLetter]:
    letters = ob.dead_letters(args.sink)
    if getattr(args, "id", None):
        wanted = set(args.id)
        letters = [d for d in letters if d.id in wanted]
    return letters


def cmd_list(args: argparse.Namespace) -> int:
    ob = _store(args)
    try:
        letters = _letters(ob, args)
    finally:
        ob.close()
    for d in letters[: args.limit]:
        print(f"{d.id:>6} {_iso(d.stored)} {d.consumer} seq={d.seq} status={d.status} {d.reason[:100]}")
        print(f"       {d.item[:200]}")
    print(f"{len(letters)} dead letters", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    ob = _store(args)
    try:
        letters = _letters(ob, args)
    finally:
        ob.close()
    out = Path(args.output).open("w", encoding="utf-8") if args.output else sys.stdout
    try:
        for d in letters:
            if args.format == "lp":
                out.write(d.item + "\n")
            else:
                doc = {"id": d.id, "stored": _iso(d.stored), "sink": d.consumer, "seq": d.seq, "status": d.status,
                       "reason": d.reason, "item": d.item}  # fmt: skip
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Write dead letters again (after fixing the cause, e.g. a field type in the bucket)."""
    from gateway.cli.main import load_or_exit
    from gateway.errors import SinkError
    from gateway.sinks.config import InfluxSinkConfig
    from gateway.sinks.delivery import Item, deliver
    from gateway.sinks.influx.sink import InfluxSink

    loaded = load_or_exit(args)
    cfg = loaded.config.sinks.get(args.sink)
    if not isinstance(cfg, InfluxSinkConfig):
        print(f"error: {args.sink!r} is not an InfluxDB sink of this configuration", file=sys.stderr)
        return 2
    ob = Outbox(loaded.config.store.path, check=False)
    try:
        letters = _letters(ob, args)
        sink = InfluxSink(args.sink, cfg, loaded.config.site.name, loaded.base_dir)
        asyncio.run(sink.open())
        try:
            rejected = deliver([Item(d.id, d.item) for d in letters], sink._post)
        except SinkError as exc:
            print(f"error: {exc}; nothing removed", file=sys.stderr)
            return 1
        finally:
            asyncio.run(sink.close())
        still = {r.seq for r in rejected}
        ob.remove_dead_letters(d.id for d in letters if d.id not in still)
    finally:
        ob.close()
    print(f"{len(letters) - len(still)} written, {len(still)} still rejected (kept)")
    return 1 if still else 0


def cmd_delete(args: argparse.Namespace) -> int:
    if not args.id and not args.all:
        print("error: name the dead letters to delete with --id, or pass --all", file=sys.stderr)
        return 2
    ob = _store(args, readonly=False)
    try:
        n = ob.remove_dead_letters(d.id for d in _letters(ob, args))
    finally:
        ob.close()
    print(f"{n} dead letters deleted")
    return 0


def register(sub: Any) -> None:  # argparse sub-parsers
    from gateway.cli.main import add_config_arg

    def common(p: argparse.ArgumentParser) -> None:
        add_config_arg(p)
        p.add_argument("--store", type=Path, help="store file (instead of the config's store.path)")

    p = sub.add_parser("sinks", help="delivery status of every sink: cursor, pending, lag, dropped, dead letters")
    common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--forget", metavar="NAME", help="forget the cursor of a sink removed from the configuration")
    p.add_argument("--probe", action="store_true", help="reach every enabled sink (address, TLS, credentials) and exit")
    p.set_defaults(func=cmd_sinks)

    dl = sub.add_parser("deadletter", help="points a server rejected for good: list, export, retry, delete")
    dsub = dl.add_subparsers(dest="deadletter_cmd", required=True)
    p = dsub.add_parser("list", help="show dead letters with the server's reason")
    common(p)
    p.add_argument("--sink", help="only this sink")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_list)
    p = dsub.add_parser("export", help="write dead letters as JSON lines or raw line protocol")
    common(p)
    p.add_argument("--sink", help="only this sink")
    p.add_argument("--format", choices=["jsonl", "lp"], default="jsonl")
    p.add_argument("-o", "--output", help="file (default: standard output)")
    p.set_defaults(func=cmd_export)
    p = dsub.add_parser("retry", help="write dead letters to their InfluxDB sink again; accepted ones are removed")
    add_config_arg(p)
    p.add_argument("--sink", required=True, help="the sink name in the configuration")
    p.add_argument("--id", type=int, action="append", help="only these ids (repeat)")
    p.set_defaults(func=cmd_retry)
    p = dsub.add_parser("delete", help="delete dead letters (after export)")
    common(p)
    p.add_argument("--sink", help="only this sink")
    p.add_argument("--id", type=int, action="append", help="only these ids (repeat)")
    p.add_argument("--all", action="store_true", help="every dead letter (of --sink)")
    p.set_defaults(func=cmd_delete)
