"""The alarm journal: append-only, each entry hash-chained to the one before it (SHA-256).

It lives in its own table of the store's SQLite file (its own connection; WAL lets it share the
file with the outbox) or in a file of its own. Entry `n` stores `hash = SHA-256(n | hash(n-1) | body)`
where `body` is the canonical JSON of the entry, so `verify` finds any edited body or column, any
removed entry (a gap in the sequence or a broken link), any reordering, and a truncated tail (the
head row names the last entry written). The outbox's retention never touches this table.

Kinds of entries: `event` (an alarm transition, the record that went to the outbox plus the state
needed to restore it), `condition` (the condition of a latched or shelved alarm changed without a
transition), `command` (an operator's ack/shelve/unshelve, accepted or not), `start` and
`stop` (so that a gap in the gateway's watch is itself on record; `stop_incomplete` when events were
still on their way to the store, which the next start stores).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.alarms.states import State
from gateway.store import lockwait
from gateway.store.diskfault import fault_kind
from gateway.store.ownerfiles import create_owner_only

GENESIS = "0" * 64
STATES = frozenset(str(s) for s in State)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_journal(
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    alarm_id TEXT,
    rack TEXT,
    body TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alarm_journal_alarm ON alarm_journal(alarm_id, seq);
CREATE INDEX IF NOT EXISTS alarm_journal_ts ON alarm_journal(ts);
CREATE TABLE IF NOT EXISTS alarm_journal_head(id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,
    hash TEXT NOT NULL);
"""


