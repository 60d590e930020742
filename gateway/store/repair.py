"""Start-up check and repair of the outbox file: a damaged or truncated database never stops the gateway.

`needs_repair` is cheap (the header's page count against the file size, then a quick_check only when
that or opening the file looks wrong); a fault of the disk that keeps the file from opening is no
damage (it raises, see gateway.store.diskfault). `repair` copies every readable row of the damaged file
into a fresh one with the same sequence numbers, cursors, dead letters, quarantined rows and alarm
journal (see gateway.store.journalcarry), then sets the damaged file aside (renamed, with its WAL, never
deleted) and puts the new one in its place. A header that keeps SQLite out (a changed page size, say)
is read through a copy with a corrected header (see gateway.store.salvage). Sequence numbers continue
after the old highest one, so every consumer's cursor keeps its meaning.

What was lost is counted from what the file still shows: every sequence number from the oldest row
known to have been there (the first readable row, or the first a sink had not delivered) to the
highest one any table names, that was neither copied nor quarantined before. When not even that can
be read, the report says how many pages could not be read instead of a count it cannot know.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway import metrics
from gateway.store import journalcarry, quarantine
from gateway.store.codec import key_digest, key_table_from_body
from gateway.store.diskfault import is_open_fault
from gateway.store.lockwait import connect, is_locked
from gateway.store.ownerfiles import create_owner_only
from gateway.store.salvage import Copied, Source, copy_rows, plausible_batch, readable

log = structlog.get_logger("outbox")

_MAX_SEQ = 2**62  # a larger "sequence number" read from a damaged page is garbage, not a bound


@dataclass(frozen=True, slots=True)
class RepairReport:
    damaged_file: str  # where the damaged file was set aside
    recovered_rows: int
    unreadable_rows: int  # rows known to have been stored that could not be read (set aside with the file)
    last_seq: int
    reason: str
    unknown_pages: int = 0  # pages of a file whose rows could not even be counted (0: the counts are complete)
    header_fixed: str = ""  # what the file's header had wrong (it was read through a corrected copy)
    journal_entries: int = 0  # alarm journal entries carried over, hash chain intact
    journal_unreadable: int = 0  # journal entries that could not be read (`alarms verify` names the gap)

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
        db = connect(path)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
            db.execute("SELECT count(*) FROM batches").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        if is_open_fault(exc) or is_locked(exc):
            raise  # the disk, or another process's lock, not the file: never a reason to set a sound store aside
        return str(exc)
    result = "; ".join(str(r[0]) for r in rows)
    return "" if result == "ok" else result


OPEN_MARK = "store.state"  # meta: "open" while a gateway writes the store, "closed" after its clean stop


def _left_open(path: Path) -> bool:
    """The store's writer did not close it (a crash, a power loss, a kill): pages may be damaged anywhere."""
    try:
        db = connect(path)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (OPEN_MARK,)).fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        if is_open_fault(exc) or is_locked(exc):
            raise
        return False  # unreadable: the checks below find out
    return row is not None and row[0] == "open"


def needs_repair(path: Path, *, after_crash: bool = False) -> str:
    """Why the file needs a repair ("" when it is sound or does not exist). Raises sqlite3.Error when a
    fault of the disk (full, an I/O error) keeps it from being opened, or another process's lock keeps
    it from being read (see gateway.store.lockwait): that is no damage.

    Cheap for a file closed cleanly (its header, its newest row). With `after_crash`, a file its writer
    left open is checked whole (quick_check): a damaged page anywhere is repaired before a reader meets
    it, so a crash on damage happens once, never on every start."""
    if not path.exists() or path.stat().st_size == 0:
        return ""
    if after_crash and _left_open(path):
        return _quick_check(path)
    if not _header_says_truncated(path):
        try:
            db = connect(path)
            try:
                db.execute("SELECT seq FROM batches ORDER BY seq DESC LIMIT 1").fetchone()
            finally:
                db.close()
            return ""
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return ""
            if is_open_fault(exc) or is_locked(exc):
                raise
        except sqlite3.DatabaseError:
            pass
    # The WAL may still hold what the main file lacks: only a failed check means damage.
    return _quick_check(path)


