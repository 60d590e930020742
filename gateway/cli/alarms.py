"""`bms-gateway alarms list | history | export | verify | rules`: the alarm journal, read offline.

These read the journal (read-only; safe while the daemon runs) and never change alarm state:
acknowledging and shelving go through the running gateway (MQTT commands) so that the engine and
the journal stay one story.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.store import parse_time
from gateway.textsafe import json_text, printable

if TYPE_CHECKING:
    from gateway.config.settings import GatewayConfig

CSV_FIELDS = ["seq", "time", "ts", "type", "rack", "alarm_id", "severity", "previous", "state", "message", "value",
              "rule", "user", "reason", "hash"]  # fmt: skip


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1e9, UTC).isoformat(timespec="milliseconds")


def _when(ts: object) -> str:
    """`_iso` of a time read from an entry that may have been edited (any value): never raises."""
    try:
        return _iso(int(ts))  # type: ignore[call-overload]  # an edited entry may hold anything
    except (TypeError, ValueError, OverflowError, OSError):
        return printable(ts, 40)


def _journal_file(args: argparse.Namespace) -> Path:
    if args.store is not None:
        return Path(args.store)
    from gateway.cli.main import load_or_exit

    cfg: GatewayConfig = load_or_exit(args).config
    return cfg.alarms.journal.path or cfg.store.path


def _open(args: argparse.Namespace) -> Any:
    from gateway.alarms.journal import Journal

    path = _journal_file(args)
    if not path.exists():
        print(f"error: no store or journal at {path}", file=sys.stderr)
        raise SystemExit(2)
    return Journal(path, readonly=True)


def cmd_verify(args: argparse.Namespace) -> int:
    j = _open(args)
    n, problems = j.verify()
    j.close()
    if problems:
        for p in problems:
            print(f"FAIL: {printable(p)}")
        print(f"journal {printable(j.path)}: {len(problems)} problem(s) in {n} entries: NOT intact", file=sys.stderr)
        return 1
    print(f"journal {printable(j.path)}: {n} entries, hash chain intact (head {printable(j.hash[:16])})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    j = _open(args)
    active = [e for e in j.latest_events() if e["state"] != "normal" and (not args.rack or e["rack"] == args.rack)]
    j.close()
    if args.json:
        for e in active:
            print(json_text(json.dumps({k: v for k, v in e.items() if k != "detail"}, ensure_ascii=False)))
        return 0
    if not active:
        print("no alarms in view")
    for e in active:
        since = (e.get("detail") or {}).get("since") or e["ts"]
        print(f"{_when(since)}  {printable(e['severity']):8} {printable(e['state']):12} "
              f"{printable(e['alarm_id']):40} {printable(e.get('message'))}")  # fmt: skip
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """Journal entries, oldest first; an entry the chain check finds edited is printed as stored and
    marked, and the command then exits 1 naming every problem (as `verify` does)."""
    j = _open(args)
    checked, flaws = j.flaws()
    marks: dict[int, list[str]] = {}
    for f in flaws:
        if f.seq is not None:
            marks.setdefault(f.seq, []).append(f.text)
    for entry in j.entries(args.since or 0, args.until, args.rack):
        e = entry.body
        if args.alarm and e.get("alarm_id") != args.alarm:
            continue
        line = _history_line(entry.seq, _iso(entry.ts), entry.kind, e, entry.raw)
        print(f"{line}  [TAMPERED: {printable('; '.join(marks[entry.seq]))}]" if entry.seq in marks else line)
    j.close()
    if not flaws:
        return 0
    for f in flaws:
        print(f"FAIL: {printable(f.text)}", file=sys.stderr)
    print(f"journal {printable(j.path)}: {len(flaws)} problem(s) in {checked} entries: NOT intact; the entries "
          "above are as stored (run `bms-gateway alarms verify`)", file=sys.stderr)  # fmt: skip
    return 1


def _history_line(seq: int, when: str, kind: str, e: dict[str, Any], raw: str | None) -> str:
    """One line of `history`; never fails on an entry with missing or odd fields (an edited row). Every text
    from the entry is `printable` (a control character shows escaped, so one entry is one line)."""
    p = printable
    if raw is not None:
        return f"{seq:6} {when} -- {p(kind)} (body is not a JSON object: {p(repr(raw[:200]))})"
    if e.get("type") == "event":
        who = f"  by {p(e['user'])}" if e.get("user") else ""
        why = f" ({p(e['reason'])})" if e.get("reason") else ""
        return (f"{seq:6} {when} {p(e.get('severity')):8} {p(e.get('alarm_id')):40} "
                f"{p(e.get('previous'))} -> {p(e.get('state'))}: {p(e.get('message'))}{who}{why}")  # fmt: skip
    extra = {k: v for k, v in e.items() if k not in ("type", "ts")}
    return f"{seq:6} {when} -- {p(e.get('type'))} {json_text(json.dumps(extra, ensure_ascii=False, default=str))}"


def journal_lines(j: Any, since: int = 0, until: int | None = None, rack: str | None = None) -> Iterator[str]:
    """The journal's entries as `alarms export` JSON lines (every entry, with seq and hash), each with its newline."""
    for entry in j.entries(since, until, rack):
        doc = {"seq": entry.seq, "hash": entry.hash, **entry.body}
        if entry.raw is not None:  # an edited or damaged row: as stored (`verify` names it)
            doc.update(type=entry.kind, unreadable_body=entry.raw)
        yield json_text(json.dumps(doc, ensure_ascii=False, default=str)) + "\n"