def canonical(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(seq: int, prev: str, body: str) -> str:
    return hashlib.sha256(f"{seq}|{prev}|{body}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    ts: int
    kind: str
    body: dict[str, Any]  # empty when the stored body is not a JSON object (see `raw`)
    hash: str
    raw: str | None = None  # the stored body when it is not a JSON object (a damaged or edited row)


@dataclass(frozen=True, slots=True)
class Flaw:
    """A problem `verify` found: the entry it names (None: the head record) and what is wrong."""

    seq: int | None
    text: str


def parse_body(body: str) -> dict[str, Any] | None:
    """A stored body as a JSON object, or None when it is not one (never raises)."""
    try:
        doc = json.loads(body)
    except (ValueError, TypeError):
        return None
    return doc if isinstance(doc, dict) else None


class Journal:
    def __init__(self, path: Path, *, synchronous: str = "full", readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        else:
            create_owner_only(path)  # 0600 (its -wal and -shm follow), in a 0700 directory when made here
            self.db = lockwait.connect(path)
        self._synchronous = synchronous
        self._locked = False  # another process's lock refused the last write
        # (another process's lock at start-up is waited for)
        self.opened = readonly or lockwait.wait_unlocked(self._open, path, "alarm journal tables")
        if not readonly:  # the daemon's: a write waits briefly for a lock, then its entries wait in memory
            lockwait.busy_timeout(self.db, lockwait.LIVE_BUSY_TIMEOUT)
        self.readonly = readonly
        row = self._tail()
        self.seq, self.hash = row if row is not None else (0, GENESIS)

    def _open(self) -> bool:
        """WAL mode and the tables; False when a fault of the disk (full: no room for the WAL index) keeps
        the file from opening now. Then nothing is read from it (no alarm is restored) and `append` opens
        it first (its entries wait in the caller's memory until it can)."""
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if self._synchronous == 'full' else 'NORMAL'}")
            self.db.executescript(SCHEMA)
        except sqlite3.OperationalError as exc:
            if fault_kind(exc) is None:
                raise
            return False
        return True

    def _tail(self) -> tuple[int, str] | None:
        try:
            row = self.db.execute("SELECT seq, hash FROM alarm_journal ORDER BY seq DESC LIMIT 1").fetchone()
        except sqlite3.OperationalError:
            return None  # no journal table yet (read-only open of a store without alarms)
        return None if row is None else (int(row[0]), str(row[1]))

    def append(self, entries: Iterable[dict[str, Any]]) -> int:
        """Append entries in one transaction; return how many."""
        if not self.opened:
            self.opened = self._open()
            if not self.opened:
                raise sqlite3.OperationalError("the journal's file cannot be opened yet (disk full)")
            self.seq, self.hash = self._tail() or (0, GENESIS)
        rows = []
        seq, prev = self.seq, self.hash
        for e in entries:
            seq += 1
            body = canonical(e)
            h = chain_hash(seq, prev, body)
            rows.append((seq, int(e.get("ts") or 0), str(e.get("type", "")), e.get("alarm_id"), e.get("rack"), body,
                         prev, h))  # fmt: skip
            prev = h
        if not rows:
            return 0
        self._begin()
        try:
            self.db.executemany("INSERT INTO alarm_journal VALUES (?,?,?,?,?,?,?,?)", rows)
            self.db.execute("INSERT OR REPLACE INTO alarm_journal_head(id, seq, hash) VALUES (1, ?, ?)", (seq, prev))
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        self.seq, self.hash = seq, prev
        return len(rows)

    def _begin(self) -> None:
        """The write transaction. While another process holds the lock (the caller keeps the entries and
        tries again every second) each try waits only briefly for it (see gateway.store.lockfault)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if lockwait.is_locked(exc) and not self._locked:
                self._locked = True
                lockwait.busy_timeout(self.db, lockwait.LOCKED_BUSY_TIMEOUT)
            raise
        if self._locked:
            self._locked = False
            lockwait.busy_timeout(self.db, lockwait.LIVE_BUSY_TIMEOUT)

    def latest_events(self) -> list[dict[str, Any]]:
        """The last event (or condition note) of every alarm id: what a restart restores.

        An entry whose body is not a readable event (a damaged or edited row) is left out: `verify`
        names it; a restart never fails on it."""
        try:
            cur = self.db.execute(
                "SELECT body FROM alarm_journal WHERE seq IN (SELECT max(seq) FROM alarm_journal "
                "WHERE kind IN ('event', 'condition') GROUP BY alarm_id) ORDER BY seq"
            )
        except sqlite3.OperationalError:
            return []
        return [e for e in (parse_body(b) for (b,) in cur) if e is not None and _is_event(e)]

    def events_since_last_stop(self, after_seq: int) -> list[dict[str, Any]]:
        """Event entries after `after_seq` and after the last clean stop (a clean stop stored everything)."""
        try:
            row = self.db.execute("SELECT coalesce(max(seq), 0) FROM alarm_journal WHERE kind = 'stop'").fetchone()
            cur = self.db.execute(
                "SELECT body FROM alarm_journal WHERE seq > ? AND kind = 'event' ORDER BY seq",
                (max(after_seq, int(row[0])),),
            )
        except sqlite3.OperationalError:
            return []
        return [e for e in (parse_body(b) for (b,) in cur) if e is not None and _is_event(e)]

    def entries(self, since: int = 0, until: int | None = None, rack: str | None = None) -> Iterator[Entry]:
        until = until if until is not None else 2**63 - 1
        sql = "SELECT seq, ts, kind, body, hash FROM alarm_journal WHERE ts >= ? AND ts <= ?"
        args: list[Any] = [since, until]
        if rack is not None:
            sql += " AND rack = ?"
            args.append(rack)
        try:
            cur = self.db.execute(sql + " ORDER BY seq", args)
        except sqlite3.OperationalError:
            return
        for seq, ts, kind, body, h in cur:
            doc = parse_body(body)
            yield Entry(int(seq), int(ts), str(kind), doc or {}, str(h), None if doc is not None else str(body))

    def verify(self) -> tuple[int, list[str]]:
        """Check the whole chain; return (entries checked, problems naming each bad entry)."""
        return verify_rows(self.db)

    def flaws(self) -> tuple[int, list[Flaw]]:
        """`verify`, each problem with the entry it names."""
        return chain_flaws(self.db)

    def close(self) -> None:
        self.db.close()


def verify_rows(db: sqlite3.Connection) -> tuple[int, list[str]]:
    n, flaws = chain_flaws(db)
    return n, [f.text for f in flaws]


def chain_flaws(db: sqlite3.Connection) -> tuple[int, list[Flaw]]:
    """Check the whole chain; return (entries checked, each problem with the entry it names)."""
    flaws: list[Flaw] = []
    try:
        cur = db.execute("SELECT seq, ts, kind, alarm_id, rack, body, prev, hash FROM alarm_journal ORDER BY seq")
        rows = cur.fetchall()
        head = db.execute("SELECT seq, hash FROM alarm_journal_head WHERE id = 1").fetchone()
    except sqlite3.OperationalError as exc:
        return 0, [Flaw(None, f"no alarm journal in this file ({exc})")]
    expected_seq, prev = 1, GENESIS
    for seq, ts, kind, aid, rack, body, stored_prev, stored_hash in rows:
        if seq != expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            flaws.append(Flaw(seq, f"entry {missing} removed (the sequence jumps from {expected_seq - 1} to {seq})"))
        if stored_prev != prev:
            flaws.append(Flaw(seq, f"entry {seq}: does not link to the entry before it (removed or reordered entries)"))
        if chain_hash(seq, stored_prev, body) != stored_hash:
            flaws.append(Flaw(seq, f"entry {seq}: content does not match its hash (edited)"))
        else:
            flaws.extend(Flaw(seq, text) for text in _columns(seq, ts, kind, aid, rack, body))
        expected_seq, prev = seq + 1, stored_hash
    last = rows[-1][0] if rows else 0
    if head is None and rows:
        flaws.append(Flaw(None, "the head record is missing (edited)"))
    elif head is not None and (int(head[0]), str(head[1])) != (last, prev):
        flaws.append(Flaw(None, f"entries after {last} removed: the head names entry {head[0]} (truncated)"))
    return len(rows), flaws


def _is_event(e: dict[str, Any]) -> bool:
    """An event or condition body with what a restore and `alarms list` read."""
    fields_ok = all(isinstance(e.get(k), str) for k in ("alarm_id", "rack", "rule", "severity", "state"))
    return fields_ok and e["state"] in STATES and isinstance(e.get("detail") or {}, dict)


def _columns(seq: int, ts: int, kind: str, aid: str | None, rack: str | None, body: str) -> list[str]:
    e = parse_body(body)
    if e is None:
        return [f"entry {seq}: body is not a JSON object (edited)"]
    want = (int(e.get("ts") or 0), str(e.get("type", "")), e.get("alarm_id"), e.get("rack"))
    if (ts, kind, aid, rack) != want:
        return [f"entry {seq}: columns differ from its hashed content (edited)"]
    return []