def repair(path: Path, schema: str, reason: str) -> RepairReport:
    """Copy what is readable of the damaged file into a fresh one, set the damaged file aside and put the
    fresh one at `path`. A fault of the disk on the way (no room for the copy) raises and leaves the
    damaged file where it was, for the next try."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    damaged = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while damaged.exists():  # never overwrite an earlier damaged file
        n += 1
        damaged = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    work = path.with_name(f"{path.name}.repairing")
    _remove(work)  # left by a repair that was interrupted
    try:
        create_owner_only(work)
        new = sqlite3.connect(work, isolation_level=None)
        try:
            new.executescript(schema + quarantine.SCHEMA)  # (every table IF NOT EXISTS)
            with readable(path) as src:
                if journalcarry.has_journal(src.db):
                    journalcarry.create_tables(new)
                new.execute("BEGIN")
                report = _salvage(src, new, str(damaged), reason[:300])
            new.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (f"repair.{stamp}", report.to_json()))
            new.execute("COMMIT")
        finally:
            new.close()
        for suffix in ("", "-wal", "-shm"):
            src_file = Path(f"{path}{suffix}")
            if src_file.exists():
                src_file.rename(f"{damaged}{suffix}")
        work.rename(path)
    except BaseException:
        _remove(work)
        raise
    metrics.store_set_aside.inc(report.unreadable_rows)
    fields: dict[str, Any] = asdict(report)
    if report.unknown_pages:
        fields["lost_rows"] = f"unknown: nothing readable in {report.unknown_pages} pages"
    log.error("damaged store set aside; readable rows kept", **fields)
    return report


def _salvage(src: Source, new: sqlite3.Connection, damaged: str, reason: str) -> RepairReport:
    old = src.db
    last, min_acked = _known_seqs(old)
    _copy_small(old, new)
    layouts = {str(r[0]) for r in new.execute("SELECT digest FROM layouts")}
    quarantined = {int(r[0]) for r in new.execute("SELECT seq FROM quarantine")}
    rows = copy_rows(
        old,
        new,
        "SELECT seq, ts, kind, source, n, payload FROM batches WHERE seq",
        "INSERT INTO batches(seq, ts, kind, source, n, payload) VALUES (?,?,?,?,?,?)",
        last,
        lambda r: plausible_batch(r) and _intact(r[5], layouts),
    )
    last = max(last, rows.last, max(quarantined, default=0))
    unreadable, unknown = _lost(rows, last, min_acked, quarantined)
    journal = journalcarry.carry(old, new, damaged) if journalcarry.has_journal(old) else None
    new.execute("DELETE FROM sqlite_sequence WHERE name='batches'")
    new.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('batches', ?)", (last,))
    return RepairReport(
        damaged,
        rows.rows,
        unreadable,
        last,
        reason,
        unknown_pages=src.pages if unknown else 0,
        header_fixed=src.header_fixed,
        journal_entries=journal.entries if journal else 0,
        journal_unreadable=journal.unreadable if journal else 0,
    )


def _lost(rows: Copied, last: int, min_acked: int | None, quarantined: set[int]) -> tuple[int, bool]:
    """(rows known lost, whether the loss cannot be counted). Sequence numbers are contiguous from the
    oldest kept row (the budget deletes only the oldest; a quarantined row moved to its own table), and
    the first row a sink had not delivered was still there (the budget moves cursors past what it drops)."""
    firsts = [rows.first] if rows.first else []
    if min_acked is not None and min_acked < last:
        firsts.append(min_acked + 1)
    if not firsts:
        return 0, rows.damaged  # no row known: only a table that could not be read hides a loss
    first = min(firsts)
    kept = rows.rows + sum(1 for q in quarantined if first <= q <= last)
    return max(0, last - first + 1 - kept), False


def _int(value: object) -> int | None:
    return value if type(value) is int and 0 <= value < _MAX_SEQ else None


def _known_seqs(old: sqlite3.Connection) -> tuple[int, int | None]:
    """(the highest sequence number any readable table names, the lowest sink cursor or None)."""
    best = 0
    for sql in (
        "SELECT seq FROM sqlite_sequence WHERE name='batches'",
        "SELECT max(acked) FROM consumers",
        "SELECT max(seq) FROM deadletter",
        "SELECT max(last_seq) FROM layout_use",
        "SELECT max(seq) FROM quarantine",
    ):
        with suppress(sqlite3.DatabaseError):
            row = old.execute(sql).fetchone()
            best = max(best, _int(row[0] if row else None) or 0)
    min_acked = None
    with suppress(sqlite3.DatabaseError):
        row = old.execute("SELECT min(acked) FROM consumers").fetchone()
        min_acked = _int(row[0] if row else None)
    return best, min_acked


def _texts(*kinds: type | None) -> Callable[[Sequence[object]], bool]:
    """A check that each column has its type (None in `kinds`: any)."""
    return lambda row: all(k is None or type(v) is k for v, k in zip(row, kinds, strict=True))


def _layout(row: Sequence[object]) -> bool:
    if not _texts(str, str)(row):
        return False
    try:
        key_table_from_body(str(row[1]))
    except (ValueError, KeyError, TypeError, IndexError):
        return False
    return True


_SMALL: tuple[tuple[str, str, Callable[[Sequence[object]], bool]], ...] = (
    ("consumers", "name, acked, dropped", _texts(str, int, int)),
    ("meta", "key, value", _texts(str, str)),
    ("deadletter", "id, stored, consumer, seq, status, reason, item", _texts(int, int, str, int, int, str, str)),
    ("layouts", "digest, body", _layout),
    ("layout_use", "digest, last_seq", _texts(str, int)),
    ("quarantine", "seq, ts, kind, source, n, payload, error, quarantined",
     _texts(int, None, None, None, None, None, str, int)),
)


def _copy_small(old: sqlite3.Connection, new: sqlite3.Connection) -> None:
    """Cursors, meta, dead letters, layouts and quarantined rows, as far as they are readable and sound."""
    for table, cols, sound in _SMALL:
        try:
            rows = old.execute(f"SELECT {cols} FROM {table}").fetchall()
        except sqlite3.DatabaseError as exc:
            if is_locked(exc):
                raise  # the repair is tried again once the lock is gone (see gateway.store.lockwait)
            if "no such table" not in str(exc):  # tables of later versions may be missing
                log.error("store repair: table unreadable", table=table, error=str(exc))
            continue
        marks = ",".join("?" * len(cols.split(",")))
        new.executemany(f"INSERT OR REPLACE INTO {table}({cols}) VALUES ({marks})", [r for r in rows if sound(r)])


def _intact(payload: object, layouts: set[str]) -> bool:
    """A payload whose pages were lost reads back as zeros or garbage: it must be a whole JSON document,
    or a whole row of columns (or a version-2 row) whose key table was kept."""
    if not isinstance(payload, bytes):
        return False
    try:
        digest = key_digest(payload)
        if digest is None:
            return isinstance(json.loads(payload), dict)
        return digest in layouts
    except (ValueError, KeyError, TypeError):
        return False


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with suppress(OSError):
            Path(f"{path}{suffix}").unlink()
