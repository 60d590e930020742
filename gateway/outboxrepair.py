"""Start-up check and repair of the outbox file: a damaged or truncated database never stops the gateway.

`needs_repair` is cheap (the header's page count against the file size, then a quick_check only when
that or opening the file looks wrong). `repair` sets the damaged file aside (renamed, with its WAL,
never deleted), copies every readable row into a fresh file with the same sequence numbers and
cursors, and reports what it could not read. Sequence numbers continue after the old highest one,
so every consumer's cursor keeps its meaning.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from gateway import metrics
from gateway.outboxcodec import compact_digest, is_json, load_compact

log = structlog.get_logger("outbox")

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class RepairReport:
    damaged_file: str  # where the damaged file was set aside
    recovered_rows: int
    unreadable_rows: int  # rows whose data could not be read (set aside with the file)
    last_seq: int
    reason: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _header_says_truncated(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(100)
    except OSError:
        return False
    if len(head) < 100:
        return len(head) > 0
    if not head.startswith(b"SQLite format 3\x00"):
        return True
    page_size = int(struct.unpack(">H", head[16:18])[0])
    page_size = 65536 if page_size == 1 else page_size
    pages = int(struct.unpack(">I", head[28:32])[0])
    return pages * page_size > path.stat().st_size


def _quick_check(path: Path) -> str:
    try:
        db = sqlite3.connect(path)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
            db.execute("SELECT count(*) FROM batches").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    result = "; ".join(str(r[0]) for r in rows)
    return "" if result == "ok" else result


def needs_repair(path: Path) -> str:
    """Why the file needs a repair ("" when it is sound or does not exist)."""
    if not path.exists() or path.stat().st_size == 0:
        return ""
    if not _header_says_truncated(path):
        try:
            db = sqlite3.connect(path)
            try:
                db.execute("SELECT seq FROM batches ORDER BY seq DESC LIMIT 1").fetchone()
            finally:
                db.close()
            return ""
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return ""
        except sqlite3.DatabaseError:
            pass
    # The WAL may still hold what the main file lacks: only a failed check means damage.
    return _quick_check(path)


def repair(path: Path, schema: str, reason: str) -> RepairReport:
    """Set the damaged file aside and copy what is readable into a fresh one at `path`."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    damaged = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while damaged.exists():  # never overwrite an earlier damaged file
        n += 1
        damaged = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(f"{damaged}{suffix}")
    new = sqlite3.connect(path, isolation_level=None)
    new.executescript(schema)
    old = sqlite3.connect(damaged, isolation_level=None)
    # Lets SQLite read a file shorter than its header claims (else every query reports corruption).
    old.execute("PRAGMA writable_schema=ON")
    try:
        last = _max_seq(old)
        new.execute("BEGIN")
        _copy_small(old, new)
        layouts = {str(r[0]) for r in new.execute("SELECT digest FROM layouts")}
        recovered, unreadable, seen = _copy_batches(old, new, last, layouts)
        last = max(last, seen)
        new.execute("DELETE FROM sqlite_sequence WHERE name='batches'")
        new.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('batches', ?)", (last,))
        report = RepairReport(str(damaged), recovered, unreadable, last, reason[:300])
        new.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (f"repair.{stamp}", report.to_json()))
        new.execute("COMMIT")
    finally:
        old.close()
        new.close()
    metrics.store_set_aside.inc(unreadable)
    log.error(
        "damaged store set aside; readable rows kept",
        damaged_file=str(damaged),
        recovered_rows=recovered,
        unreadable_rows=unreadable,
        reason=report.reason,
    )
    return report


def _max_seq(old: sqlite3.Connection) -> int:
    best = 0
    for sql in (
        "SELECT seq FROM sqlite_sequence WHERE name='batches'",
        "SELECT max(acked) FROM consumers",
        "SELECT max(seq) FROM deadletter",
    ):
        try:
            row = old.execute(sql).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None and row[0] is not None:
            best = max(best, int(row[0]))
    return best


def _copy_small(old: sqlite3.Connection, new: sqlite3.Connection) -> None:
    """Cursors, meta, dead letters and layouts, as far as they are readable."""
    for table, cols in (
        ("consumers", "name, acked, dropped"),
        ("meta", "key, value"),
        ("deadletter", "id, stored, consumer, seq, status, reason, item"),
        ("layouts", "digest, body"),
        ("layout_use", "digest, last_seq"),
    ):
        try:
            rows = old.execute(f"SELECT {cols} FROM {table}").fetchall()
        except sqlite3.DatabaseError as exc:
            if table.startswith("layout") and "no such table" in str(exc):
                continue  # a store written before compact rows existed

            log.error("store repair: table unreadable", table=table)
            continue
        marks = ",".join("?" * len(cols.split(",")))
        new.executemany(f"INSERT OR REPLACE INTO {table}({cols}) VALUES ({marks})", rows)


def _intact(payload: object, layouts: set[str]) -> bool:
    """A payload whose pages were lost reads back as zeros or garbage: it must be a whole JSON document,
    or a whole compact row whose layout was kept."""
    if not isinstance(payload, bytes):
        return False
    try:
        if is_json(payload):
            return isinstance(json.loads(payload), dict)
        return compact_digest(load_compact(payload)) in layouts
    except ValueError:
        return False


def _copy_batches(
    old: sqlite3.Connection, new: sqlite3.Connection, last: int, layouts: set[str]
) -> tuple[int, int, int]:
    """(rows copied, rows unreadable, highest seq seen): chunked scans, row by row around damage."""
    insert = "INSERT INTO batches(seq, ts, kind, source, n, payload) VALUES (?,?,?,?,?,?)"
    select = "SELECT seq, ts, kind, source, n, payload FROM batches"
    copied = unreadable = seen = 0
    first = 0
    after = 0
    while True:
        try:
            rows = old.execute(f"{select} WHERE seq > ? ORDER BY seq LIMIT ?", (after, _CHUNK)).fetchall()
        except sqlite3.DatabaseError:
            rows = None
        if rows is not None:
            if not rows:
                if after >= last:
                    break
                after = last  # nothing readable beyond: the rest is gone
                continue
            good = [r for r in rows if _intact(r[5], layouts)]
            new.executemany(insert, good)
            first = first or int(rows[0][0])
            copied += len(good)
            after = int(rows[-1][0])
            seen = max(seen, after)
            continue
        # A damaged page: probe the next rows one by one.
        for seq in range(after + 1, min(after + _CHUNK, last) + 1):
            try:
                row = old.execute(f"{select} WHERE seq = ?", (seq,)).fetchone()
            except sqlite3.DatabaseError:
                unreadable += 1
                continue
            if row is not None and _intact(row[5], layouts):
                new.execute(insert, row)
                first = first or seq
                copied += 1
                seen = max(seen, seq)
        after += _CHUNK
        if after >= last:
            break
    # Sequence numbers are contiguous from the oldest kept row (the budget deletes only the oldest),
    # so every number between the first readable row and the last one that is not copied was lost.
    if first:
        unreadable = max(last, seen) - first + 1 - copied
    return copied, unreadable, seen