def cmd_export(args: argparse.Namespace) -> int:
    j = _open(args)
    out = sys.stdout
    n = 0
    if args.format != "csv":
        for line in journal_lines(j, args.since or 0, args.until, args.rack):
            out.write(line)
            n += 1
    else:
        writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for entry in j.entries(args.since or 0, args.until, args.rack):
            if entry.body.get("type") == "event":
                writer.writerow({**entry.body, "seq": entry.seq, "time": _iso(entry.ts), "hash": entry.hash})
                n += 1
    j.close()
    print(f"exported {n} journal entries", file=sys.stderr)
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from gateway.alarms.ruleset import build_ruleset
    from gateway.cli.main import load_or_exit

    loaded = load_or_exit(args)
    rs = build_ruleset(loaded)
    for r in rs.rules:
        d = r.model_dump(exclude={"id", "kind", "severity", "description", "enabled"}, exclude_defaults=True)
        state = "" if r.enabled else "  (disabled)"
        print(f"{r.id:28} {r.kind:12} {r.severity:8} {json_text(json.dumps(d, ensure_ascii=False))}{state}")
        if args.verbose:
            print(f"{'':28} from {printable(rs.origin.get(r.id, '?'))}; {printable(r.description)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run the configuration's rules over stored samples (what would these rules have said?); writes nothing."""
    from gateway.alarms.engine import AlarmEngine
    from gateway.alarms.ruleset import build_ruleset
    from gateway.alarms.service import racks_of
    from gateway.cli.main import load_or_exit
    from gateway.model import BatchKind
    from gateway.store.outbox import Outbox

    loaded = load_or_exit(args)
    store = Path(args.store) if args.store is not None else loaded.config.store.path
    if not store.exists():
        print(f"error: no store at {store}", file=sys.stderr)
        return 2
    engine = AlarmEngine(build_ruleset(loaded).rules, racks_of(loaded))
    box = Outbox(store, readonly=True)
    n = 0
    try:
        for row in box.query(args.since or 0, args.until):
            b = row.batch
            if b.kind != BatchKind.SAMPLES or (args.rack and b.n and b.keys.rows[0].rack != args.rack):
                continue
            out = engine.tick(b.created) + engine.process([b])  # the clock is the data's own time
            events: list[dict[str, Any]] = [r for x in out for r in x.records if r["type"] == "event"]
            for rec in events:
                n += 1
                if args.json:
                    print(json_text(json.dumps(rec, ensure_ascii=False)))
                else:
                    print(f"{_iso(rec['ts'])} {printable(rec['severity']):8} {printable(rec['alarm_id']):40} "
                          f"{rec['previous']} -> {rec['state']}: {printable(rec['message'])}")  # fmt: skip
    finally:
        box.close()
    print(f"{n} transitions", file=sys.stderr)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from gateway.alarms.ruleset import RuleFile
    from gateway.cli.main import print_schema

    return print_schema(RuleFile, "bms-gateway alarm rule file")


def register(sub: Any) -> None:
    from gateway.cli.main import add_config_arg

    p = sub.add_parser("alarms", help="alarm journal: list, history, export, verify; effective rules; keygen, send")
    asub = p.add_subparsers(dest="alarms_command", required=True)

    def common(name: str, help_text: str) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = asub.add_parser(name, help=help_text)
        add_config_arg(q)
        q.add_argument("--store", type=Path, help="store (or journal) file instead of the config's")
        return q

    q = common("list", "alarms in view (not normal) as the journal last recorded them")
    q.add_argument("--rack")
    q.add_argument("--json", action="store_true", help="JSON lines")
    q.set_defaults(func=cmd_list)
    q = common("history", "journal entries, oldest first")
    q.add_argument("--since", type=parse_time, help="ISO time, Unix seconds or 10m/2h/7d ago")
    q.add_argument("--until", type=parse_time)
    q.add_argument("--rack")
    q.add_argument("--alarm", help="only this alarm id")
    q.set_defaults(func=cmd_history)
    q = common("export", "journal entries as JSON lines (every entry, with seq and hash) or CSV (events)")
    q.add_argument("--since", type=parse_time, help="ISO time, Unix seconds or 10m/2h/7d ago")
    q.add_argument("--until", type=parse_time)
    q.add_argument("--rack")
    q.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    q.set_defaults(func=cmd_export)
    q = common("verify", "check the journal's hash chain; exit 1 naming each edited, removed or reordered entry")
    q.set_defaults(func=cmd_verify)
    q = asub.add_parser("rules", help="the effective rules of a configuration (defaults, files, overrides)")
    add_config_arg(q)
    q.add_argument("-v", "--verbose", action="store_true", help="where each rule comes from")
    q.set_defaults(func=cmd_rules)
    q = common("evaluate", "run the configuration's rules over stored samples and print the transitions")
    q.add_argument("--since", type=parse_time, help="ISO time, Unix seconds or 10m/2h/7d ago")
    q.add_argument("--until", type=parse_time)
    q.add_argument("--rack")
    q.add_argument("--json", action="store_true", help="event records as JSON lines")
    q.set_defaults(func=cmd_evaluate)
    q = asub.add_parser("schema", help="print the JSON Schema of a rule file (for editors)")
    q.set_defaults(func=cmd_schema)
    from gateway.cli import alarmsend as sendcli
    sendcli.register(asub, add_config_arg)
